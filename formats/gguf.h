// GGUF (version 2 and 3, little-endian): the header model, a validating
// reader, a TensorSource over a GGUF file, and a writer
// (checkpoint-formats.md §4).
//
// Names stay as in the file (`blk.0.attn_q.weight`); shapes are given in
// torch order (GGUF's `ne` reversed). Tensors of a plain type (F32, F16,
// BF16, F64, I8..I64) are ordinary DType tensors. Block-quantized tensors
// (Q8_0, Q4_K, ...) are listed as F32 with their logical shape, but formats/
// never turns bytes into floats: GgufSource::Read refuses them, and
// merge::OpenCheckpoint (merge/gguf_model.h) wraps the source to dequantize
// them. Their raw blocks are available through ReadRaw().
//
// The reader validates everything before any tensor byte is touched, in the
// order of ggml's gguf_init_from_file (§4.2) plus llama.cpp's file-bounds
// check and the well-known key types; errors name the file and byte offset.
//
// Thread safety: GgufSource as TensorSource; GgufWriter as TensorSink (its
// WriteAt may run concurrently for disjoint ranges).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/byte_source.h"
#include "formats/dtype.h"
#include "formats/planned_file.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::formats {

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr size_t kGgufMaxTensorName = 63;  // bytes; ggml's GGML_MAX_NAME is 64 with the NUL
inline constexpr uint32_t kGgmlTypeCount = 43;

// ggml tensor type ids as stored in GGUF files (the ones alloy names in code).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  std::string_view name;      // "Q4_K"; "" for ids beyond the table
  uint32_t block_elems = 0;   // 0: removed or unknown type
  uint32_t block_bytes = 0;
};
// The traits of type id `id` (checkpoint-formats.md §4.3).
GgmlTypeTraits GgmlTypeTraitsOf(uint32_t id);
// "Q4_K", or "type 99" for unknown ids.
std::string GgmlTypeName(uint32_t id);
// The DType of a plain (non-block) type: F32, F16, BF16, F64, I8, I16, I32, I64.
std::optional<DType> GgmlPlainDType(uint32_t id);
// The inverse of GgmlPlainDType.
std::optional<GgmlType> GgmlTypeOfDType(DType d);
// "q8_0", "Q4_0", "f16", "bf16", "f32" (case-insensitive) → type id.
std::optional<GgmlType> ParseGgmlTypeName(std::string_view name);
// nbytes of a tensor with these dims (GGUF order) and type, overflow-checked.
// Fails with kCorrupt (unknown/removed type, ne[0] not a multiple of the
// block size, negative dims, overflow).
Result<uint64_t> GgmlByteSize(uint32_t type, std::span<const int64_t> ne);

enum class GgufValueType : uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64,
};
std::string_view GgufValueTypeName(GgufValueType t);

// One metadata value. Scalars and numeric arrays keep their little-endian
// bytes (`raw`), so donor metadata is copied bit for bit.
struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  GgufValueType elem_type = GgufValueType::kU8;  // arrays only
  uint64_t count = 1;                            // array elements (1 for scalars)
  std::string raw;                    // scalar or numeric-array bytes; a string's text
  std::vector<std::string> strings;   // a string array's elements

  // An integer scalar of any width (bool excluded) that fits.
  std::optional<uint64_t> AsUint() const;
  std::optional<int64_t> AsInt() const;
  // A floating or integer scalar.
  std::optional<double> AsFloat() const;
  // The string value, or nullptr.
  const std::string* AsString() const;
  // Short text for listings: "llama", "32", "1e-05", "[128256 × string]".
  std::string Describe() const;

  static GgufValue String(std::string s);
  static GgufValue Uint32(uint32_t v);
  static GgufValue Int32(int32_t v);
  static GgufValue Float32(float v);
  static GgufValue Bool(bool v);
  static GgufValue StringArray(std::vector<std::string> items);
  static GgufValue Float32Array(std::span<const float> items);
  static GgufValue Int32Array(std::span<const int32_t> items);
};

