#include "merge/fp8_model.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/model_dir.h"
#include "merge/codec.h"
#include "merge/relisted_source.h"
#include "merge/scratch.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::Result;
using formats::Status;
using formats::TensorInfo;
using formats::TensorSource;

constexpr std::string_view kScaleSuffix = "_scale_inv";
// Elements dequantized per step of a Read: bounds the per-thread scratch
// (1 MiB of floats) however large the requested range is.
constexpr uint64_t kPieceElems = uint64_t{1} << 18;

bool IsF8(DType d) { return d == DType::kF8_E4M3 || d == DType::kF8_E5M2; }
bool IsScaleName(std::string_view name) {
  return name.size() > kScaleSuffix.size() && name.ends_with(kScaleSuffix);
}
bool IsScaleDType(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

std::string BlockString(const std::array<int64_t, 2>& block) {
  return "[" + std::to_string(block[0]) + ", " + std::to_string(block[1]) + "]";
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The file holding `info` inside `source`, for messages.
std::string FileOf(const TensorSource& source, const TensorInfo& info) {
  const std::vector<std::string>& files = source.files();
  return info.file_index < files.size() ? files[info.file_index] : source.name();
}

const nlohmann::json* QuantizationConfig(const nlohmann::json* config) {
  if (config == nullptr || !config->is_object()) return nullptr;
  auto it = config->find("quantization_config");
  return it != config->end() && it->is_object() ? &*it : nullptr;
}

bool ConfigSaysFp8(const nlohmann::json* config) {
  const nlohmann::json* q = QuantizationConfig(config);
  if (q == nullptr) return false;
  auto it = q->find("quant_method");
  return it != q->end() && it->is_string() && it->get<std::string>() == "fp8";
}

// quantization_config.weight_block_size, or the default.
Result<std::array<int64_t, 2>> BlockSize(const nlohmann::json* config) {
  const nlohmann::json* q = QuantizationConfig(config);
  if (q == nullptr) return kDefaultFp8Block;
  auto it = q->find("weight_block_size");
  if (it == q->end() || it->is_null()) return kDefaultFp8Block;
  const nlohmann::json& v = *it;
  if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() ||
      !v[1].is_number_integer() || v[0].get<int64_t>() <= 0 || v[1].get<int64_t>() <= 0) {
    return Status::InvalidArgument(
        "config.json: quantization_config.weight_block_size must be two positive integers "
        "[rows, cols], got " +
        v.dump());
  }
  return std::array<int64_t, 2>{v[0].get<int64_t>(), v[1].get<int64_t>()};
}

// One presented tensor: either the inner tensor as is, or an F8 tensor with
// its scale, dequantized to float32.
struct Entry {
  const TensorInfo* weight = nullptr;  // the inner tensor
  const TensorInfo* scale = nullptr;   // set: dequantized with this scale
};

struct Fp8Buffers {
  std::vector<uint8_t> raw;         // fp8 codes of one piece
  std::vector<float> values;        // the piece, dequantized
  std::vector<uint8_t> scale_raw;   // one row of scale blocks, stored
  std::vector<float> scale_row;     // ... decoded
};
Fp8Buffers& ThreadFp8Buffers() {
  thread_local Fp8Buffers buffers;
  return buffers;
}

class Fp8Source final : public RelistedSource {
 public:
  Fp8Source(std::unique_ptr<TensorSource> inner, std::vector<TensorInfo> infos,
            std::vector<Entry> entries, std::array<int64_t, 2> block)
      : RelistedSource(std::move(inner), std::move(infos)),
        entries_(std::move(entries)),
        block_(block) {}

  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    const Entry& e = Lookup(info);
    if (e.scale == nullptr) return inner_->View(*e.weight);
    // A computed tensor: materialized whole for the few callers that want a
    // view, freed by a Release() of the whole tensor.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = views_.find(info.name);
    if (it == views_.end()) {
      std::vector<uint8_t> bytes(static_cast<size_t>(info.nbytes));
      ALLOY_RETURN_IF_ERROR(Read(info, 0, bytes));
      it = views_.emplace(info.name, std::move(bytes)).first;
    }
    return std::span<const uint8_t>(it->second);
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    const Entry& e = Lookup(info);
    if (e.scale == nullptr) return inner_->Read(*e.weight, offset, out);
    uint64_t end = 0;
    if (!formats::CheckedAdd(offset, out.size(), &end) || end > info.nbytes) {
      return Status::InvalidArgument(name() + ": tensor '" + info.name + "': read past its end");
    }
    // Whole elements covering the byte range, a piece at a time.
    const uint64_t first_elem = offset / 4;
    const uint64_t last_elem = (end + 3) / 4;
    uint64_t written = 0;
    for (uint64_t piece = first_elem; piece < last_elem; piece += kPieceElems) {
      const uint64_t n = std::min(kPieceElems, last_elem - piece);
      ALLOY_RETURN_IF_ERROR(Dequantize(e, piece, n));
      const Fp8Buffers& buf = ThreadFp8Buffers();
      const uint64_t skip = piece == first_elem ? offset - first_elem * 4 : 0;
      const uint64_t take = std::min<uint64_t>(n * 4 - skip, out.size() - written);
      std::memcpy(out.data() + written, reinterpret_cast<const uint8_t*>(buf.values.data()) + skip,
                  static_cast<size_t>(take));
      written += take;
    }
    return Status::OK();
  }

  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    const Entry& e = Lookup(info);
    if (e.scale == nullptr) return inner_->Release(*e.weight, offset, len);
    if (offset == 0 && len >= info.nbytes) {
      std::lock_guard<std::mutex> lock(mu_);
      views_.erase(info.name);
    }
    // Byte ranges of the inner tensor differ (1 byte per element); hand its
    // pages back in the matching element range.
    const uint64_t elem_begin = offset / 4;
    const uint64_t elem_len = len == std::numeric_limits<uint64_t>::max() ? len : (len + 3) / 4;
    inner_->Release(*e.weight, elem_begin, elem_len);
    if (offset == 0 && len >= info.nbytes) inner_->Release(*e.scale);
  }

 private:
  const Entry& Lookup(const TensorInfo& info) const { return entries_[IndexOf(info)]; }

  // Dequantizes elements [first, first + n) of `e` into the thread's
  // `values`: fp8 decoded exactly to float32, then multiplied by the float32
  // scale of its block (one rounding, as PyTorch's f32 multiply).
  Status Dequantize(const Entry& e, uint64_t first, uint64_t n) const {
    Fp8Buffers& buf = ThreadFp8Buffers();
    Grow(buf.raw, static_cast<size_t>(n));
    Grow(buf.values, static_cast<size_t>(n));
    std::span<uint8_t> raw(buf.raw.data(), static_cast<size_t>(n));
    ALLOY_RETURN_IF_ERROR(inner_->Read(*e.weight, first, raw));
    std::span<float> values(buf.values.data(), static_cast<size_t>(n));
    DecodeToF32(e.weight->dtype, raw, values);

    const uint64_t cols = static_cast<uint64_t>(e.weight->shape[1]);
    const uint64_t block_rows = static_cast<uint64_t>(block_[0]);
    const uint64_t block_cols = static_cast<uint64_t>(block_[1]);
    const uint64_t scale_cols = static_cast<uint64_t>(e.scale->shape[1]);
    const size_t scale_elem = ElementBytes(e.scale->dtype);
    Grow(buf.scale_raw, static_cast<size_t>(scale_cols) * scale_elem);
    Grow(buf.scale_row, static_cast<size_t>(scale_cols));
    uint64_t loaded_block_row = std::numeric_limits<uint64_t>::max();
    uint64_t pos = 0;
    while (pos < n) {
      const uint64_t elem = first + pos;
      const uint64_t row = elem / cols;
      const uint64_t col = elem % cols;
      const uint64_t block_row = row / block_rows;
      if (block_row != loaded_block_row) {
        std::span<uint8_t> sraw(buf.scale_raw.data(), static_cast<size_t>(scale_cols) * scale_elem);
        ALLOY_RETURN_IF_ERROR(
            inner_->Read(*e.scale, block_row * scale_cols * scale_elem, sraw));
        DecodeToF32(e.scale->dtype, sraw,
                    std::span<float>(buf.scale_row.data(), static_cast<size_t>(scale_cols)));
        loaded_block_row = block_row;
      }
      // The rest of this row inside the piece, one column block at a time.
      const uint64_t row_end = std::min(n, pos + (cols - col));
      uint64_t c = col;
      while (pos < row_end) {
        const uint64_t block_end = std::min(cols, (c / block_cols + 1) * block_cols);
        const uint64_t stop = std::min(row_end, pos + (block_end - c));
        const float s = buf.scale_row[static_cast<size_t>(c / block_cols)];
        for (uint64_t i = pos; i < stop; ++i) values[static_cast<size_t>(i)] *= s;
        c += stop - pos;
        pos = stop;
      }
    }
    return Status::OK();
  }

  std::vector<Entry> entries_;
  std::array<int64_t, 2> block_;
  std::mutex mu_;
  std::map<std::string, std::vector<uint8_t>> views_;
};

