#include "formats/safetensors_reader.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "formats/json_strict.h"

namespace alloy::formats {
namespace {

using nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

// One tensor entry as parsed from the header, before the offset walk.
struct RawEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string overflow_shape;  // the JSON shape when a dim does not fit in int64
  uint64_t begin = 0;
  uint64_t end = 0;
};

std::string TypeName(const json& v) { return v.type_name(); }

// "'name'" for messages (validated UTF-8; control characters as \xNN).
std::string Quoted(const std::string& name) { return QuotedText(name, name.size()); }

// A non-negative JSON integer. nlohmann stores non-negative literals as
// unsigned and negative ones as signed; floats (2.0, 1e3) are refused.
bool AsUnsigned(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

class HeaderParser {
 public:
  explicit HeaderParser(const ByteSource& src) : src_(src), name_(src.name()) {}

  Result<SafetensorsHeader> Parse() {
    const uint64_t file_size = src_.size();
    // 1. The length prefix.
    if (file_size < 8) {
      return Corrupt("header too small: file is " + std::to_string(file_size) +
                     " bytes, the 8-byte header length alone needs 8");
    }
    uint8_t prefix[8];
    ALLOY_RETURN_IF_ERROR(src_.ReadAt(0, prefix));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
    // 2. The cap comes before any allocation.
    if (n > kMaxSafetensorsHeaderBytes) {
      return Corrupt("header too large: header length " + std::to_string(n) +
                     " exceeds the limit of " + std::to_string(kMaxSafetensorsHeaderBytes) +
                     " bytes");
    }
    // 3. 8 + N within the file (checked although the cap rules out overflow).
    uint64_t data_start = 0;
    if (!CheckedAdd(8, n, &data_start) || data_start > file_size) {
      return Corrupt("invalid header length: header length " + std::to_string(n) +
                     " runs past the end of the file (" + std::to_string(file_size - 8) +
                     " bytes follow the 8-byte prefix)");
    }
    std::string text(static_cast<size_t>(n), '\0');
    ALLOY_RETURN_IF_ERROR(
        src_.ReadAt(8, std::span<uint8_t>(reinterpret_cast<uint8_t*>(text.data()), text.size())));
    // 4-5. UTF-8 and strict JSON (duplicate keys, depth, dialect).
    Result<json> parsed = ParseStrictJson(text, "header");
    if (!parsed.ok()) return parsed.status().WithContext(name_);
    const json& root = *parsed;
    if (!root.is_object()) {
      return Corrupt("invalid JSON in header: expected object at the top level, got " +
                     TypeName(root));
    }

    SafetensorsHeader header;
    header.data_start = data_start;
    std::vector<RawEntry> entries;
    entries.reserve(root.size());
    for (const auto& [key, value] : root.items()) {
      if (key == kMetadataKey) {
        ALLOY_RETURN_IF_ERROR(ParseMetadata(value, &header.metadata));
        continue;
      }
      RawEntry entry;
      ALLOY_RETURN_IF_ERROR(ParseEntry(key, value, &entry));
      entries.push_back(std::move(entry));
    }

    // 6. Sorted by (begin, end) the tensors must tile [0, total) exactly.
    // Ties are broken by name so error messages are deterministic.
    std::sort(entries.begin(), entries.end(), [](const RawEntry& a, const RawEntry& b) {
      return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    uint64_t start = 0;
    header.tensors.reserve(entries.size());
    for (RawEntry& entry : entries) {
      ALLOY_ASSIGN_OR_RETURN(TensorInfo info, ValidateEntry(entry, start, data_start));
      start = entry.end;
      header.tensors.push_back(std::move(info));
    }

    // 7. The data region ends exactly at EOF: no polyglot tail, no truncation.
    uint64_t data_end = 0;
    const bool overflow = !CheckedAdd(data_start, start, &data_end);
    if (overflow || data_end != file_size) {
      std::string detail;
      if (overflow) {
        detail = "tensors end past file byte 2^64";
      } else if (data_end < file_size) {
        detail = "tensors end at file byte " + std::to_string(data_end) + ", leaving " +
                 std::to_string(file_size - data_end) + " trailing bytes";
      } else {
        detail = "tensors end at file byte " + std::to_string(data_end) +
                 ", the data section is " + std::to_string(data_end - file_size) +
                 " bytes short";
      }
      return Corrupt("incomplete metadata, file not fully covered: " + detail +
                     " (file size " + std::to_string(file_size) + ")");
    }
    return header;
  }

 private:
  Status Corrupt(const std::string& msg) const { return Status::Corrupt(name_ + ": " + msg); }

  Status ParseMetadata(const json& value, std::map<std::string, std::string>* out) const {
    if (value.is_null()) return Status::OK();
    if (!value.is_object()) {
      return Corrupt("invalid JSON in header: __metadata__ must be an object (metadata values "
                     "must be strings), got " + TypeName(value));
    }
    for (const auto& [key, v] : value.items()) {
      if (!v.is_string()) {
        return Corrupt("invalid JSON in header: __metadata__ key " + Quoted(key) + " holds " +
                       TypeName(v) + "; metadata values must be strings");
      }
      (*out)[key] = v.get<std::string>();
    }
    return Status::OK();
  }

  Status ParseEntry(const std::string& name, const json& value, RawEntry* entry) const {
    entry->name = name;
    const std::string tensor = "tensor " + Quoted(name);
    if (!value.is_object()) {
      return Corrupt("invalid JSON in header: entry for " + tensor + " must be an object, got " +
                     TypeName(value));
    }
    // Unknown fields are ignored, like the reference (no deny_unknown_fields).
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) {
        return Corrupt("invalid JSON in header: missing field '" + std::string(field) +
                       "' for " + tensor);
      }
    }
    const json& dtype = value.at("dtype");
    if (!dtype.is_string()) {
      return Corrupt("unknown dtype for " + tensor + ": expected a string, got " +
                     TypeName(dtype));
    }
    std::optional<DType> parsed = ParseDTypeName(dtype.get_ref<const std::string&>());
    if (!parsed) {
      return Corrupt("unknown dtype '" + dtype.get<std::string>() + "' for " + tensor);
    }
    entry->dtype = *parsed;

    const json& shape = value.at("shape");
    if (!shape.is_array()) {
      return Corrupt("invalid shape for " + tensor + ": expected an array of non-negative "
                     "integers, got " + TypeName(shape));
    }
    if (shape.size() > kMaxSafetensorsDims) {
      return Corrupt("invalid shape for " + tensor + ": " + std::to_string(shape.size()) +
                     " dimensions, more than the limit of " +
                     std::to_string(kMaxSafetensorsDims));
    }
    entry->shape.reserve(shape.size());
    for (size_t dim_idx = 0; dim_idx < shape.size(); ++dim_idx) {
      uint64_t dim = 0;
      if (!AsUnsigned(shape[dim_idx], &dim)) {
        return Corrupt("invalid shape for " + tensor + ": dimension " + std::to_string(dim_idx) +
                       " is " + shape[dim_idx].dump() + ", expected a non-negative integer");
      }
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        entry->overflow_shape = shape.dump();
        dim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      }
      entry->shape.push_back(static_cast<int64_t>(dim));
    }

    const json& offsets = value.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2 || !AsUnsigned(offsets[0], &entry->begin) ||
        !AsUnsigned(offsets[1], &entry->end)) {
      return Corrupt("invalid data_offsets for " + tensor + ": expected 2 non-negative "
                     "integers [begin, end], got " + offsets.dump());
    }
    return Status::OK();
  }

