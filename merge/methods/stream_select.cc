// StreamSelector (stream_select.h): exact order statistics of 32-bit keys,
// usually in one streaming pass; used for TIES top-k and the breadcrumbs
// window (mergekit-semantics.md §1.3, Decision (f)) and SCE's top-k (§1.12).
//
// Pass 1, per slot and stream ("region"), one loop over the chunk's keys:
// * a 65,536-bin histogram of key >> 16 whose uint64 counters hold the number
//   of keys in the low 32 bits and, in the high 32 bits, how many of them
//   have a nonzero low half (one read-modify-write per key). Two interleaved
//   copies (even and odd elements), so a run of equal keys (zero deltas) does
//   not serialise on one counter. Keys with low half 0 are the smallest of
//   their bin and all equal, so a rank that falls among them is answered
//   exactly (for bf16 checkpoints most task-vector elements are such keys:
//   performance-notes.md).
// * a spill list of the keys whose low half is not 0. Task vectors of bf16
//   models still have a few percent of them (x − base needs more than 8
//   mantissa bits where |base| is small), enough to land in the answer bin of
//   nearly every large tensor, so without the list nearly every query would
//   need a second pass. The list keeps every such key until it is half full;
//   then the region estimates, from its own histogram so far, the bins each
//   query can land in (its quantile ± kWindowQuantile), keeps only the keys in
//   those bins, and from then on spills only keys in them. A full list stops
//   spilling (the region "overflows").
// After the pass a query is exact when its rank is among the zero-low keys of
// its bin, or when every region's list holds all nonzero-low keys of that
// bin. Otherwise (an unrepresentative early sample, or very many
// non-bf16-exact keys, e.g. float32 checkpoints) a second Scan histograms the
// low 16 bits of the keys in that bin.
//
// Per-chunk counts (EqualCountsPerChunk): after its first chunk each region
// picks kCountBins bins around its queries' quantiles (± kCountQuantile) and
// records, for every chunk it histograms, the zero-low counts of those bins
// (its histogram after the chunk minus before: no per-element work). A
// method whose threshold key has low half 0 and lies in every chunk's bins
// gets its tie counts per chunk without an ordered pass.
//
// Which keys a region spills depends on the chunks its slot happened to get,
// but the answer never does: it is derived from a complete set of keys or
// refined. Counts are integers, so answers are identical at any thread count.
// Only the range of bins a Select touched is walked and cleared afterwards. Counters are 32-bit
// halves: one region would have to see more than 2^32 keys in one bin and
// lane (8.6G elements) to overflow one.
#include "merge/methods/stream_select.h"
#include "merge/scratch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace alloy::merge::methods {
namespace {

constexpr size_t kBins = size_t{1} << 16;
constexpr size_t kLaneStride = 2 * kBins;       // two interleave lanes of kBins
constexpr size_t kWindowWords = kBins / 32;     // one bit per bin
constexpr size_t kSpillCap = size_t{1} << 20;   // keys per region (4 MiB)
constexpr double kWindowQuantile = 0.01;        // ± margin of a window, as a quantile
// Per-chunk counts: bins per stream, and their ± margin around a query.
constexpr size_t kCountBins = StreamSelector::kCountBins;
constexpr uint32_t kNoCountBins = UINT32_MAX;
constexpr double kCountQuantile = 0.02;

inline uint32_t NonzeroLow(uint32_t key) noexcept { return (key & 0xFFFFu) != 0; }

inline bool WindowHas(const uint32_t* window, uint32_t bin) noexcept {
  return (window[bin >> 5] >> (bin & 31u)) & 1u;
}

enum class SpillMode : uint8_t { kNone, kAll, kWindow };

// Adds keys to a region's two histogram lanes. Unless kNone, also appends
// the keys with a nonzero low half (kWindow: only those whose bin is set in
// `window`) to `spill`, branch-free (every key is written, the cursor
// advances only for the kept ones), and returns how many.
// REQUIRES: spill has room for n keys.
template <SpillMode kMode>
size_t Accumulate(const uint32_t* keys, size_t n, uint64_t* counts, const uint32_t* window,
                  uint32_t* spill) noexcept {
  uint64_t* h0 = counts;
  uint64_t* h1 = counts + kBins;
  size_t m = 0;
  auto add = [&](uint64_t* h, uint32_t k) {
    const uint32_t z = NonzeroLow(k);
    h[k >> 16] += 1 + (uint64_t{z} << 32);
    if constexpr (kMode == SpillMode::kAll) {
      spill[m] = k;
      m += z;
    } else if constexpr (kMode == SpillMode::kWindow) {
      spill[m] = k;
      m += z & WindowHas(window, k >> 16);
    }
  };
  size_t j = 0;
  for (; j + 2 <= n; j += 2) {
    add(h0, keys[j]);
    add(h1, keys[j + 1]);
  }
  if (j < n) add(h0, keys[j]);
  return m;
}

// The bins [first, last] outside which a region's histogram is zero
// (first > last when it is all zero).
void TouchedBins(const uint64_t* counts, uint32_t* first, uint32_t* last) noexcept {
  auto used = [&](size_t bin) { return (counts[bin] | counts[kBins + bin]) != 0; };
  size_t lo = 0;
  while (lo < kBins && !used(lo)) ++lo;
  size_t hi = kBins;
  while (hi > lo && !used(hi - 1)) --hi;
  *first = static_cast<uint32_t>(lo);
  *last = static_cast<uint32_t>(hi) - 1;
}

// Keys in one bin of a region: all, with a nonzero low half, with low half 0.
inline uint64_t BinCount(const uint64_t* counts, size_t bin) noexcept {
  return (counts[bin] & 0xFFFFFFFFu) + (counts[kBins + bin] & 0xFFFFFFFFu);
}
inline uint64_t BinNonzero(const uint64_t* counts, size_t bin) noexcept {
  return (counts[bin] >> 32) + (counts[kBins + bin] >> 32);
}
inline uint64_t ZeroLowCount(const uint64_t* counts, size_t bin) noexcept {
  return BinCount(counts, bin) - BinNonzero(counts, bin);
}

// The bin holding ascending position `rank` of one region.
uint32_t BinOfRank(const uint64_t* counts, uint64_t rank) noexcept {
  uint64_t below = 0;
  for (size_t bin = 0; bin + 1 < kBins; ++bin) {
    below += BinCount(counts, bin);
    if (below > rank) return static_cast<uint32_t>(bin);
  }
  return static_cast<uint32_t>(kBins - 1);
}

// One (stream, high bin) whose low halves the refinement pass histograms.
struct Target {
  size_t stream = 0;
  uint32_t bin = 0;
};

}  // namespace

