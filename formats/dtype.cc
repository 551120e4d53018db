#include "formats/dtype.h"

#include <array>
#include <cctype>
#include <string>

namespace alloy::formats {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view name;
  int bits;
  std::string_view torch;
};

constexpr std::array<DTypeRow, kNumDTypes> kRows = {{
    {DType::kBool, "BOOL", 8, "bool"},
    {DType::kF4, "F4", 4, "float4_e2m1fn_x2"},
    {DType::kF6_E2M3, "F6_E2M3", 6, "float6_e2m3"},
    {DType::kF6_E3M2, "F6_E3M2", 6, "float6_e3m2"},
    {DType::kU8, "U8", 8, "uint8"},
    {DType::kI8, "I8", 8, "int8"},
    {DType::kF8_E5M2, "F8_E5M2", 8, "float8_e5m2"},
    {DType::kF8_E4M3, "F8_E4M3", 8, "float8_e4m3fn"},
    {DType::kF8_E8M0, "F8_E8M0", 8, "float8_e8m0fnu"},
    {DType::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8, "float8_e4m3fnuz"},
    {DType::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8, "float8_e5m2fnuz"},
    {DType::kI16, "I16", 16, "int16"},
    {DType::kU16, "U16", 16, "uint16"},
    {DType::kF16, "F16", 16, "float16"},
    {DType::kBF16, "BF16", 16, "bfloat16"},
    {DType::kI32, "I32", 32, "int32"},
    {DType::kU32, "U32", 32, "uint32"},
    {DType::kF32, "F32", 32, "float32"},
    {DType::kC64, "C64", 64, "complex64"},
    {DType::kF64, "F64", 64, "float64"},
    {DType::kI64, "I64", 64, "int64"},
    {DType::kU64, "U64", 64, "uint64"},
}};

const DTypeRow& Row(DType d) { return kRows[static_cast<size_t>(d)]; }

}  // namespace

int DTypeBits(DType d) { return Row(d).bits; }
std::string_view DTypeName(DType d) { return Row(d).name; }
std::string_view DTypeTorchName(DType d) { return Row(d).torch; }

std::optional<DType> ParseDTypeName(std::string_view name) {
  for (const auto& row : kRows) {
    if (row.name == name) return row.dtype;
  }
  return std::nullopt;
}

std::optional<DType> ParseUserDType(std::string_view name) {
  if (auto exact = ParseDTypeName(name)) return exact;
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind("torch.", 0) == 0) lower = lower.substr(6);
  if (lower == "bf16" || lower == "bfloat16") return DType::kBF16;
  if (lower == "f16" || lower == "fp16" || lower == "float16" || lower == "half")
    return DType::kF16;
  if (lower == "f32" || lower == "fp32" || lower == "float32" || lower == "float")
    return DType::kF32;
  if (lower == "f64" || lower == "fp64" || lower == "float64" || lower == "double")
    return DType::kF64;
  if (lower == "f8_e4m3" || lower == "fp8" || lower == "f8" || lower == "fp8_e4m3" ||
      lower == "float8_e4m3fn" || lower == "f8_e4m3fn")
    return DType::kF8_E4M3;
  if (lower == "f8_e5m2" || lower == "fp8_e5m2" || lower == "float8_e5m2") return DType::kF8_E5M2;
  return std::nullopt;
}

bool IsConvertibleFloat(DType d) {
  switch (d) {
    case DType::kF64:
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16:
    case DType::kF8_E4M3:
    case DType::kF8_E5M2:
      return true;
    default:
      return false;
  }
}

}  // namespace alloy::formats
