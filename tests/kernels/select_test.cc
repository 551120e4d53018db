// Tests for kernels/select: the radix select and the TIES / breadcrumbs
// magnitude masks against a std::sort reference with the Decision (f) tie
// rule, over lengths, data shapes (random, bf16 with massive ties,
// all-negative, all-zero, all-equal, NaN/inf) and densities.
#include "tests/kernels/kernel_test_support.h"
#include "kernels/select.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/convert.h"
#include "kernels/parallel.h"
#include "kernels/sparsify.h"

namespace alloy::kernels {
namespace {


enum class Shape { kRandom, kBf16Ties, kAllNegative, kAllZero, kAllEqual, kSpecials };

const char* ShapeName(Shape shape) {
  switch (shape) {
    case Shape::kRandom:
      return "random";
    case Shape::kBf16Ties:
      return "bf16-ties";
    case Shape::kAllNegative:
      return "all-negative";
    case Shape::kAllZero:
      return "all-zero";
    case Shape::kAllEqual:
      return "all-equal";
    case Shape::kSpecials:
      return "nan-inf";
  }
  return "?";
}

std::vector<float> MakeData(Shape shape, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    float v = normal(rng);
    switch (shape) {
      case Shape::kRandom:
        break;
      case Shape::kBf16Ties:
        v = Bf16ToF32(F32ToBf16(v));
        break;  // task-vector-like ties
      case Shape::kAllNegative:
        v = -std::fabs(v);
        break;
      case Shape::kAllZero:
        v = (rng() & 1) ? 0.0f : -0.0f;
        break;
      case Shape::kAllEqual:
        v = (rng() & 1) ? 0.25f : -0.25f;
        break;
      case Shape::kSpecials: {
        const uint32_t r = rng() % 16;
        if (r == 0) v = std::numeric_limits<float>::quiet_NaN();
        if (r == 1) v = -std::numeric_limits<float>::infinity();
        if (r == 2) v = std::bit_cast<float>(0xFFC01234u);  // negative NaN, other payload
        if (r == 3) v = Bf16ToF32(F32ToBf16(v));
        break;
      }
    }
    x[i] = v;
  }
  return x;
}

// Reference magnitude order: NaN above everything, all NaNs equal, |−0| = |0|.
bool MagLess(float a, float b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return std::fabs(a) < std::fabs(b);
}

// Indices ordered ascending by (|x|, index).
std::vector<size_t> AscendingOrder(const std::vector<float>& x) {
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (MagLess(x[a], x[b])) return true;
    if (MagLess(x[b], x[a])) return false;
    return a < b;
  });
  return idx;
}

std::vector<uint8_t> RefTopK(const std::vector<float>& x, size_t k) {
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  // Descending by |x|, ties by lowest index.
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (MagLess(x[b], x[a])) return true;
    if (MagLess(x[a], x[b])) return false;
    return a < b;
  });
  std::vector<uint8_t> keep(x.size(), 0);
  for (size_t i = 0; i < std::min(k, x.size()); ++i) keep[idx[i]] = 1;
  return keep;
}

std::vector<uint8_t> RefWindow(const std::vector<float>& x, size_t lo, size_t hi) {
  const std::vector<size_t> order = AscendingOrder(x);
  std::vector<uint8_t> keep(x.size(), 0);
  for (size_t pos = lo; pos < std::min(hi, x.size()); ++pos) keep[order[pos]] = 1;
  return keep;
}

size_t CountMismatches(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
  return bad;
}

const Shape kShapes[] = {Shape::kRandom,  Shape::kBf16Ties, Shape::kAllNegative,
                         Shape::kAllZero, Shape::kAllEqual, Shape::kSpecials};

TEST_CASE("MagnitudeKey orders like |x|, signed zeros and NaNs are equal", "[kernels][select]") {
  CHECK(MagnitudeKey(0.0f) == MagnitudeKey(-0.0f));
  CHECK(MagnitudeKey(-1.5f) == MagnitudeKey(1.5f));
  CHECK(MagnitudeKey(1.0f) < MagnitudeKey(-2.0f));
  CHECK(MagnitudeKey(std::numeric_limits<float>::infinity()) < kNanKey);
  CHECK(MagnitudeKey(std::numeric_limits<float>::quiet_NaN()) == kNanKey);
  CHECK(MagnitudeKey(std::bit_cast<float>(0xFF800001u)) == kNanKey);
  CHECK(KeyMagnitude(MagnitudeKey(-3.0f)) == 3.0f);
  CHECK(std::isnan(KeyMagnitude(kNanKey)));
}

