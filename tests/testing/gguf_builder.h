// Test helpers that emit GGUF bytes directly (no dependency on the reader or
// the writer), with knobs for the corruptions of checkpoint-formats.md §7
// (cases 49-65).
//
// GgufBuilder writes the header fields, the KV records and the tensor infos
// in the order they are added, pads the infos to the alignment, then lays the
// tensors' data out back to back, each padded to the alignment (the last one
// too), with each tensor's offset computed from the data sizes. Every knob
// replaces one computed piece with a raw value or raw bytes, so a test can
// break exactly one rule at a time. The builder never adds
// `general.alignment` by itself: Alignment() only changes the padding.
//
// Thread safety: plain values; not for concurrent mutation.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"

namespace alloy::testing {

// GGUF value type ids (checkpoint-formats.md §4.1) as raw u32s, so tests can
// also write invalid ones.
inline constexpr uint32_t kGgU8 = 0, kGgI8 = 1, kGgU16 = 2, kGgI16 = 3, kGgU32 = 4, kGgI32 = 5,
                          kGgF32 = 6, kGgBool = 7, kGgString = 8, kGgArray = 9, kGgU64 = 10,
                          kGgI64 = 11, kGgF64 = 12;

// The little-endian bytes of `v`.
template <typename T>
std::string GgLe(T v) {
  std::string out(sizeof(T), '\0');
  std::memcpy(out.data(), &v, sizeof(T));  // the test hosts are little-endian
  return out;
}
// A GGUF string: u64 length + bytes (no NUL).
std::string GgString(std::string_view s);
// The bytes after an ARRAY type id: u32 element type, u64 count, elements.
std::string GgArray(uint32_t elem_type, uint64_t count, std::string_view elements);
// Concatenated little-endian f32s / GGUF strings (array elements).
std::string GgF32s(std::initializer_list<float> values);
std::string GgStrings(std::initializer_list<std::string_view> items);

// One metadata record: key, type id, and the bytes that follow the type id.
struct GgKv {
  std::string key;
  uint32_t type = kGgU8;
  std::string payload;                 // scalar bytes, GgString(...), GgArray(...)
  std::optional<uint64_t> key_length;  // replaces the u64 before the key
  std::string raw;                     // non-empty: the whole record, verbatim
};

// One tensor info plus its stored bytes.
struct GgTensor {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order
  uint32_t type = 0;
  std::string data;  // stored bytes, laid out in Tensor() order

  std::optional<uint64_t> name_length;  // replaces the u64 before the name
  std::optional<uint32_t> n_dims;       // replaces the count (ne is still written in full)
  std::optional<uint64_t> offset;       // replaces the computed data offset
};

class GgufBuilder {
 public:
  GgufBuilder& Magic(std::string four_bytes);  // default "GGUF"
  GgufBuilder& Version(uint32_t v);            // default 3
  GgufBuilder& TensorCount(int64_t n);         // default: the number of Tensor() calls
  GgufBuilder& KvCount(int64_t n);             // default: the number of Kv*() calls

  // Any record; returns it for the knobs above.
  GgKv& Kv(std::string key, uint32_t type, std::string payload);
  // A record written verbatim (counted in n_kv).
  GgufBuilder& RawKv(std::string bytes);
  GgufBuilder& KvString(std::string key, std::string_view value);
  GgufBuilder& KvU32(std::string key, uint32_t value);
  GgufBuilder& KvI32(std::string key, int32_t value);
  GgufBuilder& KvBool(std::string key, uint8_t byte);  // any byte, 0/1 valid
  GgufBuilder& KvArray(std::string key, uint32_t elem_type, uint64_t count, std::string elements);

  // A tensor whose offset is the running padded data size.
  GgTensor& Tensor(std::string name, std::vector<int64_t> ne, uint32_t type, std::string data);

  // The alignment used for the padding (default 32; not written as a KV).
  GgufBuilder& Alignment(uint64_t a);
  // Replaces the zero padding between the tensor infos and the data.
  GgufBuilder& HeaderPadding(std::string bytes);
  // Bytes appended after the data section; bytes cut off the end; or the
  // whole file cut to its first `n` bytes.
  GgufBuilder& AppendBytes(std::string tail);
  GgufBuilder& TruncateBytes(size_t n);
  GgufBuilder& TruncateAt(size_t n);

  // Everything before the tensor infos (magic, version, counts, KVs).
  std::string Prefix() const;
  // Prefix() + the tensor infos, unpadded.
  std::string Infos() const;
  // Infos() + the padding: the data section starts at Header().size().
  std::string Header() const;
  // The whole file.
  std::string Build() const;

 private:
  std::string magic_ = "GGUF";
  uint32_t version_ = 3;
  std::optional<int64_t> n_tensors_, n_kv_;
  std::vector<GgKv> kvs_;
  std::vector<GgTensor> tensors_;
  uint64_t alignment_ = 32;
  std::optional<std::string> header_padding_;
  std::string tail_;
  size_t truncate_ = 0;
  std::optional<size_t> truncate_at_;
};

// The minimal example of checkpoint-formats.md §4.1, written out from the
// text byte by byte: `general.architecture` = "llama", F32 `t` = [1, 2];
// 160 bytes (infos end at 102, data at 128).
std::string GgufSpecExampleBytes();

// One corrupted file, the code and a stable piece of the message it must
// produce (the message also starts with the file name, not included here),
// and the byte offset the message names, when the reader gives one.
struct GgufMalformedCase {
  std::string id;  // starts with the §7 case number
  std::string bytes;
  std::string expected_substring;
  std::optional<uint64_t> byte;
  formats::ErrorCode code = formats::ErrorCode::kCorrupt;
};

// Every GGUF case of checkpoint-formats.md §7 (49-65), with variants.
std::vector<GgufMalformedCase> MalformedGgufCases();

}  // namespace alloy::testing
