// Tests for kernels/reduce: every figure against a scalar reference.
#include "kernels/reduce.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

namespace alloy::kernels {
namespace {

std::vector<float> Normals(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

int Sign(float x) { return (x > 0) - (x < 0); }

TEST_CASE("SumSquares and ComparePair equal scalar references", "[kernels][reduce]") {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{1001}}) {
    std::vector<float> a = Normals(n, 1), b = Normals(n, 2);
    if (n > 3) {
      a[1] = 0;
      b[1] = 0;  // both zero: same sign
      b[2] = 0;  // one zero: different signs
    }
    double aa = 0, ab = 0, dd = 0, mx = 0;
    uint64_t same = 0;
    for (size_t i = 0; i < n; ++i) {
      aa += double(a[i]) * a[i];
      ab += double(a[i]) * b[i];
      const double d = double(a[i]) - b[i];
      dd += d * d;
      mx = std::max(mx, double(std::fabs(a[i] - b[i])));  // the float32 difference
      same += Sign(a[i]) == Sign(b[i]);
    }
    CHECK(SumSquares(a) == Approx(aa).epsilon(1e-12));
    const PairStats s = ComparePair(a, b);
    CHECK(s.aa == SumSquares(a));
    CHECK(s.bb == SumSquares(b));
    CHECK(s.ab == Approx(ab).epsilon(1e-12).margin(1e-12));
    CHECK(s.dd == Approx(dd).epsilon(1e-12));
    CHECK(s.max_abs_diff == mx);
    CHECK(s.same_sign == same);
  }
}

TEST_CASE("ComparePair of a vector with itself and with its negation", "[kernels][reduce]") {
  const std::vector<float> a = Normals(513, 3);
  std::vector<float> neg(a.size());
  std::transform(a.begin(), a.end(), neg.begin(), std::negate<float>());
  const PairStats self = ComparePair(a, a);
  CHECK(self.dd == 0);
  CHECK(self.max_abs_diff == 0);
  CHECK(self.same_sign == a.size());
  CHECK(self.ab == SumSquares(a));
  const PairStats opposite = ComparePair(a, neg);
  CHECK(opposite.ab == -SumSquares(a));
  CHECK(opposite.same_sign == 0);
}

TEST_CASE("CompareTaskPair and CountMixedSigns count signs like the definition", "[kernels][reduce]") {
  std::vector<float> a = Normals(777, 4), b = Normals(777, 5), c = Normals(777, 6);
  for (size_t i = 0; i < a.size(); i += 5) a[i] = 0;
  for (size_t i = 0; i < b.size(); i += 7) b[i] = 0;
  for (size_t i = 0; i < c.size(); i += 3) c[i] = 0;
  double ab = 0;
  uint64_t both = 0, opp = 0, multi = 0, mixed = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    both += a[i] != 0 && b[i] != 0;
    opp += Sign(a[i]) * Sign(b[i]) < 0;
    const int pos = (a[i] > 0) + (b[i] > 0) + (c[i] > 0);
    const int neg = (a[i] < 0) + (b[i] < 0) + (c[i] < 0);
    multi += pos + neg >= 2;
    mixed += pos > 0 && neg > 0;
  }
  const TaskPairStats s = CompareTaskPair(a, b);
  CHECK(s.ab == Approx(ab).epsilon(1e-12));
  CHECK(s.both_nonzero == both);
  CHECK(s.opposite == opp);
  const float* xs[] = {a.data(), b.data(), c.data()};
  uint64_t got_multi = 5, got_mixed = 7;  // adds to the counters
  CountMixedSigns(xs, a.size(), &got_multi, &got_mixed);
  CHECK(got_multi == multi + 5);
  CHECK(got_mixed == mixed + 7);
}

TEST_CASE("The magnitude histogram recovers exact bin masses", "[kernels][reduce]") {
  std::vector<float> x = Normals(20000, 7, 0.01f);
  x[0] = 0;
  x[1] = 1e-40f;  // subnormal
  x[2] = -3.5f;
  std::vector<uint64_t> count(kAbsBins), low(kAbsBins);
  AddAbsHistogram(x, count.data(), low.data());
  double total = 0;
  for (float v : x) total += std::fabs(double(v));
  const TopMass all = AbsTopMass(count.data(), low.data(), 1.0);
  CHECK(all.total == Approx(total).epsilon(1e-12));
  CHECK(all.top == Approx(total).epsilon(1e-12));
  // Top 20% against a sort.
  std::vector<double> mags(x.size());
  for (size_t i = 0; i < x.size(); ++i) mags[i] = std::fabs(double(x[i]));
  std::sort(mags.rbegin(), mags.rend());
  const size_t k = static_cast<size_t>(std::ceil(0.2 * double(x.size())));
  double top = 0;
  for (size_t i = 0; i < k; ++i) top += mags[i];
  const TopMass t = AbsTopMass(count.data(), low.data(), 0.2);
  CHECK(t.top == Approx(top).epsilon(1.0 / 128));
  CHECK(t.top <= t.total);
  // Each bin holds magnitudes in [floor(bin), floor(bin + 1)).
  const uint32_t bin = (std::bit_cast<uint32_t>(3.5f) >> 16);
  CHECK(AbsBinFloor(bin) <= 3.5f);
  CHECK(AbsBinFloor(bin + 1) > 3.5f);
  CHECK(AbsBinMass(bin, count[bin], low[bin]) == 3.5);
}

TEST_CASE("A top fraction of equal magnitudes is exact", "[kernels][reduce]") {
  const std::vector<float> x(1000, 0.25f);
  std::vector<uint64_t> count(kAbsBins), low(kAbsBins);
  AddAbsHistogram(x, count.data(), low.data());
  const TopMass t = AbsTopMass(count.data(), low.data(), 0.2);
  CHECK(t.total == 250.0);
  CHECK(t.top == 50.0);
  std::vector<uint64_t> zero(kAbsBins);
  const TopMass none = AbsTopMass(zero.data(), zero.data(), 0.2);
  CHECK(none.total == 0);
  CHECK(none.top == 0);
}

}  // namespace
}  // namespace alloy::kernels
