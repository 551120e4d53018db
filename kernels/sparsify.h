// Sparsification kernels for the task-vector methods
// (mergekit-semantics.md §1.3): applying a keep-mask with a rescale factor,
// DARE's random keep-mask, DELLA's magnitude-ranked random keep-mask, the
// L1-matching rescale factor, and the element counts of TIES top-k and the
// breadcrumbs window. The whole-tensor TIES and breadcrumbs masks are in
// kernels/select.h; the streaming forms (MagnitudeWindow: one chunk at a
// time, ties cut by the caller's quota), the fused "on x − base" variants and
// the per-chunk L1 sums used by merge/methods/task_arithmetic.cc are below.
//
// Convention for masks: std::span<uint8_t>, 1 = keep, 0 = drop (no other
// values; every mask kernel writes exactly 0 or 1).
//
// Threading: ApplyMask, DareKeepMask and DellaKeepMask are elementwise or per row (callers split
// spans across threads freely). MaskedL1Norms reduces over the whole span through ParallelForChunks
// with fixed chunk boundaries and combines the per-chunk float64 partials in chunk order, so it is
// bit-identical at any thread count. The Chunk* sums and the window kernels are serial pure
// functions of their spans.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace alloy::kernels {

// out[i] = (x[i] · m) · scale with m = keep[i] ? 1 : 0, in float32, as
// mergekit's x·mask then ·(a/b): kept entries are x[i] · scale; dropped ones
// are ±0, or NaN for an inf/NaN input (as in mergekit). In-place (out == x)
// is allowed.
// REQUIRES: keep.size() == x.size() == out.size(); every keep[i] is 0 or 1.
void ApplyMask(std::span<const float> x, std::span<const uint8_t> keep, float scale,
               std::span<float> out) noexcept;

// DARE (§1.3 random/Bernoulli, §1.4): keep[i] = 1 iff
// Uniform(seed, name_hash, model, first_index + i) < density (float32
// comparison of a 24-bit uniform in [0, 1); §1.4 describes torch.bernoulli's
// CPU kernel as the same u < p test, "believed correct, not confirmed"). density ≤ 0 keeps nothing;
// density ≥ 1 keeps everything. Pass the density as mergekit would use it (for bf16 tensors
// mergekit rounds it to bf16: 0.53 → 0.53125); that choice is the caller's. REQUIRES: first_index +
// keep.size() does not wrap around 2^64.
void DareKeepMask(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t first_index,
                  float density, std::span<uint8_t> keep) noexcept;

// DELLA (§1.3 della_magprune) over x viewed as rows of row_len elements (a
// 1-D tensor is one row). Per row, r is the element's 0-based ascending
// position by (|x|, flat index) (MagnitudeRanks; mergekit's double argsort
// leaves ties to an unstable sort) and, in float32,
//   p = (density - epsilon) + (float(r) / float(row_len - 1)) * (2 * epsilon)
// which is mergekit's rn = (r - min r) / (max r - min r) with 1-based ranks.
// keep[i] = Uniform(seed, name_hash, model, first_index + i) < p.
// row_len == 1 gives p = density - epsilon (mergekit gets 0/0 = NaN there and
// torch.bernoulli fails; refusing it is the caller's choice). mergekit rounds
// ranks to bf16 for bf16 inputs; alloy keeps them exact (Decision a).
// scratch: size ≥ MagnitudeRanksScratchSize(row_len) + row_len (kernels/select.h).
// REQUIRES: row_len ≥ 1; x.size() % row_len == 0; keep.size() == x.size();
//           0 < density - epsilon and density + epsilon < 1 (validated by the caller).
void DellaKeepMask(std::span<const float> x, size_t row_len, uint64_t seed, uint64_t name_hash,
                   uint32_t model, uint64_t first_index, float density, float epsilon,
                   std::span<uint32_t> scratch, std::span<uint8_t> keep) noexcept;

// The two L1 sums of the rescale rule (§1.3 rescaled_masked_tensor), in
// float64: unmasked = Σ|x|, masked = Σ|x|·m (m = keep[i] as 0/1, so, as in
// mergekit's Σ|x·mask|, a dropped inf makes it NaN). Chunks of
// kDefaultChunkElems, each summed in index order with 8 interleaved
// accumulators (lane i % 8, lanes added 0..7), chunks combined in order.
struct L1Norms {
  double unmasked = 0.0;
  double masked = 0.0;
};
// REQUIRES: keep.size() == x.size(); every keep[i] is 0 or 1.
L1Norms MaskedL1Norms(std::span<const float> x, std::span<const uint8_t> keep) noexcept;

