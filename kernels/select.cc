// Radix select over 31-bit magnitude keys.
//
// Pass p histograms one digit of the keys that share the digits chosen so far:
// bits 30..20 (2048 bins), then 19..9 (2048), then 8..0 (512). After each pass
// the bin holding the wanted rank is known. Passes 2 and 3 also keep, per bin,
// the OR of the key bits below the digit: when the chosen bin's OR is 0, every
// key in it is identical and the select stops early, so bf16 data (low 16 bits
// zero) needs two passes, not three. Each pass is bound by memory bandwidth
// (~13 ms per pass over 16.8M floats here); pass 1 skips the OR because it
// rarely ends the search and cost ~6 ms there.
//
// Each pass runs over ≤ kSelectSlices fixed slices, each with its own
// histogram in the caller's scratch; the slices are then summed in slice order.
// The counts are integers, so the combination cannot depend on threads.
//
// A tie split by a mask boundary is cut at one flat index (the kept ties are
// a prefix or suffix of the tied elements in flat order), so the mask pass
// compares (key, index) against two bounds, branch-free. Finding that index
// costs one counting pass plus a scan of a single slice.
#include "kernels/select.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "kernels/isa_dispatch.h"
#include "kernels/parallel.h"

namespace alloy::kernels {
namespace {

constexpr size_t kBinsMax = 2048;
constexpr size_t kSliceStride = 2 * kBinsMax;  // histogram + OR of low bits
constexpr size_t kCountersOffset = kSelectSlices * kSliceStride;
constexpr int kPasses = 3;
constexpr int kDigitShift[kPasses] = {20, 9, 0};
constexpr int kDigitBits[kPasses] = {11, 11, 9};

// Slice length: a multiple of kDefaultChunkElems giving ≤ kSelectSlices
// slices; depends on n only.
size_t SliceLength(size_t n) noexcept {
  const size_t per_slice = (n + kSelectSlices - 1) / kSelectSlices;
  const size_t chunks =
      std::max<size_t>(1, (per_slice + kDefaultChunkElems - 1) / kDefaultChunkElems);
  return chunks * kDefaultChunkElems;
}

size_t SliceCount(size_t n, size_t slice_len) noexcept { return (n + slice_len - 1) / slice_len; }

// kFilter: only keys with the chosen prefix count, and the OR of their low
// bits is kept (every pass but the first).
template <bool kFilter>
void HistogramSlice(std::span<const float> x, size_t begin, size_t end, uint32_t prefix,
                    int prefix_shift, int shift, uint32_t digit_mask, uint32_t* hist,
                    uint32_t* ors) noexcept {
  const uint32_t low_mask = (uint32_t{1} << shift) - 1;
  for (size_t i = begin; i < end; ++i) {
    const uint32_t key = MagnitudeKey(x[i]);
    if constexpr (kFilter) {
      if ((key >> prefix_shift) != prefix) continue;
    }
    const uint32_t bin = (key >> shift) & digit_mask;
    ++hist[bin];
    if constexpr (kFilter) ors[bin] |= key & low_mask;
  }
}

// The flat index of the tie with ordinal `ordinal` (0-based, flat order)
// among the elements whose key equals `key`: count the ties per slice, find
// the slice holding that ordinal (slices in order), then scan only that slice.
// REQUIRES: ordinal < number of elements with this key.
size_t TieIndex(std::span<const float> x, uint32_t key, uint64_t ordinal,
                std::span<uint32_t> scratch) noexcept {
  const size_t n = x.size();
  const size_t slice_len = SliceLength(n);
  const size_t n_slices = SliceCount(n, slice_len);
  uint32_t* counters = scratch.data() + kCountersOffset;
  ParallelForChunks(n, slice_len, [&](size_t slice, size_t begin, size_t end) {
    uint32_t count = 0;
    for (size_t i = begin; i < end; ++i) count += MagnitudeKey(x[i]) == key;
    counters[slice] = count;
  });
  size_t slice = 0;
  for (; slice + 1 < n_slices && ordinal >= counters[slice]; ++slice) ordinal -= counters[slice];
  const size_t end = std::min(n, (slice + 1) * slice_len);
  for (size_t i = slice * slice_len; i < end; ++i) {
    if (MagnitudeKey(x[i]) != key) continue;
    if (ordinal == 0) return i;
    --ordinal;
  }
  return n;  // unreachable when the precondition holds
}

void Fill(std::span<uint8_t> keep, uint8_t value) noexcept {
  std::fill(keep.begin(), keep.end(), value);
}

}  // namespace

namespace {
// The body of MagnitudeKey, always inlined so the streaming loops vectorize.
ALLOY_INLINE uint32_t KeyOf(float x) noexcept {
  const uint32_t bits = std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
  return bits > 0x7F800000u ? kNanKey : bits;
}
}  // namespace

uint32_t MagnitudeKey(float x) noexcept { return KeyOf(x); }

float KeyMagnitude(uint32_t key) noexcept {
  return key >= kNanKey ? std::bit_cast<float>(0x7FC00000u) : std::bit_cast<float>(key);
}

RankSelection SelectByRank(std::span<const float> x, uint64_t rank,
                           std::span<uint32_t> scratch) noexcept {
  const size_t n = x.size();
  const size_t slice_len = SliceLength(n);
  const size_t n_slices = SliceCount(n, slice_len);
  uint32_t* hist = scratch.data();  // slice 0's histogram receives the totals
  uint32_t* ors = hist + kBinsMax;
  uint64_t below = 0;
  uint32_t prefix = 0;
  for (int pass = 0; pass < kPasses; ++pass) {
    const int shift = kDigitShift[pass];
    const int prefix_shift = shift + kDigitBits[pass];
    const size_t n_bins = size_t{1} << kDigitBits[pass];
    const uint32_t digit_mask = static_cast<uint32_t>(n_bins - 1);
    ParallelForChunks(n, slice_len, [&](size_t slice, size_t begin, size_t end) {
      uint32_t* slice_hist = scratch.data() + slice * kSliceStride;
      uint32_t* slice_ors = slice_hist + kBinsMax;
      std::fill(slice_hist, slice_hist + n_bins, 0u);
      std::fill(slice_ors, slice_ors + n_bins, 0u);
      if (pass == 0) {
        HistogramSlice<false>(x, begin, end, 0, 0, shift, digit_mask, slice_hist, slice_ors);
      } else {
        HistogramSlice<true>(x, begin, end, prefix, prefix_shift, shift, digit_mask, slice_hist,
                             slice_ors);
      }
    });
    for (size_t slice = 1; slice < n_slices; ++slice) {
      const uint32_t* slice_hist = scratch.data() + slice * kSliceStride;
      const uint32_t* slice_ors = slice_hist + kBinsMax;
      for (size_t bin = 0; bin < n_bins; ++bin) {
        hist[bin] += slice_hist[bin];
        ors[bin] |= slice_ors[bin];
      }
    }
    size_t bin = 0;
    for (; bin + 1 < n_bins; ++bin) {
      if (below + hist[bin] > rank) break;
      below += hist[bin];
    }
    prefix = (prefix << kDigitBits[pass]) | static_cast<uint32_t>(bin);
    if ((pass > 0 && ors[bin] == 0) || pass == kPasses - 1) {
      return {prefix << shift, below, hist[bin]};
    }
  }
  return {};  // unreachable: the last pass always returns
}

KthLargest SelectKthLargest(std::span<const float> x, uint64_t k,
                            std::span<uint32_t> scratch) noexcept {
  const uint64_t n = x.size();
  const RankSelection sel = SelectByRank(x, n - k, scratch);
  return {sel.key, n - sel.n_below - sel.n_equal, sel.n_equal};
}

void TopKMagnitudeMask(std::span<const float> x, uint64_t k, std::span<uint32_t> scratch,
                       std::span<uint8_t> keep) noexcept {
  const size_t n = x.size();
  if (k == 0) return Fill(keep, 0);
  if (k >= n) return Fill(keep, 1);
  const KthLargest kth = SelectKthLargest(x, k, scratch);
  const uint32_t t = kth.key;
  const uint64_t quota = k - kth.n_above;  // tied elements to keep, lowest indices first
  // Ties are kept below flat index `cut`; n when all of them are kept.
  const size_t cut = quota == kth.n_equal ? n : TieIndex(x, t, quota, scratch);
  ParallelForChunks(n, SliceLength(n), [&](size_t, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      const uint32_t key = MagnitudeKey(x[i]);
      keep[i] = (key > t) | ((key == t) & (i < cut));
    }
  });
}