formats::Result<std::vector<KeyAnswer>> StreamSelector::Select(TensorPass& pass, size_t n_streams,
                                                                std::span<const KeyQuery> queries,
                                                                const KeyFn& keys,
                                                                const ScanFn& also) {
  const size_t n_slots = pass.num_slots();
  const size_t chunk_elems = pass.chunk_elems();
  const size_t regions = n_slots * n_streams;
  const uint64_t numel = pass.numel();
  // Newly grown histogram space is zero; used space is cleared at the end.
  Grow(counts_, regions * kLaneStride);
  Grow(windows_, regions * kWindowWords);
  Grow(keys_, n_slots * chunk_elems);
  if (spill_.size() < regions) spill_.resize(regions);
  // Per Select and region (each slot is used by one thread at a time, and the
  // Scan's join publishes these to this thread): keys seen, the spill cursor
  // and the spill state.
  std::vector<uint64_t> n_seen(regions, 0);
  std::vector<size_t> n_spilled(regions, 0);
  enum : uint8_t { kAll = 0, kWindowed = 1, kOverflow = 2 };
  std::vector<uint8_t> spill_state(regions, kAll);
  std::vector<uint8_t> stream_has_query(n_streams, 0);
  for (const KeyQuery& q : queries) stream_has_query[q.stream] = 1;

  // Switches a region from "spill all" to "spill the query windows": marks
  // the bins each query can land in, judged from the region's histogram so
  // far, and drops the spilled keys outside them.
  auto narrow = [&](size_t region, size_t stream) {
    const uint64_t* counts = counts_.data() + region * kLaneStride;
    uint32_t* window = windows_.data() + region * kWindowWords;
    std::memset(window, 0, kWindowWords * sizeof(uint32_t));
    const double seen = static_cast<double>(n_seen[region]);
    const double margin = kWindowQuantile + 4.0 / std::sqrt(seen);
    for (const KeyQuery& q : queries) {
      if (q.stream != stream) continue;
      const double quantile = static_cast<double>(q.rank) / static_cast<double>(numel);
      const auto lo = static_cast<uint64_t>(std::max(0.0, quantile - margin) * seen);
      const auto hi = std::min(static_cast<uint64_t>(std::min(1.0, quantile + margin) * seen),
                               n_seen[region] - 1);
      const uint32_t lo_bin = BinOfRank(counts, lo);
      const uint32_t hi_bin = BinOfRank(counts, hi);
      for (uint32_t bin = lo_bin; bin <= hi_bin; ++bin) window[bin >> 5] |= 1u << (bin & 31u);
    }
    uint32_t* list = spill_[region].data();
    size_t m = 0;
    for (size_t j = 0; j < n_spilled[region]; ++j) {
      list[m] = list[j];
      m += WindowHas(window, list[j] >> 16);
    }
    n_spilled[region] = m;
    spill_state[region] = kWindowed;
  };

  // Per-chunk counts of zero-low keys in a few bins (EqualCountsPerChunk):
  // each region picks its bins from its first chunk, then every chunk's
  // counts are the region's histogram after the chunk minus before it.
  n_chunks_ = pass.num_chunks();
  n_streams_ = n_streams;
  Grow(chunk_counts_, n_chunks_ * n_streams * kCountBins);
  chunk_first_bin_.assign(n_chunks_ * n_streams, kNoCountBins);
  std::vector<uint32_t> count_first(regions, kNoCountBins);
  // The contiguous bins around every query of `stream`, judged from the
  // region's histogram (its first chunk); kNoCountBins when they span more
  // than kCountBins.
  auto pick_count_bins = [&](size_t region, size_t stream, uint64_t seen) -> uint32_t {
    const uint64_t* counts = counts_.data() + region * kLaneStride;
    const double n = static_cast<double>(seen);
    const double margin = kCountQuantile + 3.0 / std::sqrt(n);
    uint32_t first = UINT32_MAX, last = 0;
    for (const KeyQuery& q : queries) {
      if (q.stream != stream) continue;
      const double quantile = static_cast<double>(q.rank) / static_cast<double>(numel);
      const auto lo = static_cast<uint64_t>(std::max(0.0, quantile - margin) * n);
      const auto hi = std::min(static_cast<uint64_t>(std::min(1.0, quantile + margin) * n), seen - 1);
      first = std::min(first, BinOfRank(counts, lo));
      last = std::max(last, BinOfRank(counts, hi));
    }
    if (first > last || last - first >= kCountBins) return kNoCountBins;
    return std::min<uint32_t>(first, static_cast<uint32_t>(kBins - kCountBins));
  };

  ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
    uint32_t* chunk_keys = keys_.data() + c.slot * chunk_elems;
    for (size_t stream = 0; stream < n_streams; ++stream) {
      const size_t region = c.slot * n_streams + stream;
      keys(c, stream, std::span<uint32_t>(chunk_keys, c.size));
      uint64_t* counts = counts_.data() + region * kLaneStride;
      const uint64_t seen_before = n_seen[region];
      const uint32_t count_bins = count_first[region];
      uint64_t before[kCountBins];
      if (count_bins != kNoCountBins) {
        for (size_t b = 0; b < kCountBins; ++b) before[b] = ZeroLowCount(counts, count_bins + b);
      }
      uint8_t& state = spill_state[region];
      if (stream_has_query[stream]) {
        // Judge the windows from the chunks seen so far (none yet: wait).
        if (state == kAll && n_seen[region] > 0 && n_spilled[region] + c.size > kSpillCap / 2) {
          narrow(region, stream);
        }
        if (state != kOverflow && n_spilled[region] + c.size > kSpillCap) state = kOverflow;
      }
      n_seen[region] += c.size;
      if (!stream_has_query[stream] || state == kOverflow) {
        Accumulate<SpillMode::kNone>(chunk_keys, c.size, counts, nullptr, nullptr);
      } else {
        std::vector<uint32_t>& list = spill_[region];
        Grow(list, n_spilled[region] + c.size);
        uint32_t* out = list.data() + n_spilled[region];
        n_spilled[region] +=
            state == kWindowed
                ? Accumulate<SpillMode::kWindow>(chunk_keys, c.size, counts,
                                                 windows_.data() + region * kWindowWords, out)
                : Accumulate<SpillMode::kAll>(chunk_keys, c.size, counts, nullptr, out);
      }
      if (!stream_has_query[stream]) continue;
      if (seen_before == 0) {  // the region's first chunk: its histogram is this chunk's
        count_first[region] = pick_count_bins(region, stream, c.size);
        if (count_first[region] == kNoCountBins) continue;
        std::fill_n(before, kCountBins, uint64_t{0});
      } else if (count_bins == kNoCountBins) {
        continue;
      }
      const uint32_t first = count_first[region];
      const size_t slot_of = c.index * n_streams + stream;
      uint32_t* out = chunk_counts_.data() + slot_of * kCountBins;
      for (size_t b = 0; b < kCountBins; ++b) {
        out[b] = static_cast<uint32_t>(ZeroLowCount(counts, first + b) - before[b]);
      }
      chunk_first_bin_[slot_of] = first;
    }
    if (also) also(c);
  }));

  // The bins each region touched: the walks and the clean-up stay inside.
  std::vector<uint32_t> first_bin(regions, 1), last_bin(regions, 0);
  for (size_t region = 0; region < regions; ++region) {
    if (n_seen[region] > 0) {
      TouchedBins(counts_.data() + region * kLaneStride, &first_bin[region], &last_bin[region]);
    }
  }

  std::vector<KeyAnswer> answers(queries.size());
  std::vector<Target> targets;
  std::vector<int> query_target(queries.size(), -1);
  std::vector<uint32_t> in_bin;  // nonzero-low keys of one bin, gathered from the spill lists
  for (size_t q = 0; q < queries.size(); ++q) {
    const KeyQuery& query = queries[q];
    uint32_t first = UINT32_MAX, last = 0;
    for (size_t slot = 0; slot < n_slots; ++slot) {
      const size_t region = slot * n_streams + query.stream;
      if (first_bin[region] > last_bin[region]) continue;
      first = std::min(first, first_bin[region]);
      last = std::max(last, last_bin[region]);
    }
    // Walk the histogram merged over the regions of this stream.
    uint64_t below = 0, count = 0, nonzero = 0;
    uint32_t bin = first;
    for (; bin <= last; ++bin) {
      count = 0;
      nonzero = 0;
      for (size_t slot = 0; slot < n_slots; ++slot) {
        const size_t region = slot * n_streams + query.stream;
        if (n_seen[region] == 0) continue;
        const uint64_t* counts = counts_.data() + region * kLaneStride;
        count += BinCount(counts, bin);
        nonzero += BinNonzero(counts, bin);
      }
      if (below + count > query.rank) break;
      below += count;
    }
    const uint64_t zero_low = count - nonzero;
    const uint64_t rank_in_bin = query.rank - below;
    if (rank_in_bin < zero_low) {  // among the keys equal to bin << 16
      answers[q] = {bin << 16, below, zero_low};
      continue;
    }
    // Among the nonzero-low keys: from the spill lists when they are complete.
    bool complete = true;
    for (size_t slot = 0; slot < n_slots && complete; ++slot) {
      const size_t region = slot * n_streams + query.stream;
      if (n_seen[region] == 0 || spill_state[region] == kAll) continue;
      complete = spill_state[region] == kWindowed &&
                 WindowHas(windows_.data() + region * kWindowWords, bin);
    }
    if (complete) {
      in_bin.clear();
      for (size_t slot = 0; slot < n_slots; ++slot) {
        const size_t region = slot * n_streams + query.stream;
        const uint32_t* list = spill_[region].data();
        for (size_t j = 0; j < n_spilled[region]; ++j) {
          if ((list[j] >> 16) == bin) in_bin.push_back(list[j]);
        }
      }
      ALLOY_CHECK(in_bin.size() == nonzero);
      const size_t pos = static_cast<size_t>(rank_in_bin - zero_low);
      std::nth_element(in_bin.begin(), in_bin.begin() + static_cast<std::ptrdiff_t>(pos),
                       in_bin.end());
      const uint32_t key = in_bin[pos];
      uint64_t smaller = 0, equal = 0;
      for (const uint32_t k : in_bin) {
        smaller += k < key;
        equal += k == key;
      }
      answers[q] = {key, below + zero_low + smaller, equal};
      continue;
    }
    answers[q] = {bin << 16, below, count};  // refined below
    size_t t = 0;
    while (t < targets.size() && !(targets[t].stream == query.stream && targets[t].bin == bin)) ++t;
    if (t == targets.size()) targets.push_back({query.stream, bin});
    query_target[q] = static_cast<int>(t);
  }
  // Leave the histograms zero for the next Select.
  for (size_t region = 0; region < regions; ++region) {
    if (first_bin[region] > last_bin[region]) continue;
    uint64_t* counts = counts_.data() + region * kLaneStride;
    const size_t len = last_bin[region] - first_bin[region] + 1;
    std::fill_n(counts + first_bin[region], len, uint64_t{0});
    std::fill_n(counts + kBins + first_bin[region], len, uint64_t{0});
  }
  if (targets.empty()) return answers;

  // Refinement: low-half histograms of the keys in each target bin.
  const size_t n_targets = targets.size();
  Grow(refine_, n_slots * n_targets * kBins);
  std::vector<uint8_t> refine_used(n_slots, 0);
  std::vector<uint8_t> stream_needed(n_streams, 0);
  for (const Target& target : targets) stream_needed[target.stream] = 1;
  ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
    uint32_t* hists = refine_.data() + c.slot * n_targets * kBins;
    if (!refine_used[c.slot]) {
      std::memset(hists, 0, n_targets * kBins * sizeof(uint32_t));
      refine_used[c.slot] = 1;
    }
    uint32_t* chunk_keys = keys_.data() + c.slot * chunk_elems;
    for (size_t stream = 0; stream < n_streams; ++stream) {
      if (!stream_needed[stream]) continue;
      keys(c, stream, std::span<uint32_t>(chunk_keys, c.size));
      for (size_t t = 0; t < n_targets; ++t) {
        if (targets[t].stream != stream) continue;
        const uint32_t bin = targets[t].bin;
        uint32_t* h = hists + t * kBins;
        // Keys in the bin are a small fraction: a predictable branch.
        for (size_t j = 0; j < c.size; ++j) {
          const uint32_t key = chunk_keys[j];
          if ((key >> 16) == bin) ++h[key & 0xFFFFu];
        }
      }
    }
  }));
  for (size_t q = 0; q < queries.size(); ++q) {
    if (query_target[q] < 0) continue;
    const size_t t = static_cast<size_t>(query_target[q]);
    const uint64_t rank_in_bin = queries[q].rank - answers[q].n_below;
    uint64_t below = 0;
    for (size_t low = 0; low < kBins; ++low) {
      uint64_t count = 0;
      for (size_t slot = 0; slot < n_slots; ++slot) {
        if (refine_used[slot]) count += refine_[(slot * n_targets + t) * kBins + low];
      }
      if (below + count > rank_in_bin) {
        answers[q] = {answers[q].key | static_cast<uint32_t>(low), answers[q].n_below + below,
                      count};
        break;
      }
      below += count;
    }
  }
  return answers;
}

bool StreamSelector::EqualCountsPerChunk(size_t stream, uint32_t key,
                                         std::span<uint64_t> counts) const {
  if ((key & 0xFFFFu) != 0 || counts.size() != n_chunks_ || stream >= n_streams_) return false;
  const uint32_t bin = key >> 16;
  for (size_t chunk = 0; chunk < n_chunks_; ++chunk) {
    const size_t at = chunk * n_streams_ + stream;
    const uint32_t first = chunk_first_bin_[at];
    if (first == kNoCountBins || bin < first || bin - first >= kCountBins) return false;
    counts[chunk] = chunk_counts_[at * kCountBins + (bin - first)];
  }
  return true;
}

}  // namespace alloy::merge::methods
