// Tests for kernels/sparsify: mask application, the DARE keep-mask against a
// per-element reference, the float64 L1 sums (bit-identical at any thread
// count) and mergekit's count arithmetic.
#include "tests/kernels/kernel_test_support.h"
#include "kernels/sparsify.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/convert.h"
#include "kernels/parallel.h"
#include "kernels/random.h"
#include "kernels/select.h"

namespace alloy::kernels {
namespace {


std::vector<float> MakeDeltas(size_t n, uint32_t seed, bool bf16, bool negative) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(n);
  for (float& v : x) {
    v = normal(rng);
    if (bf16) v = Bf16ToF32(F32ToBf16(v));
    if (negative) v = -std::fabs(v);
  }
  return x;
}

size_t CountMismatches(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
  return bad;
}

std::vector<uint8_t> MakeMask(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> keep(n);
  for (uint8_t& k : keep) k = static_cast<uint8_t>(rng() & 1);
  return keep;
}

TEST_CASE("ApplyMask keeps and scales, zeroes the rest", "[kernels][sparsify]") {
  for (size_t n : kLengths) {
    CAPTURE(n);
    const std::vector<float> x = MakeDeltas(n, 1, false, false);
    const std::vector<uint8_t> keep = MakeMask(n, 2);
    std::vector<float> out(n, 99.0f);
    ApplyMask(x, keep, 1.75f, out);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad += out[i] != (keep[i] ? x[i] * 1.75f : 0.0f);
    CHECK(bad == 0);
    for (size_t i = 0; i < n; ++i)
      bad += keep[i] && std::bit_cast<uint32_t>(out[i]) != std::bit_cast<uint32_t>(x[i] * 1.75f);
    CHECK(bad == 0);
    std::vector<float> in_place = x;
    ApplyMask(in_place, keep, 1.75f, in_place);
    CHECK(in_place == out);
  }
}

TEST_CASE("ApplyMask on inf and NaN follows mergekit's x·mask", "[kernels][sparsify]") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {inf, inf, -2.0f, -2.0f};
  const std::vector<uint8_t> keep = {1, 0, 1, 0};
  std::vector<float> out(4);
  ApplyMask(x, keep, 0.5f, out);
  CHECK(out[0] == inf);
  CHECK(std::isnan(out[1]));  // inf · 0
  CHECK(out[2] == -1.0f);
  CHECK(out[3] == 0.0f);
  CHECK(std::signbit(out[3]));  // −2 · 0 = −0
}

TEST_CASE("DareKeepMask is U(seed, name, model, i) < density", "[kernels][sparsify]") {
  const uint64_t name = HashName("model.layers.3.self_attn.q_proj.weight");
  for (size_t n : kLengths) {
    for (float density : {0.0f, 1e-9f, 0.5f, 0.53125f, 1.0f}) {
      for (uint64_t first : {uint64_t{0}, uint64_t{3}}) {
        CAPTURE(n, density, first);
        std::vector<uint8_t> keep(n, 7);
        DareKeepMask(11, name, 1, first, density, keep);
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i) {
          bad += keep[i] != (Uniform(11, name, 1, first + i) < density ? 1 : 0);
        }
        CHECK(bad == 0);
        if (density == 0.0f) CHECK(std::count(keep.begin(), keep.end(), 0) == static_cast<long>(n));
        if (density == 1.0f) CHECK(std::count(keep.begin(), keep.end(), 1) == static_cast<long>(n));
      }
    }
  }
}

TEST_CASE("DareKeepMask keeps a fraction ≈ density, and splits do not matter",
          "[kernels][sparsify]") {
  ThreadsGuard guard;
  const size_t n = 1 << 20;
  const uint64_t name = HashName("w");
  for (float density : {0.1f, 0.5f, 0.9f}) {
    CAPTURE(density);
    std::vector<uint8_t> whole(n);
    DareKeepMask(0, name, 0, 0, density, whole);
    const double kept = static_cast<double>(std::count(whole.begin(), whole.end(), 1));
    const double sigma = std::sqrt(n * density * (1.0 - density));
    CHECK(std::fabs(kept - n * density) < 5.0 * sigma);
    for (int threads : {1, 4}) {
      SetThreads(threads);
      std::vector<uint8_t> pieces(n);
      ParallelForChunks(n, 777, [&](size_t, size_t begin, size_t end) {
        DareKeepMask(0, name, 0, begin, density,
                     std::span<uint8_t>(pieces).subspan(begin, end - begin));
      });
      CHECK(pieces == whole);
    }
  }
}

