#include "merge/lora_io.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "formats/model_writer.h"
#include "merge/codec.h"

namespace alloy::merge {
namespace {

using formats::Result;
using formats::Status;
using formats::TensorInfo;

// The module that holds `tensor` (its name without the last component).
std::string ModuleOf(const std::string& tensor) {
  const size_t dot = tensor.rfind('.');
  return dot == std::string::npos ? tensor : tensor.substr(0, dot);
}

std::string LastComponent(const std::string& module) {
  const size_t dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

// One tensor to write: values to encode, or a tensor to copy.
struct Pending {
  const std::vector<double>* values = nullptr;
  const SavedTensor* saved = nullptr;
};

Status EncodeInto(formats::TensorSink& sink, size_t index, const TensorInfo& info,
                  const std::vector<double>& values) {
  std::vector<uint8_t> bytes(info.nbytes);
  std::vector<float> scratch(values.size());
  kernels::EncodeStats stats;
  EncodeFromF64(info.dtype, values, bytes, scratch, kernels::Overflow::kToInf, &stats);
  if (stats.n_overflow > 0) {
    return Status::InvalidArgument("LoRA tensor '" + info.name + "': " +
                                   std::to_string(stats.n_overflow) + " values overflow " +
                                   std::string(formats::DTypeName(info.dtype)) +
                                   "; write the adapter as float32 or bfloat16 (--dtype)");
  }
  return sink.WriteAt(index, 0, bytes);
}

Status CopyInto(formats::TensorSink& sink, size_t index, const SavedTensor& saved) {
  constexpr uint64_t kChunk = uint64_t{16} << 20;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(kChunk, saved.info->nbytes)));
  for (uint64_t off = 0; off < saved.info->nbytes; off += kChunk) {
    const size_t n = static_cast<size_t>(std::min(kChunk, saved.info->nbytes - off));
    std::span<uint8_t> chunk(buf.data(), n);
    ALLOY_RETURN_IF_ERROR(saved.source->Read(*saved.info, off, chunk));
    ALLOY_RETURN_IF_ERROR(sink.WriteAt(index, off, chunk));
    saved.source->Release(*saved.info, off, n);
  }
  return Status::OK();
}

}  // namespace

Status ReadTensorF64(formats::TensorSource& source, const TensorInfo& info,
                     std::vector<double>* out) {
  std::vector<uint8_t> bytes(info.nbytes);
  ALLOY_RETURN_IF_ERROR(source.Read(info, 0, bytes));
  std::vector<float> f32(info.numel());
  DecodeToF32(info.dtype, bytes, f32);
  out->assign(f32.begin(), f32.end());
  return Status::OK();
}

Result<ModuleFactors> ReadScaledFactors(formats::LoraAdapter& adapter,
                                        const formats::LoraDelta& delta) {
  ALLOY_CHECK(delta.kind != formats::LoraKind::kBias && "bias deltas have no factors");
  ModuleFactors f;
  f.module = delta.module;
  f.embedding = delta.embedding;
  f.rank = delta.rank;
  f.in = delta.a->shape[1];
  f.out = delta.b->shape[0];
  ALLOY_RETURN_IF_ERROR(ReadTensorF64(adapter.tensors(), *delta.a, &f.a));
  ALLOY_RETURN_IF_ERROR(ReadTensorF64(adapter.tensors(), *delta.b, &f.b));
  for (double& v : f.a) v *= delta.scale;
  return f;
}

