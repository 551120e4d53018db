// Exact magnitude selection without sorting: a radix select over the bit
// patterns of |x| (O(n), three histogram passes of 11/11/9 bits at most), and
// the two magnitude masks of mergekit-semantics.md Decision (f):
//
// * TIES top-k (§1.3 "magnitude"): keep exactly k elements — every element
//   whose |x| is above the k-th largest magnitude and, among those equal to
//   it, the lowest flat indices.
// * Breadcrumbs (§1.3 "magnitude_outliers"): order the elements ascending by
//   (|x|, flat index) and keep the positions [lo, hi) of that order.
// * DELLA's ranks (§1.3 "della_magprune"): every element's position in that
//   same ascending (|x|, flat index) order.
//
// Magnitude conventions (the "key" of an element):
// * key = bit pattern of |x| (sign bit cleared), so -0.0 and +0.0 are equal
//   and, for non-NaN values, keys order exactly as magnitudes do.
// * NaN counts as larger than +inf, and all NaNs are equal to each other
//   (key kNanKey). This is torch's order, which mergekit's argsort/topk on
//   abs() uses: a NaN delta is kept first by TIES top-k.
//
// Threading: the kernels run their passes through ParallelForChunks over at
// most kSelectSlices fixed slices (boundaries depend only on n). Every
// combined quantity is an integer count, so results are identical at any
// thread count (MagnitudeRanks is single-threaded: callers split rows).
// Scratch comes from the caller and is reused across calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace alloy::kernels {

inline constexpr uint32_t kNanKey = 0x7F800001u;  // the key of every NaN
inline constexpr size_t kSelectSlices = 16;
// scratch: size ≥ kSelectScratchSize (per slice: a 2048-bin histogram and a
// 2048-bin OR of low bits, plus a counter) = 65,552 uint32 (256 KiB).
inline constexpr size_t kSelectScratchSize = kSelectSlices * (2 * 2048 + 1);

// The magnitude key of x (see above).
uint32_t MagnitudeKey(float x) noexcept;
// The magnitude a key stands for (kNanKey → a quiet NaN).
float KeyMagnitude(uint32_t key) noexcept;

// The element at ascending position `rank` of the order by key.
struct RankSelection {
  uint32_t key = 0;      // its key
  uint64_t n_below = 0;  // elements with a smaller key
  uint64_t n_equal = 0;  // elements with this key (n_below ≤ rank < n_below + n_equal)
};

// Exact order statistic of the keys of x at ascending position `rank`.
// REQUIRES: rank < x.size() < 2^32; scratch.size() ≥ kSelectScratchSize.
RankSelection SelectByRank(std::span<const float> x, uint64_t rank,
                           std::span<uint32_t> scratch) noexcept;

// The k-th largest magnitude (k ≥ 1): its key and how many elements are
// strictly above it (n_above < k ≤ n_above + n_equal).
struct KthLargest {
  uint32_t key = 0;
  uint64_t n_above = 0;
  uint64_t n_equal = 0;
};
// REQUIRES: 1 ≤ k ≤ x.size() < 2^32; scratch.size() ≥ kSelectScratchSize.
KthLargest SelectKthLargest(std::span<const float> x, uint64_t k,
                            std::span<uint32_t> scratch) noexcept;

// TIES: keep[i] = 1 for exactly min(k, n) elements (Decision f), 0 elsewhere.
// k = 0 keeps nothing; k ≥ n keeps everything.
// REQUIRES: keep.size() == x.size() < 2^32; scratch.size() ≥ kSelectScratchSize.
void TopKMagnitudeMask(std::span<const float> x, uint64_t k, std::span<uint32_t> scratch,
                       std::span<uint8_t> keep) noexcept;

// Breadcrumbs: keep[i] = 1 iff the ascending position of element i in the
// order by (key, i) lies in [lo, hi); hi is clamped to n. lo ≥ hi keeps nothing.
// REQUIRES: keep.size() == x.size() < 2^32; scratch.size() ≥ kSelectScratchSize.
void RankWindowMask(std::span<const float> x, uint64_t lo, uint64_t hi, std::span<uint32_t> scratch,
                    std::span<uint8_t> keep) noexcept;

// rank[i] = the ascending position of element i in the order by (key, i),
// computed with a stable LSD radix sort (O(n), three digits, a digit shared
// by all keys is skipped). For DELLA's per-row ranks (§1.3). Single-threaded:
// callers run rows in parallel, each with its own scratch.
// scratch: size ≥ MagnitudeRanksScratchSize(n) = 3·n + 6144.
// REQUIRES: rank.size() == x.size() < 2^32.
inline constexpr size_t MagnitudeRanksScratchSize(size_t n) { return 3 * n + 3 * 2048; }
void MagnitudeRanks(std::span<const float> x, std::span<uint32_t> scratch,
                    std::span<uint32_t> rank) noexcept;

// Streaming building blocks (for callers that see a tensor chunk by chunk,
// e.g. merge/methods/stream_select.h): serial, elementwise or one scan, no
// scratch, vectorized for the running CPU.

// keys[i] = MagnitudeKey(x[i]). REQUIRES: keys.size() == x.size().
void MagnitudeKeys(std::span<const float> x, std::span<uint32_t> keys) noexcept;
// keys[i] = MagnitudeKey(x[i] - base[i]), the difference in float32 (the key
// of a task-vector element). REQUIRES: x, base and keys have one size.
void DifferenceMagnitudeKeys(std::span<const float> x, std::span<const float> base,
                             std::span<uint32_t> keys) noexcept;
// The number of elements whose key is `key`. REQUIRES: x.size() < 2^32.
uint64_t CountMagnitudeKey(std::span<const float> x, uint32_t key) noexcept;
// The index of the element that is the `ordinal`-th (0-based, flat order) of
// those whose key is `key`; x.size() when fewer than ordinal + 1 have it.
size_t FindMagnitudeKey(std::span<const float> x, uint32_t key, uint64_t ordinal) noexcept;
// The same two for the elements x[i] - base[i] (float32 difference), without
// materialising the difference. REQUIRES: base.size() == x.size() < 2^32.
uint64_t CountDifferenceMagnitudeKey(std::span<const float> x, std::span<const float> base,
                                     uint32_t key) noexcept;
size_t FindDifferenceMagnitudeKey(std::span<const float> x, std::span<const float> base,
                                  uint32_t key, uint64_t ordinal) noexcept;

}  // namespace alloy::kernels