void RankWindowMask(std::span<const float> x, uint64_t lo, uint64_t hi, std::span<uint32_t> scratch,
                    std::span<uint8_t> keep) noexcept {
  const uint64_t n = x.size();
  hi = std::min(hi, n);
  if (lo >= hi) return Fill(keep, 0);
  if (lo == 0 && hi == n) return Fill(keep, 1);
  // Lower boundary: the element at position lo. Keys above it are in; of the
  // keys equal to it, those from the (lo - n_below)-th tie on, i.e. at flat
  // index ≥ first_a. lo == 0 makes the test vacuous (key_a = 0, first_a = 0).
  uint32_t key_a = 0;
  size_t first_a = 0;
  if (lo > 0) {
    const RankSelection sel = SelectByRank(x, lo, scratch);
    key_a = sel.key;
    if (lo > sel.n_below) first_a = TieIndex(x, key_a, lo - sel.n_below, scratch);
  }
  // Upper boundary: the element at position hi - 1, the last one kept; ties
  // up to flat index last_b are in. hi == n is vacuous (kNanKey, last_b = n).
  uint32_t key_b = kNanKey;
  size_t last_b = n;
  if (hi < n) {
    const RankSelection sel = SelectByRank(x, hi - 1, scratch);
    key_b = sel.key;
    const uint64_t last_ordinal = hi - 1 - sel.n_below;
    if (last_ordinal + 1 < sel.n_equal) last_b = TieIndex(x, key_b, last_ordinal, scratch);
  }
  ParallelForChunks(n, SliceLength(n), [&](size_t, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      const uint32_t key = MagnitudeKey(x[i]);
      const bool above_lo = (key > key_a) | ((key == key_a) & (i >= first_a));
      const bool below_hi = (key < key_b) | ((key == key_b) & (i <= last_b));
      keep[i] = above_lo & below_hi;
    }
  });
}

