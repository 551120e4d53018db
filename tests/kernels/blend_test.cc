// Tests for kernels/blend: every span function against a scalar loop written
// from its contract, over awkward lengths (tiles of 1024 and their edges).
#include "kernels/blend.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

namespace alloy::kernels {
namespace {

constexpr size_t kBlendLengths[] = {0, 1, 7, 1023, 1024, 1025, 3000};

std::vector<float> Values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  // Signed zeros and exact ties between models exercise the +0 start.
  if (n > 3) v[0] = -0.0f, v[1] = 0.0f, v[2] = 1.0f;
  return v;
}

bool SameBits(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

// The contract: start from +0, add double(w·x) model by model, then multiply
// by the float64 reciprocal of the divisor, then base + lambda·sum.
double Reference(const std::vector<std::vector<float>>& xs, const std::vector<float>& w,
                 size_t i, double divisor, const float* base, double lambda) {
  double acc = 0.0;
  for (size_t k = 0; k < xs.size(); ++k) acc += static_cast<double>(w[k] * xs[k][i]);
  if (divisor != 1.0) acc *= 1.0 / divisor;
  if (base != nullptr) acc = static_cast<double>(base[i]) + lambda * acc;
  return acc;
}

TEST_CASE("WeightedSum and WeightedSumOnBase equal the scalar contract", "[kernels]") {
  for (size_t n_models : {size_t{0}, size_t{1}, size_t{2}, size_t{5}}) {
    for (size_t n : kBlendLengths) {
      for (double divisor : {1.0, 3.0, -0.7}) {
        CAPTURE(n_models, n, divisor);
        std::vector<std::vector<float>> xs;
        std::vector<std::span<const float>> spans;
        std::vector<float> w;
        for (size_t k = 0; k < n_models; ++k) {
          xs.push_back(Values(n, static_cast<uint32_t>(10 + k)));
          w.push_back(k % 2 ? -0.25f : 0.6f);
        }
        for (const auto& x : xs) spans.emplace_back(x);
        const std::vector<float> base = Values(n, 99);
        std::vector<double> out(n + 1, 12345.0), on_base(n + 1, 12345.0);
        WeightedSum(spans, w, divisor, std::span<double>(out.data(), n));
        WeightedSumOnBase(spans, w, divisor, base, 0.5, std::span<double>(on_base.data(), n));
        size_t bad = 0, bad_base = 0;
        for (size_t i = 0; i < n; ++i) {
          bad += !SameBits(out[i], Reference(xs, w, i, divisor, nullptr, 0.0));
          bad_base += !SameBits(on_base[i], Reference(xs, w, i, divisor, base.data(), 0.5));
        }
        CHECK(bad == 0);
        CHECK(bad_base == 0);
        // The fused delta form equals Subtract then WeightedSumOnBase.
        std::vector<std::vector<float>> deltas;
        for (const auto& x : xs) {
          std::vector<float> d(n);
          Subtract(x, base, d);
          deltas.push_back(std::move(d));
        }
        std::vector<std::span<const float>> dspans;
        for (const auto& d : deltas) dspans.emplace_back(d);
        std::vector<double> want_delta(n), got_delta(n);
        WeightedSumOnBase(dspans, w, divisor, base, 0.5, want_delta);
        WeightedDeltaSumOnBase(spans, w, divisor, base, 0.5, got_delta);
        size_t bad_delta = 0;
        for (size_t i = 0; i < n; ++i) bad_delta += !SameBits(got_delta[i], want_delta[i]);
        CHECK(bad_delta == 0);
        CHECK(out[n] == 12345.0);  // nothing written past the span
        CHECK(on_base[n] == 12345.0);
      }
    }
  }
}

TEST_CASE("WeightedSum sums a negative zero product to +0", "[kernels]") {
  const std::vector<float> x = {-0.0f, 0.0f, -1.0f};
  const std::vector<std::span<const float>> xs = {x};
  const std::vector<float> w = {1.0f};
  std::vector<double> out(3);
  WeightedSum(xs, w, 1.0, out);
  CHECK(std::bit_cast<uint64_t>(out[0]) == 0u);
  CHECK(std::bit_cast<uint64_t>(out[1]) == 0u);
  CHECK(out[2] == -1.0);
}

TEST_CASE("elementwise blend helpers equal their scalar loops", "[kernels]") {
  for (size_t n : kBlendLengths) {
    CAPTURE(n);
    const std::vector<float> x = Values(n, 1), b = Values(n, 2);
    std::vector<double> acc(n, 0.25), want(n, 0.25);
    AddBaseScaled(b, 2.0, acc);
    for (size_t i = 0; i < n; ++i) want[i] = static_cast<double>(b[i]) + 2.0 * want[i];
    CHECK(acc == want);
    std::vector<float> d(n), want_d(n);
    Subtract(x, b, d);
    for (size_t i = 0; i < n; ++i) want_d[i] = x[i] - b[i];
    CHECK(d == want_d);
  }
}

TEST_CASE("ComputeDotSums equals its lane contract", "[kernels]") {
  for (size_t n : kBlendLengths) {
    CAPTURE(n);
    const std::vector<float> a = Values(n, 3), b = Values(n, 4);
    double aa[8] = {}, bb[8] = {}, ab[8] = {};
    for (size_t i = 0; i < n; ++i) {
      const double u = a[i], v = b[i];
      aa[i % 8] += u * u;
      bb[i % 8] += v * v;
      ab[i % 8] += u * v;
    }
    DotSums want;
    for (size_t j = 0; j < 8; ++j) want.aa += aa[j], want.bb += bb[j], want.ab += ab[j];
    const DotSums got = ComputeDotSums(a, b);
    CHECK(SameBits(got.aa, want.aa));
    CHECK(SameBits(got.bb, want.bb));
    CHECK(SameBits(got.ab, want.ab));
    CHECK(SameBits(ComputeDot(a, b), want.ab));
  }
}

}  // namespace
}  // namespace alloy::kernels
