#include "merge/lora_inspect.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "formats/model_dir.h"
#include "formats/model_ref.h"
#include "kernels/lowrank.h"
#include "kernels/reduce.h"
#include "merge/codec.h"
#include "merge/gguf_model.h"

namespace alloy::merge {
namespace {

using formats::LoraKind;
using formats::Status;
using formats::TensorInfo;

// A whole (small) adapter tensor as float64.
formats::Result<std::vector<double>> ReadFactor(formats::TensorSource& src, const TensorInfo& info) {
  if (!CanDecode(info.dtype)) {
    return Status::Corrupt(src.name() + ": tensor '" + info.name + "' has dtype " +
                           std::string(formats::DTypeName(info.dtype)) + ", not a float type");
  }
  std::vector<uint8_t> bytes(info.nbytes);
  ALLOY_RETURN_IF_ERROR(src.Read(info, 0, bytes));
  std::vector<float> f32(info.numel());
  DecodeToF32(info.dtype, bytes, f32);
  return std::vector<double>(f32.begin(), f32.end());
}

// ‖W‖_F of a base tensor, streamed in chunks.
formats::Result<double> BaseNorm(formats::TensorSource& src, const TensorInfo& info) {
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  const size_t elem = static_cast<size_t>(formats::DTypeBits(info.dtype)) / 8;
  std::vector<uint8_t> bytes;
  std::vector<float> f32;
  double sum = 0;
  for (uint64_t begin = 0; begin < info.numel(); begin += kChunk) {
    const size_t n = static_cast<size_t>(std::min(kChunk, info.numel() - begin));
    bytes.resize(n * elem);
    f32.resize(n);
    ALLOY_RETURN_IF_ERROR(src.Read(info, begin * elem, bytes));
    DecodeToF32(info.dtype, bytes, f32);
    sum += kernels::SumSquares(f32);
  }
  src.Release(info);
  return std::sqrt(sum);
}

}  // namespace

double EnergyTopK(const std::vector<double>& sv, size_t k) {
  double top = 0, all = 0;
  for (size_t i = 0; i < sv.size(); ++i) {
    all += sv[i] * sv[i];
    if (i < k) top += sv[i] * sv[i];
  }
  return all > 0 ? top / all : 1.0;
}

formats::Result<LoraInspectReport> InspectLora(const std::string& adapter_dir,
                                               const std::optional<std::string>& base,
                                               formats::SymlinkPolicy symlinks) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::LoraAdapter> adapter,
                         formats::LoraAdapter::Open(adapter_dir, formats::FileAccess::kPread,
                                                    symlinks));
  std::unique_ptr<formats::TensorSource> model;
  if (base) {
    ALLOY_ASSIGN_OR_RETURN(std::string path, formats::ResolveModelReference(*base));
    ALLOY_ASSIGN_OR_RETURN(model,
                           OpenCheckpoint(path, formats::FileAccess::kPread, nullptr, symlinks));
  }
  LoraInspectReport report;
  report.directory = adapter->directory();
  report.base_model = adapter->base_model();
  report.default_rank = adapter->default_rank();
  report.default_alpha = adapter->default_alpha();
  report.use_rslora = adapter->use_rslora();
  for (const TensorInfo& t : adapter->tensors().tensors()) report.n_parameters += t.numel();
  formats::TensorSource& src = adapter->tensors();
  for (const formats::LoraDelta& d : adapter->deltas()) {
    LoraModuleReport m;
    m.module = d.module;
    m.base_name = d.base_name;
    m.kind = d.kind;
    m.rank = d.rank;
    m.alpha = d.alpha;
    m.scale = d.scale;
    ALLOY_ASSIGN_OR_RETURN(std::vector<double> b, ReadFactor(src, *d.b));
    if (d.kind == LoraKind::kBias) {
      m.shape = d.b->shape;
      double sq = 0;
      for (double v : b) sq += v * v;
      m.singular_values = {std::fabs(d.scale) * std::sqrt(sq)};
    } else {
      ALLOY_ASSIGN_OR_RETURN(std::vector<double> a, ReadFactor(src, *d.a));
      const size_t out = static_cast<size_t>(d.b->shape[0]), r = static_cast<size_t>(d.rank);
      const size_t in = static_cast<size_t>(d.a->shape[1]);
      m.shape = d.kind == LoraKind::kLinear
                    ? std::vector<int64_t>{d.b->shape[0], d.a->shape[1]}
                    : std::vector<int64_t>{d.a->shape[1], d.b->shape[0]};
      m.singular_values = kernels::LowRankSingularValues(b, out, a, r, in);
      for (double& s : m.singular_values) s *= std::fabs(d.scale);
    }
    double sq = 0;
    for (double s : m.singular_values) {
      sq += s * s;
      m.nuclear += s;
    }
    m.frobenius = std::sqrt(sq);
    m.effective_rank = sq > 0 ? m.nuclear * m.nuclear / sq : 0;
    if (model) {
      const TensorInfo* w = model->Find(d.base_name);
      if (w == nullptr) {
        return Status::InvalidArgument("adapter module '" + d.module + "' changes '" +
                                       d.base_name + "', which " + model->name() + " does not have");
      }
      if (w->shape != m.shape) {
        return Status::InvalidArgument("adapter module '" + d.module + "' has shape " +
                                       formats::ShapeString(m.shape) + " but '" + d.base_name +
                                       "' in " + model->name() + " is " +
                                       formats::ShapeString(w->shape));
      }
      if (CanDecode(w->dtype)) {
        ALLOY_ASSIGN_OR_RETURN(double norm, BaseNorm(*model, *w));
        m.base_frobenius = norm;
      }
    }
    report.modules.push_back(std::move(m));
  }
  for (const auto& [name, info] : adapter->replacements()) report.modules_to_save.push_back(name);
  return report;
}

}  // namespace alloy::merge