void MagnitudeKeys(std::span<const float> x, std::span<uint32_t> keys) noexcept {
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict xs = x.data();
    uint32_t* __restrict out = keys.data();
    for (size_t i = 0; i < x.size(); ++i) out[i] = KeyOf(xs[i]);
  });
}

void DifferenceMagnitudeKeys(std::span<const float> x, std::span<const float> base,
                             std::span<uint32_t> keys) noexcept {
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict xs = x.data();
    const float* __restrict bs = base.data();
    uint32_t* __restrict out = keys.data();
    for (size_t i = 0; i < x.size(); ++i) out[i] = KeyOf(xs[i] - bs[i]);
  });
}

uint64_t CountMagnitudeKey(std::span<const float> x, uint32_t key) noexcept {
  uint32_t count = 0;
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict xs = x.data();
    uint32_t c = 0;
    for (size_t i = 0; i < x.size(); ++i) c += KeyOf(xs[i]) == key ? 1u : 0u;
    count = c;
  });
  return count;
}

uint64_t CountDifferenceMagnitudeKey(std::span<const float> x, std::span<const float> base,
                                     uint32_t key) noexcept {
  uint32_t count = 0;
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict xs = x.data();
    const float* __restrict bs = base.data();
    uint32_t c = 0;
    for (size_t i = 0; i < x.size(); ++i) c += KeyOf(xs[i] - bs[i]) == key ? 1u : 0u;
    count = c;
  });
  return count;
}

