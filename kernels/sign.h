// Sign election and disjoint merge for TIES-style consensus
// (mergekit-semantics.md §1.2 step 5, and §1.12 for SCE).
//
// Per element i, with W_m = w_m · δ_m[i] (float32 product) for each model m in
// recipe order (Decision c):
// * election: kSum: s = Σ_m W_m (float64); kCount: s = Σ_m sign(W_m).
//   The majority sign is +1 where s ≥ 0 and −1 otherwise (ties go to +1, as
//   mergekit's `(sign_weight >= 0) * 2 - 1`; a NaN sum elects −1).
// * agreement: M_m = (sign(W_m) == majority); sign(0) = 0, so zero entries
//   never agree. M is a 0/1 factor multiplied in, as mergekit's W·M, so a
//   disagreeing inf or NaN entry still makes its element NaN (inf·0).
// * TiesConsensus: out = Σ_m W_m·M_m, divided by Σ_m w_m·M_m when normalize
//   (a zero divisor is replaced by 1). Sums in float64; the result stays
//   float64 so the caller can add the base and lambda before its single
//   rounding to the output dtype (Decision a).
// * SceConsensus (§1.12): the election uses the unweighted deltas (kSum);
//   out = Σ_m δ_m·s_m·M_m / max(Σ_m s_m·M_m, 1e-6), with s the per-model
//   weights (mean(δ_m²) normalised by the caller); rounded to float32.
//
// The result is the merged delta ("mixed"); adding base and applying lambda
// are the caller's. Elementwise and pure: callers split spans across threads
// freely, and a split cannot change any value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace alloy::kernels {

enum class SignElection : uint8_t {
  kSum,    // sign of the sum of the weighted deltas (mergekit's "sum")
  kCount,  // sign of the count of positive minus negative entries ("count")
};

// REQUIRES: weights.size() == deltas.size(); every deltas[m].size() == out.size().
void TiesConsensus(std::span<const std::span<const float>> deltas, std::span<const float> weights,
                   SignElection election, bool normalize, std::span<double> out) noexcept;

// REQUIRES: weights.size() == deltas.size(); every deltas[m].size() == out.size().
void SceConsensus(std::span<const std::span<const float>> deltas, std::span<const float> weights,
                  std::span<float> out) noexcept;

}  // namespace alloy::kernels
