// Tests for kernels/sign: TIES sign election and disjoint merge, and the SCE
// variant, against a scalar reference written from mergekit-semantics.md §1.2
// and §1.12, plus hand-checked cases.
#include "tests/kernels/kernel_test_support.h"
#include "kernels/sign.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/convert.h"
#include "kernels/parallel.h"

namespace alloy::kernels {
namespace {


int Sign(float v) { return v > 0.0f ? 1 : (v < 0.0f ? -1 : 0); }

double RefTies(const std::vector<std::vector<float>>& d, const std::vector<float>& w, size_t i,
               SignElection election, bool normalize) {
  double vote = 0.0;
  for (size_t m = 0; m < d.size(); ++m) {
    const float weighted = w[m] * d[m][i];
    vote += election == SignElection::kSum ? static_cast<double>(weighted)
                                           : static_cast<double>(Sign(weighted));
  }
  const int majority = vote >= 0.0 ? 1 : -1;
  double mixed = 0.0;
  double div = 0.0;
  for (size_t m = 0; m < d.size(); ++m) {
    const float weighted = w[m] * d[m][i];
    const double agree = Sign(weighted) == majority ? 1.0 : 0.0;  // M as a 0/1 factor
    mixed += weighted * agree;
    div += w[m] * agree;
  }
  if (!normalize) return mixed;
  return mixed / (div == 0.0 ? 1.0 : div);
}

float RefSce(const std::vector<std::vector<float>>& d, const std::vector<float>& s, size_t i) {
  double vote = 0.0;
  for (size_t m = 0; m < d.size(); ++m) vote += d[m][i];
  const int majority = vote >= 0.0 ? 1 : -1;
  double mixed = 0.0;
  double div = 0.0;
  for (size_t m = 0; m < d.size(); ++m) {
    const double agree = Sign(d[m][i]) == majority ? 1.0 : 0.0;
    mixed += d[m][i] * s[m] * agree;
    div += s[m] * agree;
  }
  return static_cast<float>(mixed / std::max(div, 1e-6));
}

std::vector<std::vector<float>> MakeModels(size_t n_models, size_t n, uint32_t seed, bool bf16,
                                           bool negative) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<std::vector<float>> d(n_models, std::vector<float>(n));
  for (auto& model : d) {
    for (float& v : model) {
      v = normal(rng);
      if (rng() % 8 == 0) v = 0.0f;  // sparsified entries
      if (bf16) v = Bf16ToF32(F32ToBf16(v));
      if (negative) v = -std::fabs(v);
    }
  }
  return d;
}

std::vector<std::span<const float>> Spans(const std::vector<std::vector<float>>& d) {
  return std::vector<std::span<const float>>(d.begin(), d.end());
}

std::vector<double> Ties(const std::vector<std::vector<float>>& d, const std::vector<float>& w,
                         SignElection election, bool normalize) {
  const auto spans = Spans(d);
  std::vector<double> out(d.empty() ? 0 : d[0].size());
  TiesConsensus(spans, w, election, normalize, out);
  return out;
}

TEST_CASE("TiesConsensus hand-checked cases", "[kernels][sign]") {
  // Models as columns: element 0 votes −, element 1 is a tie (→ +),
  // element 2 is all zero, element 3 has a negative weight flipping a vote.
  const std::vector<std::vector<float>> d = {
      {1.0f, 1.0f, 0.0f, 1.0f}, {-2.0f, -1.0f, 0.0f, 1.0f}, {0.5f, 0.0f, 0.0f, 1.0f}};
  const std::vector<float> ones = {1.0f, 1.0f, 1.0f};
  CHECK(Ties(d, ones, SignElection::kSum, true) == std::vector<double>{-2.0, 1.0, 0.0, 1.0});
  CHECK(Ties(d, ones, SignElection::kSum, false) == std::vector<double>{-2.0, 1.0, 0.0, 3.0});
  // Count: element 0 has two positives vs one negative → +; mixed = 1.5 over 2.
  CHECK(Ties(d, ones, SignElection::kCount, true) == std::vector<double>{0.75, 1.0, 0.0, 1.0});
  // Weights {1, 1, -3}: element 3 has W = {1, 1, -3}, sum −1 → − wins;
  // mixed = −3, divisor = −3 → 1.
  const std::vector<float> w = {1.0f, 1.0f, -3.0f};
  const std::vector<double> got = Ties(d, w, SignElection::kSum, true);
  CHECK(got[3] == 1.0);
  CHECK(Ties(d, w, SignElection::kSum, false)[3] == -3.0);
  // The quotient is not rounded to float32: W = {1, 4} over Σw = 3 is the
  // float64 5/3.
  const std::vector<double> third = Ties({{1.0f}, {2.0f}}, {1.0f, 2.0f}, SignElection::kSum, true);
  CHECK(third[0] == 5.0 / 3.0);
  CHECK(third[0] != static_cast<double>(static_cast<float>(5.0 / 3.0)));
}

TEST_CASE("TiesConsensus matches the scalar reference", "[kernels][sign]") {
  for (size_t n : kLengths) {
    for (bool bf16 : {false, true}) {
      for (bool negative : {false, true}) {
        const auto d = MakeModels(3, n, static_cast<uint32_t>(n) + 1, bf16, negative);
        const std::vector<float> w = {0.5f, 0.3f, 0.2f};
        for (SignElection election : {SignElection::kSum, SignElection::kCount}) {
          for (bool normalize : {false, true}) {
            CAPTURE(n, bf16, negative, static_cast<int>(election), normalize);
            const std::vector<double> out = Ties(d, w, election, normalize);
            size_t bad = 0;
            for (size_t i = 0; i < n; ++i) {
              bad += std::bit_cast<uint64_t>(out[i]) !=
                     std::bit_cast<uint64_t>(RefTies(d, w, i, election, normalize));
            }
            CHECK(bad == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("TiesConsensus with inf and NaN multiplies M in, as mergekit", "[kernels][sign]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Element 0: votes {+inf, -1} → + wins; inf agrees → inf/1 = inf.
  // Element 1: votes {−inf, 1}: sum −inf → −; the agreeing −inf gives −inf.
  // Element 2: a NaN vote: NaN ≥ 0 is false → −; the NaN entry disagrees but
  // NaN·0 = NaN poisons the sum (mergekit's W·M does the same).
  const std::vector<std::vector<float>> d = {{inf, -inf, nan}, {-1.0f, 1.0f, -1.0f}};
  const std::vector<double> out = Ties(d, {1.0f, 1.0f}, SignElection::kSum, true);
  CHECK(out[0] == inf);
  CHECK(out[1] == -inf);
  CHECK(std::isnan(out[2]));
}

TEST_CASE("TiesConsensus on all-zero deltas and a single model", "[kernels][sign]") {
  const std::vector<std::vector<float>> zeros(2, std::vector<float>(5, 0.0f));
  CHECK(Ties(zeros, {1.0f, 1.0f}, SignElection::kSum, true) == std::vector<double>(5, 0.0));
  const std::vector<std::vector<float>> one = {{0.5f, -0.25f, 0.0f}};
  CHECK(Ties(one, {2.0f}, SignElection::kSum, true) == std::vector<double>{0.5, -0.25, 0.0});
  CHECK(Ties(one, {2.0f}, SignElection::kSum, false) == std::vector<double>{1.0, -0.5, 0.0});
}

TEST_CASE("SceConsensus matches the scalar reference", "[kernels][sign]") {
  for (size_t n : kLengths) {
    CAPTURE(n);
    const auto d = MakeModels(3, n, static_cast<uint32_t>(n) + 5, true, false);
    const std::vector<float> s = {0.2f, 0.5f, 0.3f};
    const auto spans = Spans(d);
    std::vector<float> out(n);
    SceConsensus(spans, s, out);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      bad += std::bit_cast<uint32_t>(out[i]) != std::bit_cast<uint32_t>(RefSce(d, s, i));
    }
    CHECK(bad == 0);
  }
  // Hand case: votes {+1, −3} → −; only model 1 agrees: −3·0.25/0.25.
  const std::vector<std::vector<float>> d = {{1.0f}, {-3.0f}};
  const auto spans = Spans(d);
  std::vector<float> out(1);
  SceConsensus(spans, std::vector<float>{0.75f, 0.25f}, out);
  CHECK(out[0] == -3.0f);
}

TEST_CASE("TiesConsensus split by ParallelForChunks is identical at 1 and N threads",
          "[kernels][sign]") {
  ThreadsGuard guard;
  const size_t n = 2 * kBlock + 333;
  const auto d = MakeModels(4, n, 17, true, false);
  const std::vector<float> w = {0.4f, 0.3f, 0.2f, 0.1f};
  const std::vector<double> whole = Ties(d, w, SignElection::kSum, true);
  for (int threads : {1, 4}) {
    SetThreads(threads);
    std::vector<double> pieces(n);
    ParallelForChunks(n, 1000, [&](size_t, size_t begin, size_t end) {
      std::vector<std::span<const float>> spans;
      for (const auto& model : d)
        spans.push_back(std::span<const float>(model).subspan(begin, end - begin));
      TiesConsensus(spans, w, SignElection::kSum, true,
                    std::span<double>(pieces).subspan(begin, end - begin));
    });
    CHECK(pieces == whole);
  }
}

TEST_CASE("TiesConsensus timing on a 4096x4096 tensor", "[.bench][kernels][sign]") {
  const size_t n = 4096 * 4096;
  const auto d = MakeModels(2, n, 1, true, false);
  const std::vector<float> w = {0.5f, 0.5f};
  const auto spans = Spans(d);
  std::vector<double> out(n);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    TiesConsensus(spans, w, SignElection::kSum, true, out);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  CHECK(std::isfinite(out[0]));
  WARN("TiesConsensus (2 models, 1 thread) " << best << " ms");
}

}  // namespace
}  // namespace alloy::kernels
