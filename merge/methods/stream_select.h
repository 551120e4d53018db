// Exact order statistics of per-element 32-bit keys over a whole output
// tensor, in streaming passes over a TensorPass: never more than a chunk per
// input in memory (the executor's bounded-memory rule).
//
// Pass 1 (a TensorPass::Scan) builds, per stream, a 65,536-bin histogram of
// the keys' high 16 bits together with, per bin, the number of keys whose low
// 16 bits are not 0, and keeps a bounded list of those keys near each query's
// expected position. When the rank lands among a bin's keys with low half 0
// (all equal: the usual case for task vectors of bf16 checkpoints,
// performance-notes.md), or the lists hold every key of the bin, the answer
// is exact after one pass. Otherwise one more Scan histograms the low 16 bits
// of the keys inside that bin. Counts are integers, so the answer is
// identical at any thread count (stream_select.cc has the details).
//
// Keys are kernels::MagnitudeKey values (bit pattern of |x|, NaN = kNanKey),
// or any 32-bit key whose unsigned order is the order wanted.
//
// Thread safety: one Select at a time per StreamSelector (it owns scratch
// reused across tensors); the key callback runs in parallel on different
// chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "formats/status.h"
#include "merge/executor.h"

namespace alloy::merge::methods {

// "The key at ascending position `rank` (0-based) among all numel keys of `stream`."
struct KeyQuery {
  size_t stream = 0;
  uint64_t rank = 0;  // REQUIRES: rank < numel
};

// Same meaning as kernels::RankSelection.
struct KeyAnswer {
  uint32_t key = 0;      // the key at that position
  uint64_t n_below = 0;  // keys strictly smaller
  uint64_t n_equal = 0;  // keys equal to it (n_below ≤ rank < n_below + n_equal)
};

// Writes keys[j] for element j of `chunk` in `stream` (keys.size() == chunk.size).
using KeyFn = std::function<void(const Chunk& chunk, size_t stream, std::span<uint32_t> keys)>;

class StreamSelector {
 public:
  // Answers every query (in query order). `also`, when set, is called for
  // every chunk during the first pass, so a method can gather other
  // statistics (L1 sums, counts) without a pass of its own. Fails only with
  // the pass's read errors.
  formats::Result<std::vector<KeyAnswer>> Select(TensorPass& pass, size_t n_streams,
                                                 std::span<const KeyQuery> queries,
                                                 const KeyFn& keys, const ScanFn& also = nullptr);

  // After a Select: per chunk of its pass (counts.size() == num_chunks), how
  // many keys of `stream` equal `key`, when its first pass could record them
  // (key's low 16 bits are 0 and its high half lies in the few bins each slot
  // chose near the queries after its first chunk). False otherwise; then the
  // caller counts for itself (e.g. in an ordered pass). Lets a method apply
  // "lowest flat index first" tie quotas in a plain Emit.
  bool EqualCountsPerChunk(size_t stream, uint32_t key, std::span<uint64_t> counts) const;

  static constexpr size_t kCountBins = 64;

 private:
  // Per slot × stream, reused across tensors (grow-only): histograms of the
  // high halves, the bins a spill list is restricted to (bitmap), and the
  // spill lists.
  std::vector<uint64_t> counts_;  // per bin: keys | keys with a nonzero low half << 32
  std::vector<uint32_t> windows_;
  std::vector<std::vector<uint32_t>> spill_;
  std::vector<uint32_t> keys_;    // per slot: one chunk of keys
  // Per chunk × stream of the last Select: zero-low key counts of kCountBins
  // bins from chunk_first_bin_ on (UINT32_MAX: not recorded).
  std::vector<uint32_t> chunk_counts_;
  std::vector<uint32_t> chunk_first_bin_;
  size_t n_chunks_ = 0;
  size_t n_streams_ = 0;
  std::vector<uint32_t> refine_;  // per slot × refined bin: low-half histograms
};

}  // namespace alloy::merge::methods