// Checks `scale` against the F8 tensor `weight` it scales.
Status CheckScale(const TensorSource& src, const TensorInfo& weight, const TensorInfo& scale,
                  const std::array<int64_t, 2>& block) {
  const std::string where = FileOf(src, weight) + ": ";
  if (!IsScaleDType(scale.dtype)) {
    return Status::Corrupt(where + "FP8 scale tensor '" + scale.name + "' is " +
                           std::string(formats::DTypeName(scale.dtype)) +
                           "; a block scale must be F32, BF16 or F16: refusing to dequantize '" +
                           weight.name + "'");
  }
  if (weight.shape.size() != 2) {
    return Status::Unsupported(where + "FP8 tensor '" + weight.name + "' has shape " +
                               formats::ShapeString(weight.shape) + " with scale tensor '" +
                               scale.name +
                               "': alloy dequantizes block-scaled FP8 only for 2-D tensors");
  }
  const std::vector<int64_t> expected = {CeilDiv(weight.shape[0], block[0]),
                                         CeilDiv(weight.shape[1], block[1])};
  if (scale.shape != expected) {
    return Status::Corrupt(where + "FP8 scale tensor '" + scale.name + "' has shape " +
                           formats::ShapeString(scale.shape) + " but '" + weight.name +
                           "' of shape " + formats::ShapeString(weight.shape) + " with block size " +
                           BlockString(block) + " needs " + formats::ShapeString(expected) +
                           ": refusing to dequantize");
  }
  return Status::OK();
}

}  // namespace