TEST_CASE("SelectByRank matches the sorted keys", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  for (Shape shape : kShapes) {
    for (size_t n : kLengths) {
      if (n == 0) continue;
      CAPTURE(ShapeName(shape), n);
      const std::vector<float> x = MakeData(shape, n, 7u + static_cast<uint32_t>(n));
      std::vector<uint32_t> keys(n);
      for (size_t i = 0; i < n; ++i) keys[i] = MagnitudeKey(x[i]);
      std::vector<uint32_t> sorted = keys;
      std::sort(sorted.begin(), sorted.end());
      for (size_t rank : {size_t{0}, n / 3, n / 2, n - 1}) {
        CAPTURE(rank);
        const RankSelection sel = SelectByRank(x, rank, scratch);
        const auto range = std::equal_range(sorted.begin(), sorted.end(), sorted[rank]);
        CHECK(sel.key == sorted[rank]);
        CHECK(sel.n_below == static_cast<uint64_t>(range.first - sorted.begin()));
        CHECK(sel.n_equal == static_cast<uint64_t>(range.second - range.first));
      }
      const KthLargest kth = SelectKthLargest(x, 1, scratch);
      CHECK(kth.key == sorted.back());
      CHECK(kth.n_above == 0);
    }
  }
}

TEST_CASE("TopKMagnitudeMask keeps exactly k with lowest-index ties", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  for (Shape shape : kShapes) {
    for (size_t n : kLengths) {
      const std::vector<float> x = MakeData(shape, n, 11u + static_cast<uint32_t>(n));
      std::vector<size_t> ks;
      for (double density : {0.0, 1e-9, 0.5, 1.0}) ks.push_back(TopKCount(n, density));
      ks.push_back(1);
      ks.push_back(n > 0 ? n - 1 : 0);
      ks.push_back(n / 7 + 1);
      ks.push_back(n + 5);  // more than n keeps everything
      for (size_t k : ks) {
        CAPTURE(ShapeName(shape), n, k);
        std::vector<uint8_t> keep(n, 7);
        TopKMagnitudeMask(x, k, scratch, keep);
        CHECK(CountMismatches(keep, RefTopK(x, k)) == 0);
        CHECK(static_cast<size_t>(std::count(keep.begin(), keep.end(), 1)) == std::min(k, n));
      }
    }
  }
}

TEST_CASE("bf16 task vectors: many ties at the cut-off", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  const size_t n = 100000;
  const std::vector<float> x = MakeData(Shape::kBf16Ties, n, 5);
  std::vector<uint32_t> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = MagnitudeKey(x[i]);
  std::sort(keys.begin(), keys.end());
  const size_t distinct = static_cast<size_t>(std::unique(keys.begin(), keys.end()) - keys.begin());
  CHECK(distinct > 300);
  CHECK(distinct < 3000);
  const uint64_t k = TopKCount(n, 0.5);
  const KthLargest kth = SelectKthLargest(x, k, scratch);
  CHECK(kth.n_equal > 1);                // the cut-off is a tie ...
  CHECK(kth.n_above + kth.n_equal > k);  // ... that is split
  std::vector<uint8_t> keep(n);
  TopKMagnitudeMask(x, k, scratch, keep);
  CHECK(CountMismatches(keep, RefTopK(x, k)) == 0);
}

TEST_CASE("TopKMagnitudeMask small hand cases", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  {
    const std::vector<float> x = {0.0f, -0.0f, 0.0f};
    std::vector<uint8_t> keep(3);
    TopKMagnitudeMask(x, 2, scratch, keep);
    CHECK(keep == std::vector<uint8_t>{1, 1, 0});
  }
  {
    const std::vector<float> x = {1.0f, nan, -3.0f, 3.0f, 2.0f};
    std::vector<uint8_t> keep(5);
    TopKMagnitudeMask(x, 2, scratch, keep);  // NaN is the largest, then the first 3
    CHECK(keep == std::vector<uint8_t>{0, 1, 1, 0, 0});
    TopKMagnitudeMask(x, 3, scratch, keep);
    CHECK(keep == std::vector<uint8_t>{0, 1, 1, 1, 0});
  }
}

TEST_CASE("RankWindowMask keeps ascending positions lo <= pos < hi", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  for (Shape shape : kShapes) {
    for (size_t n : kLengths) {
      const std::vector<float> x = MakeData(shape, n, 23u + static_cast<uint32_t>(n));
      std::vector<RankWindow> windows = {
          {0, n},    {0, 0}, {n, n}, {n / 2, n / 2}, {0, n / 2}, {n / 3, n}, {n / 4, n - n / 5},
          {1, n + 3}};
      for (double density : {0.0, 1e-9, 0.5, 1.0}) {
        windows.push_back(BreadcrumbsWindow(n, density, 0.01, false));
        windows.push_back(BreadcrumbsWindow(n, density, 0.01, true));
      }
      for (const RankWindow& window : windows) {
        CAPTURE(ShapeName(shape), n, window.lo, window.hi);
        std::vector<uint8_t> keep(n, 7);
        RankWindowMask(x, window.lo, window.hi, scratch, keep);
        CHECK(CountMismatches(keep, RefWindow(x, window.lo, window.hi)) == 0);
      }
    }
  }
}

