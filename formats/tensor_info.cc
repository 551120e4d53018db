#include "formats/tensor_info.h"

#include <limits>

namespace alloy::formats {

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

Result<uint64_t> CheckedNumel(std::span<const int64_t> shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return Status::Corrupt("negative dimension " + std::to_string(d) + " in shape " +
                                      ShapeString(shape));
    if (!CheckedMul(n, static_cast<uint64_t>(d), &n) ||
        n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Status::Corrupt("overflow computing the element count of shape " + ShapeString(shape));
    }
  }
  return n;
}

Result<uint64_t> CheckedByteSize(DType dtype, std::span<const int64_t> shape) {
  ALLOY_ASSIGN_OR_RETURN(uint64_t numel, CheckedNumel(shape));
  uint64_t bits = 0;
  if (!CheckedMul(numel, static_cast<uint64_t>(DTypeBits(dtype)), &bits)) {
    return Status::Corrupt("overflow computing the byte size of " + std::string(DTypeName(dtype)) +
                           " shape " + ShapeString(shape));
  }
  if (bits % 8 != 0) {
    return Status::Corrupt("misaligned sub-byte tensor: " + std::to_string(numel) + " " +
                           std::string(DTypeName(dtype)) + " elements do not fill whole bytes");
  }
  return bits / 8;
}

Result<TensorInfo> MakeTensorInfo(std::string name, DType dtype, std::vector<int64_t> shape) {
  TensorInfo info;
  ALLOY_ASSIGN_OR_RETURN(info.nbytes, CheckedByteSize(dtype, shape));
  info.name = std::move(name);
  info.dtype = dtype;
  info.shape = std::move(shape);
  return info;
}

std::string ShapeString(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  out += "]";
  return out;
}

}  // namespace alloy::formats
