// Sparsification kernels. Notes on numeric choices:
// * DareKeepMask draws uniforms in blocks of 256 into a stack buffer and
//   compares them with the density in float32; the draws are pure functions of
//   the element index (kernels/random.h), so any split gives the same mask.
// * MaskedL1Norms: float64 accumulation (Decision a) with 8 interleaved lanes
//   per chunk, so the loop is not one long dependency chain; the lane layout
//   and the chunk boundaries depend only on the index, so the sum does not
//   depend on the thread count.
#include "kernels/sparsify.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "kernels/parallel.h"
#include "kernels/random.h"
#include "kernels/select.h"

namespace alloy::kernels {
namespace {

constexpr size_t kLanes = 8;
constexpr size_t kDrawBlock = 256;

L1Norms ChunkNorms(const float* x, const uint8_t* keep, size_t n) noexcept {
  std::array<double, kLanes> all{};
  std::array<double, kLanes> kept{};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t lane = 0; lane < kLanes; ++lane) {
      const double a = std::fabs(static_cast<double>(x[i + lane]));
      all[lane] += a;
      kept[lane] += a * static_cast<double>(keep[i + lane]);
    }
  }
  for (size_t lane = 0; i < n; ++i, ++lane) {
    const double a = std::fabs(static_cast<double>(x[i]));
    all[lane] += a;
    kept[lane] += a * static_cast<double>(keep[i]);
  }
  L1Norms norms;
  for (size_t lane = 0; lane < kLanes; ++lane) {
    norms.unmasked += all[lane];
    norms.masked += kept[lane];
  }
  return norms;
}

}  // namespace

void ApplyMask(std::span<const float> x, std::span<const uint8_t> keep, float scale,
               std::span<float> out) noexcept {
  const size_t n = x.size();
  // (x · m) · scale with m ∈ {0, 1}, mergekit's order: branch-free (random
  // masks would mispredict), and bit-identical to x · scale for kept entries.
  // The mask byte converts to 0.0f/1.0f directly (keep is 0/1 by contract);
  // testing keep[i] != 0 made GCC emit a branch instead.
  for (size_t i = 0; i < n; ++i) out[i] = (x[i] * static_cast<float>(keep[i])) * scale;
}

void DareKeepMask(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t first_index,
                  float density, std::span<uint8_t> keep) noexcept {
  const size_t n = keep.size();
  if (!(density > 0.0f)) {
    std::fill(keep.begin(), keep.end(), uint8_t{0});
    return;
  }
  if (density >= 1.0f) {
    std::fill(keep.begin(), keep.end(), uint8_t{1});
    return;
  }
  std::array<float, kDrawBlock> draws;
  for (size_t begin = 0; begin < n; begin += kDrawBlock) {
    const size_t len = std::min(kDrawBlock, n - begin);
    FillUniform(seed, name_hash, model, first_index + begin, std::span<float>(draws.data(), len));
    for (size_t j = 0; j < len; ++j) keep[begin + j] = draws[j] < density ? 1 : 0;
  }
}

void DellaKeepMask(std::span<const float> x, size_t row_len, uint64_t seed, uint64_t name_hash,
                   uint32_t model, uint64_t first_index, float density, float epsilon,
                   std::span<uint32_t> scratch, std::span<uint8_t> keep) noexcept {
  const size_t n = x.size();
  const float p_min = density - epsilon;
  const float p_span = 2.0f * epsilon;
  // row_len == 1: the only rank is 0, so rn = 0 / 1 = 0.
  const float rank_max = row_len > 1 ? static_cast<float>(row_len - 1) : 1.0f;
  std::span<uint32_t> rank = scratch.subspan(MagnitudeRanksScratchSize(row_len), row_len);
  std::array<float, kDrawBlock> draws;
  for (size_t row_begin = 0; row_begin < n; row_begin += row_len) {
    MagnitudeRanks(x.subspan(row_begin, row_len), scratch, rank);
    for (size_t begin = 0; begin < row_len; begin += kDrawBlock) {
      const size_t len = std::min(kDrawBlock, row_len - begin);
      FillUniform(seed, name_hash, model, first_index + row_begin + begin,
                  std::span<float>(draws.data(), len));
      for (size_t j = 0; j < len; ++j) {
        const float rn = static_cast<float>(rank[begin + j]) / rank_max;
        const float p = p_min + rn * p_span;
        keep[row_begin + begin + j] = draws[j] < p ? 1 : 0;
      }
    }
  }
}

L1Norms MaskedL1Norms(std::span<const float> x, std::span<const uint8_t> keep) noexcept {
  const size_t n = x.size();
  const size_t chunk = kDefaultChunkElems;
  const size_t n_chunks = (n + chunk - 1) / chunk;
  // Partials live on the stack in groups of 64 chunks (4Mi elements), so the
  // kernel needs no scratch; groups are combined in order too.
  constexpr size_t kGroupChunks = 64;
  std::array<L1Norms, kGroupChunks> partials;
  L1Norms total;
  for (size_t group = 0; group < n_chunks; group += kGroupChunks) {
    const size_t group_begin = group * chunk;
    const size_t group_len = std::min(n - group_begin, kGroupChunks * chunk);
    ParallelForChunks(group_len, chunk, [&](size_t chunk_idx, size_t begin, size_t end) {
      partials[chunk_idx] = ChunkNorms(x.data() + group_begin + begin,
                                       keep.data() + group_begin + begin, end - begin);
    });
    const size_t chunks_here = (group_len + chunk - 1) / chunk;
    for (size_t chunk_idx = 0; chunk_idx < chunks_here; ++chunk_idx) {
      total.unmasked += partials[chunk_idx].unmasked;
      total.masked += partials[chunk_idx].masked;
    }
  }
  return total;
}

float L1RescaleFactor(L1Norms norms) noexcept {
  if (norms.unmasked < 1e-7 || norms.masked < 1e-7) return 1.0f;
  return static_cast<float>(norms.unmasked / norms.masked);
}

uint64_t TopKCount(uint64_t n, double density) noexcept {
  if (!(density > 0.0)) return 0;
  if (density >= 1.0) return n;
  const double k = std::floor(density * static_cast<double>(n));
  return std::min(n, static_cast<uint64_t>(k));
}

RankWindow BreadcrumbsWindow(uint64_t n, double density, double gamma,
                             bool reproduce_quirk) noexcept {
  const auto n_signed = static_cast<int64_t>(n);
  const auto keep = static_cast<int64_t>(TopKCount(n, density));
  int64_t top = static_cast<int64_t>(TopKCount(n, gamma));
  int64_t bot = n_signed - keep - top;
  if (bot < 0) {
    top += bot;
    bot = 0;
  }
  if (top == 0 && reproduce_quirk) return {static_cast<uint64_t>(bot), static_cast<uint64_t>(bot)};
  return {static_cast<uint64_t>(bot), static_cast<uint64_t>(n_signed - top)};
}

}  // namespace alloy::kernels