// Reference DELLA mask: ranks from a std::sort by (|x|, index) per row.
std::vector<uint8_t> RefDella(const std::vector<float>& x, size_t row_len, uint64_t seed,
                              uint64_t name, uint32_t model, float density, float epsilon) {
  std::vector<uint8_t> keep(x.size());
  for (size_t row = 0; row < x.size(); row += row_len) {
    std::vector<size_t> idx(row_len);
    std::iota(idx.begin(), idx.end(), row);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](size_t a, size_t b) { return std::fabs(x[a]) < std::fabs(x[b]); });
    for (size_t pos = 0; pos < row_len; ++pos) {
      const float rn =
          row_len > 1 ? static_cast<float>(pos) / static_cast<float>(row_len - 1) : 0.0f;
      const float p = (density - epsilon) + rn * (2.0f * epsilon);
      keep[idx[pos]] = Uniform(seed, name, model, idx[pos]) < p ? 1 : 0;
    }
  }
  return keep;
}

TEST_CASE("DellaKeepMask matches a sort-based reference", "[kernels][sparsify]") {
  const uint64_t name = HashName("model.layers.0.mlp.down_proj.weight");
  struct Case {
    size_t rows;
    size_t row_len;
  };
  for (const Case& c :
       {Case{0, 5}, Case{1, 1}, Case{3, 1}, Case{1, 3}, Case{5, 7}, Case{2, kBlock - 1},
        Case{1, kBlock}, Case{1, kBlock + 1}, Case{25, 4000}}) {
    for (bool bf16 : {false, true}) {
      for (float density : {0.2f, 0.5f, 0.8f}) {
        CAPTURE(c.rows, c.row_len, bf16, density);
        const size_t n = c.rows * c.row_len;
        const std::vector<float> x = MakeDeltas(n, 9, bf16, n % 2 == 1);
        std::vector<uint32_t> scratch(MagnitudeRanksScratchSize(c.row_len) + c.row_len);
        std::vector<uint8_t> keep(n, 7);
        DellaKeepMask(x, c.row_len, 4, name, 2, 0, density, 0.15f, scratch, keep);
        CHECK(CountMismatches(keep, RefDella(x, c.row_len, 4, name, 2, density, 0.15f)) == 0);
      }
    }
  }
}

TEST_CASE("DellaKeepMask keeps ≈ density, favours large magnitudes, splits by rows",
          "[kernels][sparsify]") {
  const size_t rows = 64;
  const size_t row_len = 4096;
  const size_t n = rows * row_len;
  const uint64_t name = HashName("w");
  const std::vector<float> x = MakeDeltas(n, 12, true, false);
  std::vector<uint32_t> scratch(MagnitudeRanksScratchSize(row_len) + row_len);
  std::vector<uint8_t> whole(n);
  DellaKeepMask(x, row_len, 1, name, 0, 0, 0.5f, 0.15f, scratch, whole);
  const double kept = static_cast<double>(std::count(whole.begin(), whole.end(), 1));
  CHECK(std::fabs(kept / n - 0.5) < 0.01);
  // Elements above the row median are kept with probability ≈ 0.575, below ≈ 0.425.
  std::vector<uint32_t> rank(row_len);
  size_t kept_high = 0;
  size_t kept_low = 0;
  for (size_t row = 0; row < rows; ++row) {
    MagnitudeRanks(std::span<const float>(x).subspan(row * row_len, row_len), scratch, rank);
    for (size_t j = 0; j < row_len; ++j) {
      if (!whole[row * row_len + j]) continue;
      (rank[j] >= row_len / 2 ? kept_high : kept_low) += 1;
    }
  }
  CHECK(static_cast<double>(kept_high) / (n / 2) == Approx(0.575).margin(0.01));
  CHECK(static_cast<double>(kept_low) / (n / 2) == Approx(0.425).margin(0.01));
  // Rows handled in separate calls (as threads would) give the same mask.
  std::vector<uint8_t> pieces(n);
  for (size_t row = 0; row < rows; row += 5) {
    const size_t len = std::min(rows - row, size_t{5}) * row_len;
    DellaKeepMask(std::span<const float>(x).subspan(row * row_len, len), row_len, 1, name, 0,
                  row * row_len, 0.5f, 0.15f, scratch,
                  std::span<uint8_t>(pieces).subspan(row * row_len, len));
  }
  CHECK(pieces == whole);
}

