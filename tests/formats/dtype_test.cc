#include "formats/dtype.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>

namespace alloy::formats {
namespace {

TEST_CASE("DType names round-trip and bits match the safetensors table", "[formats][dtype]") {
  struct Row {
    DType dtype;
    const char* name;
    int bits;
  };
  const Row rows[] = {
      {DType::kBool, "BOOL", 8},         {DType::kF4, "F4", 4},
      {DType::kF6_E2M3, "F6_E2M3", 6},   {DType::kF6_E3M2, "F6_E3M2", 6},
      {DType::kU8, "U8", 8},             {DType::kI8, "I8", 8},
      {DType::kF8_E5M2, "F8_E5M2", 8},   {DType::kF8_E4M3, "F8_E4M3", 8},
      {DType::kF8_E8M0, "F8_E8M0", 8},   {DType::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
      {DType::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8}, {DType::kI16, "I16", 16},
      {DType::kU16, "U16", 16},          {DType::kF16, "F16", 16},
      {DType::kBF16, "BF16", 16},        {DType::kI32, "I32", 32},
      {DType::kU32, "U32", 32},          {DType::kF32, "F32", 32},
      {DType::kC64, "C64", 64},          {DType::kF64, "F64", 64},
      {DType::kI64, "I64", 64},          {DType::kU64, "U64", 64},
  };
  REQUIRE(std::size(rows) == static_cast<size_t>(kNumDTypes));
  std::set<std::string> names;
  for (int i = 0; i < kNumDTypes; ++i) {
    const Row& row = rows[i];
    INFO(row.name);
    CHECK(static_cast<int>(row.dtype) == i);  // enum order = increasing alignment
    CHECK(DTypeName(row.dtype) == row.name);
    CHECK(DTypeBits(row.dtype) == row.bits);
    auto parsed = ParseDTypeName(row.name);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == row.dtype);
    CHECK_FALSE(DTypeTorchName(row.dtype).empty());
    names.insert(row.name);
  }
  CHECK(names.size() == static_cast<size_t>(kNumDTypes));
}

TEST_CASE("ParseDTypeName is exact and case-sensitive", "[formats][dtype]") {
  for (const char* bad : {"f32", "Bf16", "F128", "", "F32 ", " F32", "float32", "F8_E4M3FN", "I4"}) {
    INFO(bad);
    CHECK_FALSE(ParseDTypeName(bad).has_value());
  }
}

TEST_CASE("ParseUserDType accepts the documented spellings", "[formats][dtype]") {
  struct Row {
    const char* spelling;
    DType dtype;
  };
  const Row rows[] = {
      {"bf16", DType::kBF16},       {"bfloat16", DType::kBF16},   {"BF16", DType::kBF16},
      {"torch.bfloat16", DType::kBF16},
      {"f16", DType::kF16},         {"fp16", DType::kF16},        {"float16", DType::kF16},
      {"half", DType::kF16},        {"FP16", DType::kF16},
      {"f32", DType::kF32},         {"fp32", DType::kF32},        {"float32", DType::kF32},
      {"float", DType::kF32},       {"Float32", DType::kF32},
      {"f64", DType::kF64},         {"float64", DType::kF64},
      {"f8_e4m3", DType::kF8_E4M3}, {"fp8", DType::kF8_E4M3},     {"float8_e4m3fn", DType::kF8_E4M3},
      {"f8_e5m2", DType::kF8_E5M2}, {"float8_e5m2", DType::kF8_E5M2},
      {"I64", DType::kI64},         {"U8", DType::kU8},           {"F4", DType::kF4},
  };
  for (const Row& row : rows) {
    INFO(row.spelling);
    auto parsed = ParseUserDType(row.spelling);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == row.dtype);
  }
  for (const char* bad : {"", "bf", "float128", "int4", "fp4x"}) {
    INFO(bad);
    CHECK_FALSE(ParseUserDType(bad).has_value());
  }
}

TEST_CASE("Torch names and convertible floats", "[formats][dtype]") {
  CHECK(DTypeTorchName(DType::kBF16) == "bfloat16");
  CHECK(DTypeTorchName(DType::kF16) == "float16");
  CHECK(DTypeTorchName(DType::kF32) == "float32");
  CHECK(DTypeTorchName(DType::kF8_E4M3) == "float8_e4m3fn");
  for (DType d : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kF8_E4M3,
                  DType::kF8_E5M2}) {
    CHECK(IsConvertibleFloat(d));
  }
  for (DType d : {DType::kBool, DType::kF4, DType::kI32, DType::kU8, DType::kC64,
                  DType::kF8_E8M0, DType::kF8_E4M3FNUZ}) {
    CHECK_FALSE(IsConvertibleFloat(d));
  }
}

}  // namespace
}  // namespace alloy::formats