Result<AdapterWriteReport> WriteLoraAdapter(const std::string& out_dir,
                                            const AdapterContents& contents,
                                            const WriteAdapterOptions& options) {
  std::vector<TensorInfo> infos;
  std::vector<Pending> pending;
  std::set<std::string> keys;
  auto add = [&](std::string key, formats::DType dtype, std::vector<int64_t> shape,
                 Pending p) -> Status {
    if (!keys.insert(key).second) {
      return Status::InvalidArgument(out_dir + ": two adapter tensors would be named '" + key +
                                     "'");
    }
    ALLOY_ASSIGN_OR_RETURN(TensorInfo info, formats::MakeTensorInfo(std::move(key), dtype, shape));
    infos.push_back(std::move(info));
    pending.push_back(p);
    return Status::OK();
  };

  formats::LoraAdapterConfig config;
  config.base_model = contents.base_model;
  config.fan_in_fan_out = contents.fan_in_fan_out;
  config.lora_bias = !contents.biases.empty();
  std::set<std::string> targets;
  for (const ModuleFactors& m : contents.modules) {
    const std::string where = out_dir + ": module '" + m.module + "'";
    if (m.rank <= 0 || m.in <= 0 || m.out <= 0 ||
        m.a.size() != static_cast<size_t>(m.rank * m.in) ||
        m.b.size() != static_cast<size_t>(m.out * m.rank)) {
      return Status::InvalidArgument(where + ": factors do not match rank " +
                                     std::to_string(m.rank));
    }
    config.r = std::max(config.r, m.rank);
    targets.insert(LastComponent(m.module));
    ALLOY_RETURN_IF_ERROR(add(formats::LoraFactorKey(m.module, true, m.embedding), contents.dtype,
                              {m.rank, m.in}, Pending{&m.a, nullptr}));
    ALLOY_RETURN_IF_ERROR(add(formats::LoraFactorKey(m.module, false, m.embedding),
                              contents.dtype, {m.out, m.rank}, Pending{&m.b, nullptr}));
  }
  for (const ModuleFactors& m : contents.modules) {
    if (m.rank != config.r) config.rank_pattern[m.module] = m.rank;
  }
  for (const auto& [module, values] : contents.biases) {
    ALLOY_RETURN_IF_ERROR(add(formats::LoraBiasKey(module), contents.dtype,
                              {static_cast<int64_t>(values.size())}, Pending{&values, nullptr}));
  }
  std::set<std::string> saved_modules;
  for (const SavedTensor& s : contents.saved) {
    ALLOY_RETURN_IF_ERROR(
        add(formats::LoraSavedKey(s.name), s.info->dtype, s.info->shape, Pending{nullptr, &s}));
    saved_modules.insert(ModuleOf(s.name));
  }
  if (infos.empty()) {
    return Status::InvalidArgument(out_dir + ": the adapter would hold no tensors");
  }
  config.target_modules.assign(targets.begin(), targets.end());
  config.modules_to_save.assign(saved_modules.begin(), saved_modules.end());

  formats::ModelWriterOptions writer_options;
  writer_options.max_shard_bytes = std::numeric_limits<uint64_t>::max();  // PEFT reads one file
  writer_options.weights_stem = "adapter_model";
  writer_options.overwrite = options.overwrite;
  writer_options.fsync = options.fsync;
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::ModelDirWriter> writer,
                         formats::ModelDirWriter::Create(out_dir, writer_options));
  ALLOY_RETURN_IF_ERROR(writer->Begin(infos, {{"format", "pt"}}));
  AdapterWriteReport report;
  for (size_t i = 0; i < infos.size(); ++i) {
    ALLOY_RETURN_IF_ERROR(pending[i].values != nullptr
                              ? EncodeInto(*writer, i, infos[i], *pending[i].values)
                              : CopyInto(*writer, i, *pending[i].saved));
    report.bytes += infos[i].nbytes;
  }
  ALLOY_RETURN_IF_ERROR(
      writer->AddFile("adapter_config.json", formats::LoraAdapterConfigJson(config)));
  if (!options.readme.empty()) ALLOY_RETURN_IF_ERROR(writer->AddFile("README.md", options.readme));
  ALLOY_RETURN_IF_ERROR(writer->Finish());
  report.n_modules = contents.modules.size();
  report.max_rank = config.r;
  return report;
}

}  // namespace alloy::merge