TEST_CASE("MaskedL1Norms matches a float64 reference and is thread-independent",
          "[kernels][sparsify]") {
  ThreadsGuard guard;
  std::vector<size_t> lengths = kLengths;
  lengths.push_back(64 * kBlock + 5);  // more than one group of chunks
  for (bool bf16 : {false, true}) {
    for (size_t n : lengths) {
      CAPTURE(bf16, n);
      const std::vector<float> x = MakeDeltas(n, 3, bf16, n % 2 == 1);
      const std::vector<uint8_t> keep = MakeMask(n, 4);
      long double ref_all = 0.0L;
      long double ref_kept = 0.0L;
      for (size_t i = 0; i < n; ++i) {
        ref_all += std::fabs(static_cast<long double>(x[i]));
        if (keep[i]) ref_kept += std::fabs(static_cast<long double>(x[i]));
      }
      SetThreads(1);
      const L1Norms one = MaskedL1Norms(x, keep);
      SetThreads(4);
      const L1Norms four = MaskedL1Norms(x, keep);
      const double eps = std::numeric_limits<double>::epsilon();
      CHECK(std::fabs(one.unmasked - static_cast<double>(ref_all)) <=
            64 * eps * std::max(1.0, static_cast<double>(ref_all)));
      CHECK(std::fabs(one.masked - static_cast<double>(ref_kept)) <=
            64 * eps * std::max(1.0, static_cast<double>(ref_kept)));
      CHECK(std::bit_cast<uint64_t>(one.unmasked) == std::bit_cast<uint64_t>(four.unmasked));
      CHECK(std::bit_cast<uint64_t>(one.masked) == std::bit_cast<uint64_t>(four.masked));
    }
  }
}

TEST_CASE("L1RescaleFactor follows mergekit's thresholds", "[kernels][sparsify]") {
  CHECK(L1RescaleFactor({2.0, 0.5}) == 4.0f);
  CHECK(L1RescaleFactor({5e-8, 1e-8}) == 1.0f);  // a < 1e-7: unscaled
  CHECK(L1RescaleFactor({1.0, 5e-8}) == 1.0f);   // b < 1e-7: unscaled
  CHECK(L1RescaleFactor({0.0, 0.0}) == 1.0f);    // all-zero task vector
}

TEST_CASE("DARE with L1 rescale preserves the L1 norm", "[kernels][sparsify]") {
  const size_t n = 100000;
  const std::vector<float> x = MakeDeltas(n, 8, true, false);
  std::vector<uint8_t> keep(n);
  DareKeepMask(3, HashName("x"), 0, 0, 0.3f, keep);
  const float scale = L1RescaleFactor(MaskedL1Norms(x, keep));
  std::vector<float> out(n);
  ApplyMask(x, keep, scale, out);
  const std::vector<uint8_t> all(n, 1);
  const L1Norms before = MaskedL1Norms(x, all);
  const L1Norms after = MaskedL1Norms(out, all);
  CHECK(after.unmasked == Approx(before.unmasked).epsilon(1e-6));
  CHECK(scale == Approx(1.0 / 0.3).epsilon(0.05));
}

TEST_CASE("TopKCount is floor(density·n) in double", "[kernels][sparsify]") {
  CHECK(TopKCount(0, 0.5) == 0);
  CHECK(TopKCount(10, 0.5) == 5);
  CHECK(TopKCount(10, 0.3) == 3);  // 0.3·10 = 3.0000000000000004
  CHECK(TopKCount(7, 0.5) == 3);
  CHECK(TopKCount(1000, 1e-9) == 0);
  CHECK(TopKCount(1000, 0.0) == 0);
  CHECK(TopKCount(1000, 1.0) == 1000);
  CHECK(TopKCount(1000, 2.0) == 1000);
  CHECK(TopKCount(16777216, 0.1) == 1677721);
}

TEST_CASE("DareKeepMask at large element indices and odd offsets", "[kernels][sparsify]") {
  const uint64_t name = HashName("model.embed_tokens.weight");
  // Block indices above 2^32 use the counter's second word.
  for (uint64_t first : {(uint64_t{1} << 34) + 1, (uint64_t{1} << 40) - 7, uint64_t{262668288}}) {
    for (size_t n : {size_t{1}, size_t{5}, size_t{255}, size_t{256}, size_t{257}, size_t{4099}}) {
      CAPTURE(first, n);
      std::vector<uint8_t> keep(n);
      DareKeepMask(5, name, 2, first, 0.3f, keep);
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) bad += keep[i] != (Uniform(5, name, 2, first + i) < 0.3f);
      CHECK(bad == 0);
    }
  }
}