namespace {

// FindMagnitudeKey over values value(i): skips whole blocks by a vectorized
// count, then scans the one block that holds the wanted tie.
template <typename CountFn, typename ValueFn>
size_t FindKeyOrdinal(size_t n, uint32_t key, uint64_t ordinal, const CountFn& count_block,
                      const ValueFn& value) noexcept {
  constexpr size_t kFindBlock = 512;
  size_t begin = 0;
  for (; begin < n; begin += kFindBlock) {
    const uint64_t count = count_block(begin, std::min(kFindBlock, n - begin));
    if (ordinal < count) break;
    ordinal -= count;
  }
  for (size_t i = begin; i < n; ++i) {
    if (KeyOf(value(i)) != key) continue;
    if (ordinal == 0) return i;
    --ordinal;
  }
  return n;
}

}  // namespace

size_t FindMagnitudeKey(std::span<const float> x, uint32_t key, uint64_t ordinal) noexcept {
  return FindKeyOrdinal(
      x.size(), key, ordinal,
      [&](size_t begin, size_t len) { return CountMagnitudeKey(x.subspan(begin, len), key); },
      [&](size_t i) { return x[i]; });
}

size_t FindDifferenceMagnitudeKey(std::span<const float> x, std::span<const float> base,
                                  uint32_t key, uint64_t ordinal) noexcept {
  return FindKeyOrdinal(
      x.size(), key, ordinal,
      [&](size_t begin, size_t len) {
        return CountDifferenceMagnitudeKey(x.subspan(begin, len), base.subspan(begin, len), key);
      },
      [&](size_t i) { return x[i] - base[i]; });
}

void MagnitudeRanks(std::span<const float> x, std::span<uint32_t> scratch,
                    std::span<uint32_t> rank) noexcept {
  const size_t n = x.size();
  uint32_t* keys = scratch.data();
  uint32_t* order_a = keys + n;
  uint32_t* order_b = order_a + n;
  uint32_t* hist = order_b + n;  // kPasses histograms of kBinsMax bins
  std::fill(hist, hist + kPasses * kBinsMax, 0u);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t key = MagnitudeKey(x[i]);
    keys[i] = key;
    for (int pass = 0; pass < kPasses; ++pass) {
      ++hist[pass * kBinsMax + ((key >> kDigitShift[pass]) & ((1u << kDigitBits[pass]) - 1))];
    }
  }
  // LSD: least significant digit first; each scatter is stable, so equal keys
  // stay in flat-index order. A digit shared by every key is skipped.
  bool identity = true;  // order_a holds 0..n-1 implicitly until the first scatter
  for (int pass = kPasses - 1; pass >= 0; --pass) {
    uint32_t* counts = hist + pass * kBinsMax;
    const size_t n_bins = size_t{1} << kDigitBits[pass];
    if (std::find(counts, counts + n_bins, static_cast<uint32_t>(n)) != counts + n_bins) continue;
    uint32_t start = 0;
    for (size_t bin = 0; bin < n_bins; ++bin) {
      const uint32_t count = counts[bin];
      counts[bin] = start;
      start += count;
    }
    const int shift = kDigitShift[pass];
    const uint32_t digit_mask = static_cast<uint32_t>(n_bins - 1);
    for (size_t pos = 0; pos < n; ++pos) {
      const uint32_t idx = identity ? static_cast<uint32_t>(pos) : order_a[pos];
      order_b[counts[(keys[idx] >> shift) & digit_mask]++] = idx;
    }
    std::swap(order_a, order_b);
    identity = false;
  }
  for (size_t pos = 0; pos < n; ++pos) {
    rank[identity ? pos : order_a[pos]] = static_cast<uint32_t>(pos);
  }
}

}  // namespace alloy::kernels
