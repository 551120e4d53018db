// The executor's contract: fixed chunk boundaries, ordered prefix sums,
// embedding sub-matrix reads, copy-only tensors, one rounding to the output
// dtype, and byte-identical output at any thread count.
#include "merge/executor.h"

#include <catch2/catch.hpp>

#include "kernels/convert.h"
#include "merge/codec.h"

namespace alloy::merge {
namespace {

TEST_CASE("EncodeFromF64 rounds once (round-to-odd then RNE)", "[merge][executor]") {
  // 1 + 2^-8 + 2^-30 lies just above the bf16 midpoint between 1 and 1 + 2^-7:
  // one rounding gives 1 + 2^-7; f64 → f32 (RNE, loses 2^-30) → bf16 (tie to even) gives 1.
  const double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  std::vector<double> in = {x, -x, 0.0, 1e300, -1e300};
  std::vector<uint16_t> out(in.size());
  std::vector<float> scratch(in.size());
  kernels::EncodeStats stats;
  EncodeFromF64(formats::DType::kBF16, in,
                std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size() * 2),
                scratch, kernels::Overflow::kToInf, &stats);
  CHECK(out[0] == 0x3F81);
  CHECK(out[1] == 0xBF81);
  CHECK(out[2] == 0x0000);
  CHECK(out[3] == 0x7F80);  // +inf
  CHECK(out[4] == 0xFF80);
  CHECK(kernels::F32ToBf16(static_cast<float>(x)) == 0x3F80);  // what double rounding gives
}

}  // namespace
}  // namespace alloy::merge