// The window of a whole-tensor mask as a streaming caller builds it for one
// chunk [begin, end): the tie quotas minus the ties in earlier chunks.
MagnitudeWindow ChunkWindow(const std::vector<float>& x, size_t begin, size_t end, uint32_t lo_key,
                            bool lo_keeps_first, uint64_t lo_quota, bool lo_partial,
                            uint32_t hi_key, uint64_t hi_quota, bool hi_partial) {
  const std::span<const float> all(x);
  const std::span<const float> chunk = all.subspan(begin, end - begin);
  auto cut = [&](uint32_t key, uint64_t ordinal) -> uint32_t {
    const uint64_t seen = CountMagnitudeKey(all.subspan(0, begin), key);
    if (ordinal <= seen) return 0;
    return static_cast<uint32_t>(FindMagnitudeKey(chunk, key, ordinal - seen));
  };
  MagnitudeWindow w;
  w.lo_key = lo_key;
  w.hi_key = hi_key;
  if (lo_partial) {
    (lo_keeps_first ? w.lo_tie_end : w.lo_tie_begin) = cut(lo_key, lo_quota);
  }
  if (hi_partial) w.hi_tie_end = cut(hi_key, hi_quota);
  return w;
}

TEST_CASE("ApplyMagnitudeWindow chunk by chunk reproduces the TIES and breadcrumbs masks",
          "[kernels][sparsify]") {
  std::vector<uint32_t> scratch(kSelectScratchSize);
  for (bool bf16 : {false, true}) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{70001}}) {
      CAPTURE(bf16, n);
      std::vector<float> x = MakeDeltas(n, 3u + static_cast<uint32_t>(n), bf16, false);
      for (size_t i = 0; i < n; i += 5) x[i] = Bf16ToF32(F32ToBf16(x[i] * 0.5f)) * 0.0f;  // zeros
      const std::vector<size_t> chunk_sizes = {1, 333, 4096, 65536};
      std::vector<uint8_t> mask(n);
      auto check = [&](const std::vector<uint8_t>& expect_mask, auto window_of) {
        for (size_t chunk : chunk_sizes) {
          CAPTURE(chunk);
          std::vector<float> expect(n), got(n);
          ApplyMask(x, expect_mask, 1.75f, expect);
          for (size_t begin = 0; begin < n; begin += chunk) {
            const size_t end = std::min(n, begin + chunk);
            ApplyMagnitudeWindow(std::span<const float>(x).subspan(begin, end - begin),
                                 window_of(begin, end), 1.75f,
                                 std::span<float>(got).subspan(begin, end - begin));
          }
          size_t bad = 0;
          for (size_t i = 0; i < n; ++i) {
            bad += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(expect[i]);
          }
          CHECK(bad == 0);
        }
      };
      for (uint64_t k : {uint64_t{1}, uint64_t{n / 3 + 1}, uint64_t{n}}) {
        CAPTURE(k);
        TopKMagnitudeMask(x, k, scratch, mask);
        const KthLargest kth = SelectKthLargest(x, k, scratch);
        const uint64_t quota = k - kth.n_above;
        check(mask, [&](size_t begin, size_t end) {
          return ChunkWindow(x, begin, end, kth.key, true, quota, quota < kth.n_equal, UINT32_MAX,
                             0, false);
        });
      }
      for (auto [lo, hi] : {std::pair<uint64_t, uint64_t>{0, n / 2 + 1}, {n / 4, n / 4 + 1},
                            {n / 5, n}, {n / 3, n - n / 7}}) {
        if (lo >= hi) continue;
        CAPTURE(lo, hi);
        RankWindowMask(x, lo, hi, scratch, mask);
        uint32_t lo_key = 0, hi_key = UINT32_MAX;
        uint64_t lo_quota = 0, hi_quota = 0;
        bool lo_partial = false, hi_partial = false;
        if (lo > 0) {
          const RankSelection a = SelectByRank(x, lo, scratch);
          lo_key = a.key;
          lo_quota = lo - a.n_below;
          lo_partial = lo_quota > 0;
        }
        if (hi < n) {
          const RankSelection b = SelectByRank(x, hi - 1, scratch);
          hi_key = b.key;
          hi_quota = hi - b.n_below;
          hi_partial = hi_quota < b.n_equal;
        }
        check(mask, [&](size_t begin, size_t end) {
          return ChunkWindow(x, begin, end, lo_key, false, lo_quota, lo_partial, hi_key, hi_quota,
                             hi_partial);
        });
      }
    }
  }
}