struct GgufKv {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order: ne[0] is the fastest-varying dim
  uint32_t type = 0;        // GgmlType id
  uint64_t offset = 0;      // from the start of the data section
  uint64_t nbytes = 0;
};

struct GgufHeader {
  uint32_t version = 3;
  std::vector<GgufKv> kvs;  // file order
  std::vector<GgufTensor> tensors;
  uint32_t alignment = kGgufDefaultAlignment;
  uint64_t data_offset = 0;  // absolute start of the data section

  const GgufValue* Find(std::string_view key) const;
  // general.architecture, or "".
  std::string Architecture() const;
};

// Reads and validates the header of the GGUF file in `src` (§4.2, §7 cases
// 49–65). Fails with kCorrupt naming the file, the byte offset and the rule;
// kUnsupported for big-endian files.
Result<GgufHeader> ReadGgufHeader(const ByteSource& src);

// True when the first bytes of `src` are the GGUF magic.
bool LooksLikeGguf(const ByteSource& src);

// The serialized header (KVs in order, tensor infos, zero padding to the
// alignment) for `tensors`, whose `offset` fields this fills in
// (back-to-back, each padded to `alignment`). Fails with kInvalidArgument on
// empty/duplicate keys or names, names ≥ 64 bytes, more than 4 dims, bad
// types, or a non-power-of-two alignment.
struct GgufLayout {
  std::string header;      // everything before the data section, padded
  uint64_t file_size = 0;  // header + padded data
};
Result<GgufLayout> PlanGgufLayout(const std::vector<GgufKv>& kvs, std::vector<GgufTensor>& tensors,
                                  uint32_t alignment = kGgufDefaultAlignment);

class GgufSource final : public TensorSource {
 public:
  // Validates the header; maps nothing yet.
  static Result<std::unique_ptr<GgufSource>> Open(std::unique_ptr<ByteSource> src);
  static Result<std::unique_ptr<GgufSource>> OpenFile(const std::string& path,
                                                      FileAccess access = FileAccess::kMmap);

  const GgufHeader& header() const { return header_; }
  // The GGUF record behind `info` (REQUIRES: info from this source).
  const GgufTensor& gguf_tensor(const TensorInfo& info) const;
  // True when `info` is block-quantized (Read refuses it; ReadRaw works).
  bool quantized(const TensorInfo& info) const;
  // Bytes [offset, offset + out.size()) of the tensor's stored blocks.
  Status ReadRaw(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const;

  const std::string& name() const override { return src_->name(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* Find(std::string_view name) const override;
  Result<std::span<const uint8_t>> View(const TensorInfo& info) override;
  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override;
  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override;
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  GgufSource(std::unique_ptr<ByteSource> src, GgufHeader header);
  size_t IndexOf(const TensorInfo& info) const;
  Status RefuseQuantized(const TensorInfo& info) const;

  std::unique_ptr<ByteSource> src_;
  GgufHeader header_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> files_;
};

// Writes one GGUF file: Begin() with the KVs and tensor records (type and ne
// set; offsets are computed), WriteAt() each tensor's stored bytes (already
// in the tensor's type: quantizing is merge/'s job), Finish() renames the
// temporary file into place.
class GgufWriter {
 public:
  GgufWriter(std::string path, bool fsync) : file_(std::move(path), fsync) {}
  Status Begin(const std::vector<GgufKv>& kvs, std::vector<GgufTensor> tensors,
               uint32_t alignment = kGgufDefaultAlignment);
  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) {
    return file_.WriteAt(index, offset, bytes);
  }
  Status Finish() { return file_.Finish(); }
  void Abort() { file_.Abort(); }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const std::string& path() const { return file_.path(); }

 private:
  PlannedFile file_;
  std::vector<GgufTensor> tensors_;
};

}  // namespace alloy::formats