  Result<TensorInfo> ValidateEntry(RawEntry& entry, uint64_t start, uint64_t data_start) const {
    const std::string tensor = "tensor " + Quoted(entry.name);
    const std::string range = "data_offsets [" + std::to_string(entry.begin) + ", " +
                              std::to_string(entry.end) + ")";
    if (entry.begin != start) {
      std::string where = entry.begin < start ? "overlaps the previous tensor" : "leaves a gap";
      return Corrupt("invalid offset for " + tensor + ": " + range + " begins at data byte " +
                     std::to_string(entry.begin) + ", expected " + std::to_string(start) +
                     " (" + where + "; file byte " + FileByte(data_start, start) + ")");
    }
    if (entry.end < entry.begin) {
      return Corrupt("invalid offset for " + tensor + ": " + range +
                     " ends before it begins (file byte " + FileByte(data_start, start) + ")");
    }
    const std::string what = std::string(DTypeName(entry.dtype)) + " " + ShapeString(entry.shape);
    if (!entry.overflow_shape.empty()) {
      return Corrupt("overflow computing buffer size from shape and/or element type for " +
                     tensor + ": a dimension of " + entry.overflow_shape + " exceeds 2^63-1");
    }
    // numel and numel * bits with checked arithmetic, as the reference does.
    Result<uint64_t> numel = CheckedNumel(entry.shape);
    uint64_t nbits = 0;
    if (!numel.ok() ||
        !CheckedMul(*numel, static_cast<uint64_t>(DTypeBits(entry.dtype)), &nbits)) {
      return Corrupt("overflow computing buffer size from shape and/or element type for " +
                     tensor + ": " + what);
    }
    if (nbits % 8 != 0) {
      return Corrupt("misaligned sub-byte tensor " + Quoted(entry.name) + ": " + what + " is " +
                     std::to_string(nbits) + " bits, not a whole number of bytes");
    }
    const uint64_t nbytes = nbits / 8;
    if (entry.end - entry.begin != nbytes) {
      return Corrupt("invalid shape, data type, or offset for " + tensor + ": " + what +
                     " needs " + std::to_string(nbytes) + " bytes, " + range + " hold " +
                     std::to_string(entry.end - entry.begin) + " (file byte " +
                     FileByte(data_start, entry.begin) + ")");
    }
    TensorInfo info;
    info.name = std::move(entry.name);
    info.dtype = entry.dtype;
    info.shape = std::move(entry.shape);
    info.nbytes = nbytes;
    info.file_index = 0;
    info.file_offset = data_start + entry.begin;  // <= data_start + end, checked at EOF
    return info;
  }