TEST_CASE("The ToDifference kernels equal their forms on x - base", "[kernels][sparsify]") {
  for (size_t n : kLengths) {
    CAPTURE(n);
    const std::vector<float> x = MakeDeltas(n, 41u + static_cast<uint32_t>(n), true, false);
    const std::vector<float> base = MakeDeltas(n, 43u + static_cast<uint32_t>(n), true, false);
    const std::vector<uint8_t> keep = MakeMask(n, 47);
    std::vector<float> diff(n);
    for (size_t i = 0; i < n; ++i) diff[i] = x[i] - base[i];
    std::vector<float> expect(n), got(n);
    ApplyMask(diff, keep, 1.5f, expect);
    ApplyMaskToDifference(x, base, keep, 1.5f, got);
    CHECK(got == expect);
    MagnitudeWindow w;
    w.lo_key = MagnitudeKey(0.01f);
    w.lo_tie_end = static_cast<uint32_t>(n / 2);
    w.hi_key = MagnitudeKey(0.03f);
    ApplyMagnitudeWindow(diff, w, 0.5f, expect);
    ApplyMagnitudeWindowToDifference(x, base, w, 0.5f, got);
    CHECK(got == expect);
    // In place, as the merge methods call it.
    std::vector<float> inplace = x;
    ApplyMagnitudeWindowToDifference(inplace, base, w, 0.5f, inplace);
    CHECK(inplace == expect);
  }
}

TEST_CASE("Chunk L1 sums: same lanes as MaskedL1Norms, window sums strictly inside",
          "[kernels][sparsify]") {
  for (size_t n : kLengths) {
    if (n > kDefaultChunkElems) continue;  // one chunk of MaskedL1Norms
    CAPTURE(n);
    const std::vector<float> x = MakeDeltas(n, 53u + static_cast<uint32_t>(n), true, true);
    const std::vector<uint8_t> keep = MakeMask(n, 59);
    const L1Norms whole = MaskedL1Norms(x, keep);
    const L1Norms chunk = ChunkMaskedL1Norms(x, keep);
    CHECK(std::bit_cast<uint64_t>(chunk.unmasked) == std::bit_cast<uint64_t>(whole.unmasked));
    CHECK(std::bit_cast<uint64_t>(chunk.masked) == std::bit_cast<uint64_t>(whole.masked));
    const uint32_t lo = MagnitudeKey(0.01f), hi = MagnitudeKey(0.02f);
    std::vector<uint8_t> inside(n);
    for (size_t i = 0; i < n; ++i) {
      inside[i] = MagnitudeKey(x[i]) > lo && MagnitudeKey(x[i]) < hi;
    }
    // Same lanes, so the same bits as the masked sum over the inside mask.
    const L1Norms between = ChunkL1NormsBetween(x, lo, hi);
    const L1Norms expect = ChunkMaskedL1Norms(x, inside);
    CHECK(std::bit_cast<uint64_t>(between.unmasked) == std::bit_cast<uint64_t>(expect.unmasked));
    CHECK(std::bit_cast<uint64_t>(between.masked) == std::bit_cast<uint64_t>(expect.masked));
    // The sentinel bounds take everything.
    const L1Norms all = ChunkL1NormsBetween(x, 0, UINT32_MAX);
    std::vector<uint8_t> nonzero(n);
    for (size_t i = 0; i < n; ++i) nonzero[i] = x[i] != 0.0f;
    CHECK(all.masked == ChunkMaskedL1Norms(x, nonzero).masked);
  }
}

TEST_CASE("DARE timing on a 4096x4096 tensor", "[.bench][kernels][sparsify]") {
  const size_t n = 4096 * 4096;
  const std::vector<float> x = MakeDeltas(n, 1, true, false);
  std::vector<uint8_t> keep(n);
  std::vector<float> out(n);
  const uint64_t name = HashName("w");
  double best_mask = 1e30;
  double best_norms = 1e30;
  double best_apply = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    DareKeepMask(0, name, 0, 0, 0.5f, keep);
    const auto t1 = std::chrono::steady_clock::now();
    const float scale = L1RescaleFactor(MaskedL1Norms(x, keep));
    const auto t2 = std::chrono::steady_clock::now();
    ApplyMask(x, keep, scale, out);
    const auto t3 = std::chrono::steady_clock::now();
    CHECK(scale > 1.0f);
    best_mask = std::min(best_mask, std::chrono::duration<double, std::milli>(t1 - t0).count());
    best_norms = std::min(best_norms, std::chrono::duration<double, std::milli>(t2 - t1).count());
    best_apply = std::min(best_apply, std::chrono::duration<double, std::milli>(t3 - t2).count());
  }
  WARN("DareKeepMask " << best_mask << " ms (1 thread), MaskedL1Norms " << best_norms << " ms ("
                       << Threads() << " threads), ApplyMask " << best_apply << " ms (1 thread)");
}

}  // namespace
}  // namespace alloy::kernels