bool IsFp8Quantized(const TensorSource& source, const nlohmann::json* config) {
  if (ConfigSaysFp8(config)) return true;
  return std::any_of(source.tensors().begin(), source.tensors().end(),
                     [](const TensorInfo& t) { return IsScaleName(t.name); });
}

Result<std::unique_ptr<TensorSource>> DequantizeFp8(std::unique_ptr<TensorSource> inner,
                                                    const nlohmann::json* config) {
  if (!IsFp8Quantized(*inner, config)) return inner;
  Result<std::array<int64_t, 2>> block = BlockSize(config);
  if (!block.ok()) return block.status().WithContext(inner->name());

  std::vector<TensorInfo> infos;
  std::vector<Entry> entries;
  for (const TensorInfo& t : inner->tensors()) {
    if (IsScaleName(t.name)) {
      const std::string weight_name = t.name.substr(0, t.name.size() - kScaleSuffix.size());
      const TensorInfo* w = inner->Find(weight_name);
      if (w == nullptr) {
        return Status::Corrupt(FileOf(*inner, t) + ": FP8 scale tensor '" + t.name +
                               "' has no tensor '" + weight_name +
                               "' to scale: refusing to guess what it belongs to");
      }
      if (!IsF8(w->dtype)) {
        return Status::Corrupt(FileOf(*inner, t) + ": scale tensor '" + t.name + "' scales '" +
                               weight_name + "', which is " +
                               std::string(formats::DTypeName(w->dtype)) +
                               ", not F8_E4M3 or F8_E5M2: refusing to guess its meaning");
      }
      continue;  // hidden: folded into its tensor
    }
    Entry e{&t, nullptr};
    TensorInfo out = t;
    if (IsF8(t.dtype)) {
      const std::string scale_name = t.name + std::string(kScaleSuffix);
      const TensorInfo* scale = inner->Find(scale_name);
      if (scale == nullptr) {
        return Status::Corrupt(FileOf(*inner, t) + ": FP8 tensor '" + t.name + "' has no '" +
                               scale_name +
                               "' scale tensor: refusing to dequantize (the checkpoint is "
                               "FP8-quantized, so its codes are meaningless without their block "
                               "scales)");
      }
      ALLOY_RETURN_IF_ERROR(CheckScale(*inner, t, *scale, *block));
      e.scale = scale;
      ALLOY_ASSIGN_OR_RETURN(TensorInfo f32, formats::MakeTensorInfo(t.name, DType::kF32, t.shape));
      out.dtype = DType::kF32;
      out.nbytes = f32.nbytes;
    }
    infos.push_back(std::move(out));
    entries.push_back(e);
  }
  return std::unique_ptr<TensorSource>(
      new Fp8Source(std::move(inner), std::move(infos), std::move(entries), *block));
}

Result<std::unique_ptr<TensorSource>> OpenFp8Aware(std::unique_ptr<TensorSource> inner,
                                                   const std::string& path,
                                                   formats::SymlinkPolicy symlinks) {
  const bool candidate =
      std::any_of(inner->tensors().begin(), inner->tensors().end(),
                  [](const TensorInfo& t) { return IsF8(t.dtype) || IsScaleName(t.name); });
  if (!candidate) return inner;
  std::optional<nlohmann::json> config;
  const std::string dir = formats::ModelDirectoryOf(path);
  const std::string config_path = dir + "/config.json";
  if (formats::IsRegularFile(config_path)) {
    ALLOY_RETURN_IF_ERROR(formats::CheckInsideDirectory(dir, config_path, symlinks));
    ALLOY_ASSIGN_OR_RETURN(std::string text, formats::ReadSmallFile(config_path));
    ALLOY_ASSIGN_OR_RETURN(config, formats::ParseStrictJson(text, config_path));
  }
  return DequantizeFp8(std::move(inner), config ? &*config : nullptr);
}

bool DropFp8QuantizationConfig(nlohmann::json& config) {
  if (!config.is_object()) return false;
  bool dropped = false;
  auto it = config.find("quantization_config");
  if (it != config.end() && it->is_object()) {
    auto method = it->find("quant_method");
    if (method != it->end() && method->is_string() && method->get<std::string>() == "fp8") {
      config.erase(it);
      dropped = true;
    }
  }
  for (auto& [key, value] : config.items()) {
    if (value.is_object()) dropped = DropFp8QuantizationConfig(value) || dropped;
  }
  return dropped;
}

}  // namespace alloy::merge
