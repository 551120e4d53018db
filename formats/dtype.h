// DType: element types of stored tensors, named as in safetensors.
//
// The enumerators follow the safetensors Rust `Dtype` enum order (increasing
// alignment); the safetensors writer sorts tensors by this order, descending.
// All functions here are pure and thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace alloy::formats {

enum class DType : uint8_t {
  kBool,
  kF4,
  kF6_E2M3,
  kF6_E3M2,
  kU8,
  kI8,
  kF8_E5M2,
  kF8_E4M3,  // the "FN" variant: no infinities, NaN is S.1111.111
  kF8_E8M0,
  kF8_E4M3FNUZ,
  kF8_E5M2FNUZ,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,
  kF64,
  kI64,
  kU64,
};

inline constexpr int kNumDTypes = static_cast<int>(DType::kU64) + 1;

// Bits per element (4 for F4, 6 for F6_*, 64 for C64).
int DTypeBits(DType d);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view DTypeName(DType d);
// Parses the exact (case-sensitive) safetensors spelling.
std::optional<DType> ParseDTypeName(std::string_view name);
// Parses a user-facing spelling as mergekit recipes and the CLI accept it:
// "bf16"/"bfloat16", "f16"/"fp16"/"float16"/"half", "f32"/"fp32"/"float32"/"float",
// "f64"/"float64", "f8_e4m3"/"fp8"/"float8_e4m3fn", "f8_e5m2"/"float8_e5m2"
// (case-insensitive), and the exact safetensors names.
std::optional<DType> ParseUserDType(std::string_view name);
// The torch spelling used in config.json `torch_dtype`: "bfloat16", "float16", ...
std::string_view DTypeTorchName(DType d);
// True for the floating types alloy can decode to f32 and encode from f32:
// F64, F32, BF16, F16, F8_E4M3, F8_E5M2.
bool IsConvertibleFloat(DType d);

}  // namespace alloy::formats