// mergekit's L1 rescale factor: 1 if unmasked < 1e-7 or masked < 1e-7
// (mergekit then returns the masked tensor unscaled), else unmasked / masked
// (computed in float64, rounded once to float32).
float L1RescaleFactor(L1Norms norms) noexcept;

// TIES (§1.3 magnitude): k = floor(density · n) computed in double, clamped to
// [0, n]. (mergekit asserts k > 0; that refusal belongs to the caller.)
uint64_t TopKCount(uint64_t n, double density) noexcept;

// Breadcrumbs (§1.3 magnitude_outliers): the kept positions [lo, hi) of the
// ascending (|x|, index) order. keep = floor(density·n), top = floor(gamma·n),
// bot = n − keep − top; if bot < 0 then top += bot and bot = 0.
// With reproduce_quirk (Decision d), top == 0 gives the empty window, as
// mergekit's slice [bot:-0] does; otherwise the window is [bot, n − top).
struct RankWindow {
  uint64_t lo = 0;
  uint64_t hi = 0;
};
RankWindow BreadcrumbsWindow(uint64_t n, double density, double gamma,
                             bool reproduce_quirk) noexcept;

// Streaming forms of the magnitude masks (one chunk of a tensor at a time;
// the chunk's share of the tie quota is the caller's, from counts of the ties
// in earlier chunks). Element i of the span (local index) is kept iff
//   (key > lo_key  or  (key == lo_key  and  lo_tie_begin <= i < lo_tie_end))
//   and (key < hi_key  or  (key == hi_key  and  i < hi_tie_end))
// with key = MagnitudeKey(x[i]) (kernels/select.h). The defaults keep
// everything. TIES top-k: lo_key = the k-th largest key, ties kept in
// [0, cut). Breadcrumbs: lo/hi are the keys at the window's ends, ties kept
// from the lower cut on and before the upper cut.
struct MagnitudeWindow {
  uint32_t lo_key = 0;
  uint32_t lo_tie_begin = 0;
  uint32_t lo_tie_end = UINT32_MAX;
  uint32_t hi_key = UINT32_MAX;  // above every key: no upper bound
  uint32_t hi_tie_end = UINT32_MAX;
};

// out[i] = (x[i] · m) · scale with m = 1 when element i is kept by `window`,
// else 0, as ApplyMask. In-place (out == x) is allowed.
// REQUIRES: out.size() == x.size() < 2^31.
void ApplyMagnitudeWindow(std::span<const float> x, const MagnitudeWindow& window, float scale,
                          std::span<float> out) noexcept;

// The same on δ = x − base (float32 difference), without materialising δ:
// out[i] = (δ[i] · m) · scale, m from the key of δ[i]. out may alias x.
// REQUIRES: x, base and out have one size < 2^31.
void ApplyMagnitudeWindowToDifference(std::span<const float> x, std::span<const float> base,
                                      const MagnitudeWindow& window, float scale,
                                      std::span<float> out) noexcept;
// ApplyMask on δ = x − base: out[i] = (δ[i] · keep[i]) · scale.
// REQUIRES: x, base, keep and out have one size; out may alias x.
void ApplyMaskToDifference(std::span<const float> x, std::span<const float> base,
                           std::span<const uint8_t> keep, float scale,
                           std::span<float> out) noexcept;

// Serial L1 sums of one chunk with MaskedL1Norms' lane order (8 interleaved
// float64 accumulators, lane i % 8, lanes added 0..7): a pure function of the
// span, for callers that keep per-chunk partials themselves.
// REQUIRES: keep.size() == x.size(); every keep[i] is 0 or 1.
L1Norms ChunkMaskedL1Norms(std::span<const float> x, std::span<const uint8_t> keep) noexcept;
// unmasked = Σ|x|, masked = Σ|x| over the elements with lo_key < key < hi_key
// (strictly: ties at either end are the caller's, as count · magnitude). A
// NaN or inf element makes both NaN-or-inf as mergekit's Σ|x·mask| does
// (a dropped one is multiplied by 0).
L1Norms ChunkL1NormsBetween(std::span<const float> x, uint32_t lo_key, uint32_t hi_key) noexcept;

}  // namespace alloy::kernels