TEST_CASE("RankWindowMask small hand case with ties", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  // Ascending (|x|, index): idx 1 (0), 0 (1), 3 (1), 4 (-1), 2 (2).
  const std::vector<float> x = {1.0f, 0.0f, 2.0f, 1.0f, -1.0f};
  std::vector<uint8_t> keep(5);
  RankWindowMask(x, 2, 4, scratch, keep);  // positions 2, 3 → indices 3, 4
  CHECK(keep == std::vector<uint8_t>{0, 0, 0, 1, 1});
  RankWindowMask(x, 1, 2, scratch, keep);  // position 1 → index 0
  CHECK(keep == std::vector<uint8_t>{1, 0, 0, 0, 0});
}

TEST_CASE("Masks at offset starts and across many slices", "[kernels][select]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  const size_t n = 1200001;  // 10 slices of 2 chunks
  const std::vector<float> data = MakeData(Shape::kBf16Ties, n + 3, 99);
  const std::vector<float> x(data.begin() + 3, data.end());
  std::span<const float> view = std::span<const float>(data).subspan(3);
  const size_t k = TopKCount(n, 0.3);
  std::vector<uint8_t> keep(n);
  TopKMagnitudeMask(view, k, scratch, keep);
  CHECK(CountMismatches(keep, RefTopK(x, k)) == 0);
  const RankWindow window = BreadcrumbsWindow(n, 0.6, 0.05, true);
  RankWindowMask(view, window.lo, window.hi, scratch, keep);
  CHECK(CountMismatches(keep, RefWindow(x, window.lo, window.hi)) == 0);
}

TEST_CASE("Masks are identical at 1 and N threads", "[kernels][select]") {
  ThreadsGuard guard;
  std::vector<uint32_t> scratch(kSelectScratchSize);
  for (Shape shape : {Shape::kRandom, Shape::kBf16Ties}) {
    const size_t n = 1048576 + 12345;
    const std::vector<float> x = MakeData(shape, n, 3);
    std::vector<uint8_t> top1(n), top4(n), win1(n), win4(n);
    SetThreads(1);
    const KthLargest kth1 = SelectKthLargest(x, n / 3, scratch);
    TopKMagnitudeMask(x, n / 3, scratch, top1);
    RankWindowMask(x, n / 5, n - n / 7, scratch, win1);
    SetThreads(4);
    const KthLargest kth4 = SelectKthLargest(x, n / 3, scratch);
    TopKMagnitudeMask(x, n / 3, scratch, top4);
    RankWindowMask(x, n / 5, n - n / 7, scratch, win4);
    CHECK(kth1.key == kth4.key);
    CHECK(kth1.n_above == kth4.n_above);
    CHECK(top1 == top4);
    CHECK(win1 == win4);
  }
}

