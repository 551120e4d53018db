// Consensus kernels. Elements are processed in blocks of 256 so that each
// model's span is read sequentially (one pass per model per block) while the
// float64 sums for the block stay in L1; per element, models are added in
// recipe order, so the result is the same for any block size or split.
// The loops are branch-free and compiled per ISA (kernels/isa_dispatch.h);
// with -ffp-contract=off every path gives the same bits.
#include "kernels/sign.h"

#include <algorithm>
#include <array>

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {
namespace {

constexpr size_t kBlock = 256;

ALLOY_INLINE int SignOf(float v) noexcept { return (v > 0.0f) - (v < 0.0f); }

enum class Vote : uint8_t { kWeightedSum, kWeightedCount, kUnweightedSum };
enum class Divide : uint8_t { kNone, kZeroAsOne, kAtLeast1e6 };

// The shared consensus loop: elect a majority sign per element from the
// votes, then sum the weighted deltas that agree with it (and their weights).
// M is 0/1 and multiplied in, as in mergekit (W·M): branch-free, and an
// inf/NaN entry poisons its element even when it disagrees. Agreement is
// tested on the weighted delta; for SCE's non-negative weights that equals
// testing the unweighted one, since a zero weight adds nothing either way.
template <typename Out>
ALLOY_INLINE void ConsensusBody(std::span<const std::span<const float>> deltas,
                                std::span<const float> weights, Vote vote_kind, Divide divide,
                                std::span<Out> out) noexcept {
  const size_t n = out.size();
  const size_t n_models = deltas.size();
  alignas(64) std::array<double, kBlock> vote;
  alignas(64) std::array<double, kBlock> mixed;
  alignas(64) std::array<double, kBlock> divisor;
  alignas(64) std::array<float, kBlock> majority;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t len = std::min(kBlock, n - begin);
    vote.fill(0.0);
    mixed.fill(0.0);
    divisor.fill(0.0);
    for (size_t model_idx = 0; model_idx < n_models; ++model_idx) {
      const float* __restrict d = deltas[model_idx].data() + begin;
      const float w = vote_kind == Vote::kUnweightedSum ? 1.0f : weights[model_idx];
      if (vote_kind == Vote::kWeightedCount) {
        for (size_t j = 0; j < len; ++j) vote[j] += static_cast<double>(SignOf(w * d[j]));
      } else {
        for (size_t j = 0; j < len; ++j) vote[j] += static_cast<double>(w * d[j]);
      }
    }
    // Selects are written as arithmetic on 0/1 values: GCC turns ?: here into
    // branches and then does not vectorize. (A NaN vote is not ≥ 0: −1.)
    for (size_t j = 0; j < len; ++j) {
      majority[j] = 2.0f * static_cast<float>(vote[j] >= 0.0) - 1.0f;
    }
    for (size_t model_idx = 0; model_idx < n_models; ++model_idx) {
      const float* __restrict d = deltas[model_idx].data() + begin;
      const float w = weights[model_idx];
      const double w64 = static_cast<double>(w);
      for (size_t j = 0; j < len; ++j) {
        const float weighted = w * d[j];
        const double agree = static_cast<double>(weighted * majority[j] > 0.0f);
        mixed[j] += static_cast<double>(weighted) * agree;
        divisor[j] += w64 * agree;
      }
    }
    Out* __restrict o = out.data() + begin;
    if (divide == Divide::kZeroAsOne) {
      // A zero divisor (±0) becomes 1: d + 1 when d == 0, else d + 0.
      for (size_t j = 0; j < len; ++j) {
        o[j] = static_cast<Out>(mixed[j] / (divisor[j] + static_cast<double>(divisor[j] == 0.0)));
      }
    } else if (divide == Divide::kAtLeast1e6) {
      for (size_t j = 0; j < len; ++j) o[j] = static_cast<Out>(mixed[j] / std::max(divisor[j], 1e-6));
    } else {
      for (size_t j = 0; j < len; ++j) o[j] = static_cast<Out>(mixed[j]);
    }
  }
}

template <typename Out>
void Consensus(std::span<const std::span<const float>> deltas, std::span<const float> weights,
               Vote vote_kind, Divide divide, std::span<Out> out) noexcept {
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    ConsensusBody(deltas, weights, vote_kind, divide, out);
  });
}

}  // namespace

void TiesConsensus(std::span<const std::span<const float>> deltas, std::span<const float> weights,
                   SignElection election, bool normalize, std::span<double> out) noexcept {
  Consensus(deltas, weights,
            election == SignElection::kCount ? Vote::kWeightedCount : Vote::kWeightedSum,
            normalize ? Divide::kZeroAsOne : Divide::kNone, out);
}

void SceConsensus(std::span<const std::span<const float>> deltas, std::span<const float> weights,
                  std::span<float> out) noexcept {
  Consensus(deltas, weights, Vote::kUnweightedSum, Divide::kAtLeast1e6, out);
}

}  // namespace alloy::kernels
