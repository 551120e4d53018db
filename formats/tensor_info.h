// TensorInfo: the name, element type and shape of one stored tensor, plus
// where its bytes live inside the source that listed it.
//
// Plain value type; thread-compatible.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "formats/status.h"

namespace alloy::formats {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar (one element)
  uint64_t nbytes = 0;         // validated byte length of the data

  // Filled in by readers; ignored by sinks. The file (shard) index inside the
  // source and the absolute byte offset of the data inside that file.
  uint32_t file_index = 0;
  uint64_t file_offset = 0;

  // REQUIRES: the shape was validated (CheckedNumel succeeded).
  uint64_t numel() const;
};

// Product of the dims with overflow checks. Fails with kCorrupt on a negative
// dim or when the product does not fit in 63 bits.
Result<uint64_t> CheckedNumel(std::span<const int64_t> shape);
// numel * bits / 8 with overflow checks. Fails with kCorrupt on overflow or
// when a sub-byte type does not end on a byte boundary.
Result<uint64_t> CheckedByteSize(DType dtype, std::span<const int64_t> shape);
// Builds a TensorInfo with nbytes computed; fails as CheckedByteSize.
Result<TensorInfo> MakeTensorInfo(std::string name, DType dtype, std::vector<int64_t> shape);
// "[2, 3]"
std::string ShapeString(std::span<const int64_t> shape);

// a + b, false on overflow.
inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
// a * b, false on overflow.
inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

}  // namespace alloy::formats