TEST_CASE("MagnitudeRanks gives ascending (|x|, index) positions", "[kernels][select]") {
  for (Shape shape : kShapes) {
    for (size_t n : kLengths) {
      CAPTURE(ShapeName(shape), n);
      const std::vector<float> data = MakeData(shape, n + 1, 31u + static_cast<uint32_t>(n));
      const std::vector<float> x(data.begin() + 1, data.end());  // offset start
      std::vector<uint32_t> scratch(MagnitudeRanksScratchSize(n));
      std::vector<uint32_t> rank(n, 0xFFFFFFFFu);
      MagnitudeRanks(std::span<const float>(data).subspan(1), scratch, rank);
      const std::vector<size_t> order = AscendingOrder(x);
      size_t bad = 0;
      for (size_t pos = 0; pos < n; ++pos) bad += rank[order[pos]] != pos;
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("BreadcrumbsWindow follows mergekit's arithmetic", "[kernels][select]") {
  // keep = 50, top = 1, bot = 49 → [49, 99).
  CHECK(BreadcrumbsWindow(100, 0.5, 0.01, true).lo == 49);
  CHECK(BreadcrumbsWindow(100, 0.5, 0.01, true).hi == 99);
  // gamma·N < 1: top == 0, the quirk zeroes everything.
  const RankWindow quirk = BreadcrumbsWindow(50, 0.5, 0.01, true);
  CHECK(quirk.lo == quirk.hi);
  const RankWindow fixed = BreadcrumbsWindow(50, 0.5, 0.01, false);
  CHECK(fixed.lo == 25);
  CHECK(fixed.hi == 50);
  // keep + top > N: bot < 0 → top += bot, bot = 0.
  const RankWindow over = BreadcrumbsWindow(100, 0.95, 0.1, true);
  CHECK(over.lo == 0);
  CHECK(over.hi == 95);
}

TEST_CASE("Streaming key helpers match per-element references", "[kernels][select]") {
  for (Shape shape : kShapes) {
    for (size_t n : kLengths) {
      CAPTURE(ShapeName(shape), n);
      const std::vector<float> x = MakeData(shape, n, 31u + static_cast<uint32_t>(n));
      const std::vector<float> base = MakeData(Shape::kBf16Ties, n, 37u + static_cast<uint32_t>(n));
      std::vector<float> diff(n);
      for (size_t i = 0; i < n; ++i) diff[i] = x[i] - base[i];
      std::vector<uint32_t> keys(n), diff_keys(n);
      MagnitudeKeys(x, keys);
      DifferenceMagnitudeKeys(x, base, diff_keys);
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) {
        bad += keys[i] != MagnitudeKey(x[i]);
        bad += diff_keys[i] != MagnitudeKey(diff[i]);
      }
      CHECK(bad == 0);
      // Keys present (first, middle, NaN) and absent.
      std::vector<uint32_t> probes = {0u, kNanKey, 0x12345u};
      if (n > 0) probes.insert(probes.end(), {keys[0], keys[n / 2], diff_keys[n - 1]});
      for (uint32_t key : probes) {
        std::vector<size_t> at, diff_at;
        for (size_t i = 0; i < n; ++i) {
          if (keys[i] == key) at.push_back(i);
          if (diff_keys[i] == key) diff_at.push_back(i);
        }
        CHECK(CountMagnitudeKey(x, key) == at.size());
        CHECK(CountDifferenceMagnitudeKey(x, base, key) == diff_at.size());
        for (uint64_t ordinal : {uint64_t{0}, uint64_t{1}, uint64_t{at.size() / 2},
                                 uint64_t{at.size()}, uint64_t{at.size() + 3}}) {
          CAPTURE(key, ordinal);
          CHECK(FindMagnitudeKey(x, key, ordinal) == (ordinal < at.size() ? at[ordinal] : n));
        }
        for (uint64_t ordinal : {uint64_t{0}, uint64_t{diff_at.size() / 3},
                                 uint64_t{diff_at.size()}}) {
          CAPTURE(key, ordinal);
          CHECK(FindDifferenceMagnitudeKey(x, base, key, ordinal) ==
                (ordinal < diff_at.size() ? diff_at[ordinal] : n));
        }
      }
    }
  }
}

TEST_CASE("Select timing on a 4096x4096 tensor", "[.bench][kernels][select]") {
  ThreadsGuard guard;
  std::vector<uint32_t> scratch(kSelectScratchSize);
  const size_t n = 4096 * 4096;
  for (Shape shape : {Shape::kRandom, Shape::kBf16Ties}) {
    const std::vector<float> x = MakeData(shape, n, 1);
    std::vector<uint8_t> keep(n);
    for (int threads : {1, 2}) {
      SetThreads(threads);
      double best_select = 1e30;
      double best_mask = 1e30;
      for (int rep = 0; rep < 5; ++rep) {
        auto t0 = std::chrono::steady_clock::now();
        const KthLargest kth = SelectKthLargest(x, n / 2, scratch);
        auto t1 = std::chrono::steady_clock::now();
        TopKMagnitudeMask(x, n / 2, scratch, keep);
        auto t2 = std::chrono::steady_clock::now();
        CHECK(kth.n_above < n / 2);
        best_select =
            std::min(best_select, std::chrono::duration<double, std::milli>(t1 - t0).count());
        best_mask = std::min(best_mask, std::chrono::duration<double, std::milli>(t2 - t1).count());
      }
      WARN(ShapeName(shape) << " threads=" << threads << ": select " << best_select
                            << " ms, top-k mask " << best_mask << " ms");
    }
    // DELLA-style per-row ranks, rows of 4096, single-threaded.
    const size_t row_len = 4096;
    std::vector<uint32_t> rank_scratch(MagnitudeRanksScratchSize(row_len));
    std::vector<uint32_t> rank(row_len);
    auto t0 = std::chrono::steady_clock::now();
    uint64_t checksum = 0;
    for (size_t row = 0; row < n; row += row_len) {
      MagnitudeRanks(std::span<const float>(x).subspan(row, row_len), rank_scratch, rank);
      checksum += rank[0];
    }
    auto t1 = std::chrono::steady_clock::now();
    CHECK(checksum < n);
    const double ranks_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    WARN(ShapeName(shape) << ": per-row ranks (4096 x 4096, 1 thread) " << ranks_ms << " ms");
  }
}

}  // namespace
}  // namespace alloy::kernels