  static std::string FileByte(uint64_t data_start, uint64_t offset) {
    uint64_t abs = 0;
    return CheckedAdd(data_start, offset, &abs) ? std::to_string(abs) : "(overflow)";
  }

  const ByteSource& src_;
  const std::string& name_;
};

// Heterogeneous lookup so Find(string_view) does not allocate.
struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class SafetensorsSource final : public TensorSource {
 public:
  SafetensorsSource(std::unique_ptr<ByteSource> src, SafetensorsHeader header)
      : src_(std::move(src)),
        tensors_(std::move(header.tensors)),
        metadata_(std::move(header.metadata)),
        files_{src_->name()} {
    index_.reserve(tensors_.size());
    for (size_t tensor_idx = 0; tensor_idx < tensors_.size(); ++tensor_idx) {
      index_.emplace(tensors_[tensor_idx].name, tensor_idx);
    }
  }

  const std::string& name() const override { return src_->name(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  const TensorInfo* Find(std::string_view name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    return src_->View(info.file_offset, info.nbytes);
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    uint64_t end = 0;
    if (!CheckedAdd(offset, out.size(), &end) || end > info.nbytes) {
      return Status::InvalidArgument(src_->name() + ": read of [offset " + std::to_string(offset) +
                                     ", +" + std::to_string(out.size()) + ") is outside tensor '" +
                                     info.name + "' (" + std::to_string(info.nbytes) + " bytes)");
    }
    return src_->ReadAt(info.file_offset + offset, out);
  }

  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    if (offset >= info.nbytes) return;
    len = std::min(len, info.nbytes - offset);
    src_->Release(info.file_offset + offset, len);
  }

  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  std::unique_ptr<ByteSource> src_;
  const std::vector<TensorInfo> tensors_;
  const std::map<std::string, std::string> metadata_;
  const std::vector<std::string> files_;
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> index_;
};

}  // namespace

Result<SafetensorsHeader> ReadSafetensorsHeader(const ByteSource& src) {
  return HeaderParser(src).Parse();
}

Result<std::unique_ptr<TensorSource>> OpenSafetensors(std::unique_ptr<ByteSource> src) {
  ALLOY_ASSIGN_OR_RETURN(SafetensorsHeader header, ReadSafetensorsHeader(*src));
  return std::unique_ptr<TensorSource>(new SafetensorsSource(std::move(src), std::move(header)));
}

Result<std::unique_ptr<TensorSource>> OpenSafetensorsFile(const std::string& path,
                                                          FileAccess access) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> src, OpenFileSource(path, access));
  return OpenSafetensors(std::move(src));
}

}  // namespace alloy::formats
