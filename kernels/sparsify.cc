// Sparsification kernels. Notes on numeric choices:
// * DareKeepMask draws the random bits of 256 elements at a time into a stack
//   buffer with a vectorized copy of kernels/random.cc's Philox (same bits)
//   and compares U = (bits >> 8) · 2^-24 with the density exactly, as an
//   integer compare; the draws are pure functions of the element index
//   (kernels/random.h), so any split gives the same mask.
// * The window and "to difference" kernels work in int32 lanes and are
//   compiled per ISA (kernels/isa_dispatch.h); -ffp-contract=off keeps every
//   path's float results identical.
// * MaskedL1Norms: float64 accumulation (Decision a) with 8 interleaved lanes
//   per chunk, so the loop is not one long dependency chain; the lane layout
//   and the chunk boundaries depend only on the index, so the sum does not
//   depend on the thread count.
#include "kernels/sparsify.h"

#include "kernels/philox_internal.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cmath>
#include <cstring>

#include "kernels/isa_dispatch.h"
#include "kernels/parallel.h"
#include "kernels/random.h"
#include "kernels/select.h"

namespace alloy::kernels {
namespace {

constexpr size_t kLanes = 8;
constexpr size_t kDrawBlock = 256;

// Philox4x32-10 exactly as kernels/random.cc (constants of Random123), but
// across many counter blocks at once: FillUniform runs one block at a time,
// and its chain of dependent multiplies cost ~2 ns per element. On x86-64
// the blocks go through AVX-512 or AVX2 32×32→64 multiplies (pmuludq), 8 or
// 4 blocks per vector; elsewhere a loop the compiler may vectorize.
constexpr uint32_t kPhiloxM0 = philox::kM0;
constexpr uint32_t kPhiloxM1 = philox::kM1;
constexpr uint32_t kPhiloxW0 = philox::kW0;
constexpr uint32_t kPhiloxW1 = philox::kW1;
constexpr int kPhiloxRounds = philox::kRounds;
// Counter blocks covering kDrawBlock elements at any start offset, rounded
// up to whole vectors of 8 blocks.
constexpr size_t kDrawBlocks = (kDrawBlock / 4 + 1 + 7) / 8 * 8;

using DrawKey = philox::StreamKey;
constexpr auto MakeDrawKey = philox::MakeKey;

// Output word j of counter block (first_block + b) goes to w[j][b], for
// b < n_blocks rounded up to a multiple of 8. Counter = (block lo, block hi,
// model, 0).
using BlockWords = uint32_t (*)[kDrawBlocks];

[[maybe_unused]] void PhiloxBlocksGeneric(uint64_t first_block, size_t n_blocks, uint32_t model, DrawKey key,
                         BlockWords w) noexcept {
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint64_t block = first_block + b;
    const std::array<uint32_t, 4> c =
        philox::Block(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), model, 0,
                      key.k0, key.k1);
    for (int j = 0; j < 4; ++j) w[j][b] = c[j];
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// The vector forms keep each 32-bit word in a 64-bit lane. pmuludq reads only
// the low 32 bits of a lane, so the high halves may hold garbage (the words
// c1 and c3 are left as whole products); outputs keep the low 32 bits.

// GCC 12 warns about the undefined pass-through operand inside its own
// avx512fintrin.h (-Wmaybe-uninitialized, a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
[[maybe_unused]] __attribute__((target("avx512f"))) void PhiloxBlocksAvx512(uint64_t first_block, size_t n_blocks,
                                                            uint32_t model, DrawKey key,
                                                            BlockWords w) noexcept {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0);
  const __m512i m1 = _mm512_set1_epi64(kPhiloxM1);
  const __m512i lanes = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  __m512i k0[kPhiloxRounds], k1[kPhiloxRounds];
  for (int round = 0; round < kPhiloxRounds; ++round) {
    k0[round] = _mm512_set1_epi64(static_cast<uint32_t>(key.k0 + kPhiloxW0 * round));
    k1[round] = _mm512_set1_epi64(static_cast<uint32_t>(key.k1 + kPhiloxW1 * round));
  }
  for (size_t b = 0; b < n_blocks; b += 8) {
    const __m512i block =
        _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(first_block + b)), lanes);
    __m512i c0 = block;
    __m512i c1 = _mm512_srli_epi64(block, 32);
    __m512i c2 = _mm512_set1_epi64(model);
    __m512i c3 = _mm512_setzero_si512();
    for (int round = 0; round < kPhiloxRounds; ++round) {
      const __m512i p0 = _mm512_mul_epu32(c0, m0);
      const __m512i p1 = _mm512_mul_epu32(c2, m1);
      c0 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p1, 32), c1), k0[round]);
      c2 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p0, 32), c3), k1[round]);
      c1 = p1;
      c3 = p0;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&w[0][b]), _mm512_cvtepi64_epi32(c0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&w[1][b]), _mm512_cvtepi64_epi32(c1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&w[2][b]), _mm512_cvtepi64_epi32(c2));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&w[3][b]), _mm512_cvtepi64_epi32(c3));
  }
}
#pragma GCC diagnostic pop

[[maybe_unused]] __attribute__((target("avx2"))) void PhiloxBlocksAvx2(uint64_t first_block, size_t n_blocks,
                                                       uint32_t model, DrawKey key,
                                                       BlockWords w) noexcept {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0);
  const __m256i m1 = _mm256_set1_epi64x(kPhiloxM1);
  const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
  const __m256i low_words = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  for (size_t b = 0; b < n_blocks; b += 4) {
    const __m256i block =
        _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(first_block + b)), lanes);
    __m256i c0 = block;
    __m256i c1 = _mm256_srli_epi64(block, 32);
    __m256i c2 = _mm256_set1_epi64x(model);
    __m256i c3 = _mm256_setzero_si256();
    uint32_t k0 = key.k0, k1 = key.k1;
    for (int round = 0; round < kPhiloxRounds; ++round) {
      const __m256i p0 = _mm256_mul_epu32(c0, m0);
      const __m256i p1 = _mm256_mul_epu32(c2, m1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1),
                            _mm256_set1_epi64x(k0));
      c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3),
                            _mm256_set1_epi64x(k1));
      c1 = p1;
      c3 = p0;
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const __m256i* words[4] = {&c0, &c1, &c2, &c3};
    for (int j = 0; j < 4; ++j) {
      const __m256i packed = _mm256_permutevar8x32_epi32(*words[j], low_words);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(&w[j][b]), _mm256_castsi256_si128(packed));
    }
  }
}

using PhiloxBlocksFn = void (*)(uint64_t, size_t, uint32_t, DrawKey, BlockWords) noexcept;

// The same ISA choice as kernels/isa_dispatch.h: at run time when it
// multiversions, else what the compiler targets.
PhiloxBlocksFn PickPhiloxBlocks() noexcept {
#ifdef ALLOY_ISA_DISPATCH
  switch (isa::CurrentIsa()) {
    case isa::kIsaAvx512:
      return PhiloxBlocksAvx512;
    case isa::kIsaAvx2:
      return PhiloxBlocksAvx2;
    default:
      return PhiloxBlocksGeneric;
  }
#elif defined(__AVX512F__)
  return PhiloxBlocksAvx512;
#elif defined(__AVX2__)
  return PhiloxBlocksAvx2;
#else
  return PhiloxBlocksGeneric;
#endif
}

void PhiloxBlocks(uint64_t first_block, size_t n_blocks, uint32_t model, DrawKey key,
                  BlockWords w) noexcept {
  static const PhiloxBlocksFn fn = PickPhiloxBlocks();
  fn(first_block, n_blocks, model, key, w);
}
#else
void PhiloxBlocks(uint64_t first_block, size_t n_blocks, uint32_t model, DrawKey key,
                  BlockWords w) noexcept {
  PhiloxBlocksGeneric(first_block, n_blocks, model, key, w);
}
#endif

// Writes RandomBits(seed, name_hash, model, first_index + i) for i < len to
// words[offset + i] and returns offset (= first_index % 4).
// REQUIRES: len ≤ kDrawBlock; words has 4 · kDrawBlocks entries.
ALLOY_INLINE size_t DrawBits(DrawKey key, uint32_t model, uint64_t first_index, size_t len,
                             uint32_t* words) noexcept {
  const uint64_t first_block = first_index >> 2;
  const size_t offset = static_cast<size_t>(first_index & 3);
  const size_t n_blocks = (offset + len + 3) >> 2;
  alignas(64) uint32_t w[4][kDrawBlocks];
  PhiloxBlocks(first_block, n_blocks, model, key, w);
  for (size_t b = 0; b < n_blocks; ++b) {
    words[4 * b] = w[0][b];
    words[4 * b + 1] = w[1][b];
    words[4 * b + 2] = w[2][b];
    words[4 * b + 3] = w[3][b];
  }
  return offset;
}

// Eight float64 lanes as one GCC vector: the accumulators stay in registers
// (as std::array they went through memory, and every add waited for a store).
// Lane l adds elements l, l + 8, ... in order, so the sums are the same as
// the scalar per-lane loop.
using V8d = double __attribute__((vector_size(64)));
using V8f = float __attribute__((vector_size(32)));
using V8i = int32_t __attribute__((vector_size(32)));
using V8l = int64_t __attribute__((vector_size(64)));
using V8b = uint8_t __attribute__((vector_size(8)));

// (Vectors go by reference: passing them by value draws GCC's -Wpsabi.)
ALLOY_INLINE void LoadAbs8(const float* x, V8d& out) noexcept {
  V8f v;
  std::memcpy(&v, x, sizeof v);
  const V8d d = __builtin_convertvector(v, V8d);
  out = reinterpret_cast<V8d>(reinterpret_cast<V8l>(d) & INT64_MAX);  // |d|, as fabs
}

// Lanes of the tail (< 8 elements) and the final reduction, scalar.
ALLOY_INLINE L1Norms FinishLanes(V8d& all, V8d& kept, const float* x, const uint8_t* keep,
                                 size_t tail) noexcept {
  for (size_t lane = 0; lane < tail; ++lane) {
    const double a = std::fabs(static_cast<double>(x[lane]));
    all[lane] += a;
    kept[lane] += a * static_cast<double>(keep[lane]);
  }
  L1Norms norms;
  for (size_t lane = 0; lane < kLanes; ++lane) {
    norms.unmasked += all[lane];
    norms.masked += kept[lane];
  }
  return norms;
}

L1Norms ChunkNorms(const float* x, const uint8_t* keep, size_t n) noexcept {
  L1Norms norms;
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    // |x·m| in float64 equals |x|·m for m ∈ {0, 1} (±0 → 0; inf or NaN
    // dropped → NaN either way), so the masked values are formed in float32
    // first: bytes → float vectorizes well, bytes → double does not.
    alignas(64) float masked[kDrawBlock];
    V8d all = {}, kept = {};
    size_t i = 0;
    for (; i + kDrawBlock <= n; i += kDrawBlock) {
      const float* __restrict xs = x + i;
      const uint8_t* __restrict ks = keep + i;
      for (size_t j = 0; j < kDrawBlock; ++j) masked[j] = xs[j] * static_cast<float>(ks[j]);
      for (size_t j = 0; j < kDrawBlock; j += kLanes) {
        V8d a, b;
        LoadAbs8(xs + j, a);
        LoadAbs8(masked + j, b);
        all += a;
        kept += b;
      }
    }
    const size_t rest = n - i;
    for (size_t j = 0; j < rest; ++j) masked[j] = x[i + j] * static_cast<float>(keep[i + j]);
    size_t j = 0;
    for (; j + kLanes <= rest; j += kLanes) {
      V8d a, b;
      LoadAbs8(x + i + j, a);
      LoadAbs8(masked + j, b);
      all += a;
      kept += b;
    }
    norms = FinishLanes(all, kept, x + i + j, keep + i + j, rest - j);
  });
  return norms;
}

// MagnitudeKey (kernels/select.h), inlined here so the window loop vectorizes.
ALLOY_INLINE uint32_t KeyOf(float x) noexcept {
  const uint32_t bits = std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
  return bits > 0x7F800000u ? kNanKey : bits;
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
  // U < density with U = (bits >> 8) · 2^-24 is (bits >> 8) < density · 2^24
  // (both sides scaled by a power of two, exactly), i.e. an integer compare
  // against ceil(density · 2^24).
  const int32_t threshold = static_cast<int32_t>(std::ceil(density * 0x1p24f));
  const DrawKey key = MakeDrawKey(seed, name_hash);
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    // Locals and __restrict: byte stores may alias anything, and GCC would
    // otherwise reload the threshold per element and not vectorize.
    const int32_t t = threshold;
    alignas(64) uint32_t words[4 * kDrawBlocks];
    for (size_t begin = 0; begin < n; begin += kDrawBlock) {
      const size_t len = std::min(kDrawBlock, n - begin);
      const uint32_t* __restrict bits =
          words + DrawBits(key, model, first_index + begin, len, words);
      uint8_t* __restrict out = keep.data() + begin;
      for (size_t j = 0; j < len; ++j) {
        out[j] = static_cast<uint8_t>(static_cast<int32_t>(bits[j] >> 8) < t);
      }
    }
  });
}

void DellaKeepMask(std::span<const float> x, size_t row_len, uint64_t seed, uint64_t name_hash,
                   uint32_t model, uint64_t first_index, float density, float epsilon,
                   std::span<uint32_t> scratch, std::span<uint8_t> keep) noexcept {
  const size_t n = x.size();
  const float p_min_arg = density - epsilon;
  const float p_span_arg = 2.0f * epsilon;
  // row_len == 1: the only rank is 0, so rn = 0 / 1 = 0.
  const float rank_max_arg = row_len > 1 ? static_cast<float>(row_len - 1) : 1.0f;
  std::span<uint32_t> rank = scratch.subspan(MagnitudeRanksScratchSize(row_len), row_len);
  const DrawKey key = MakeDrawKey(seed, name_hash);
  for (size_t row_begin = 0; row_begin < n; row_begin += row_len) {
    MagnitudeRanks(x.subspan(row_begin, row_len), scratch, rank);
    isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
      const float p_min = p_min_arg;
      const float p_span = p_span_arg;
      const float rank_max = rank_max_arg;
      alignas(64) uint32_t words[4 * kDrawBlocks];
      for (size_t begin = 0; begin < row_len; begin += kDrawBlock) {
        const size_t len = std::min(kDrawBlock, row_len - begin);
        const uint32_t* __restrict bits =
            words + DrawBits(key, model, first_index + row_begin + begin, len, words);
        const uint32_t* __restrict r = rank.data() + begin;
        uint8_t* __restrict out = keep.data() + row_begin + begin;
        for (size_t j = 0; j < len; ++j) {
          const float u = static_cast<float>(static_cast<int32_t>(bits[j] >> 8)) * 0x1p-24f;
          const float rn = static_cast<float>(static_cast<int32_t>(r[j])) / rank_max;
          const float p = p_min + rn * p_span;
          out[j] = static_cast<uint8_t>(u < p);
        }
      }
    });
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

namespace {

// The window test in int32 lanes (keys are < 2^31; the bounds are clamped
// so no sentinel needs the sign bit), which every ISA compares and converts
// to float directly.
struct WindowLanes {
  int32_t lo_key, hi_key, lo_begin, lo_end, hi_end;

  WindowLanes(const MagnitudeWindow& w, size_t n) noexcept {
    constexpr uint32_t kAboveAll = kNanKey + 1;
    auto clamp_index = [n](uint32_t v) { return static_cast<int32_t>(std::min<size_t>(v, n)); };
    lo_key = static_cast<int32_t>(std::min(w.lo_key, kAboveAll));
    hi_key = static_cast<int32_t>(std::min(w.hi_key, kAboveAll));
    lo_begin = clamp_index(w.lo_tie_begin);
    lo_end = clamp_index(w.lo_tie_end);
    hi_end = clamp_index(w.hi_tie_end);
  }

  // 1.0f when element i with value v is kept, else 0.0f.
  ALLOY_INLINE float Keep(int32_t i, float v) const noexcept {
    const int32_t key = static_cast<int32_t>(KeyOf(v));
    const int32_t lo_ok = (key > lo_key) | ((key == lo_key) & (i >= lo_begin) & (i < lo_end));
    const int32_t hi_ok = (key < hi_key) | ((key == hi_key) & (i < hi_end));
    return static_cast<float>(lo_ok & hi_ok);
  }
};

}  // namespace

void ApplyMagnitudeWindow(std::span<const float> x, const MagnitudeWindow& window, float scale,
                          std::span<float> out) noexcept {
  // Branch-free: the keep test becomes 0.0f/1.0f and is multiplied in, as
  // ApplyMask does.
  const WindowLanes lanes(window, x.size());
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const WindowLanes w = lanes;
    const float* xs = x.data();
    float* os = out.data();
    const int32_t count = static_cast<int32_t>(x.size());
    for (int32_t i = 0; i < count; ++i) os[i] = (xs[i] * w.Keep(i, xs[i])) * scale;
  });
}

void ApplyMagnitudeWindowToDifference(std::span<const float> x, std::span<const float> base,
                                      const MagnitudeWindow& window, float scale,
                                      std::span<float> out) noexcept {
  const WindowLanes lanes(window, x.size());
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const WindowLanes w = lanes;
    const float* xs = x.data();
    const float* __restrict bs = base.data();
    float* os = out.data();
    const int32_t count = static_cast<int32_t>(x.size());
    for (int32_t i = 0; i < count; ++i) {
      const float d = xs[i] - bs[i];
      os[i] = (d * w.Keep(i, d)) * scale;
    }
  });
}

void ApplyMaskToDifference(std::span<const float> x, std::span<const float> base,
                           std::span<const uint8_t> keep, float scale,
                           std::span<float> out) noexcept {
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* xs = x.data();
    const float* __restrict bs = base.data();
    const uint8_t* __restrict ks = keep.data();
    float* os = out.data();
    const float s = scale;
    for (size_t i = 0; i < x.size(); ++i) os[i] = ((xs[i] - bs[i]) * static_cast<float>(ks[i])) * s;
  });
}

L1Norms ChunkMaskedL1Norms(std::span<const float> x, std::span<const uint8_t> keep) noexcept {
  return ChunkNorms(x.data(), keep.data(), x.size());
}

L1Norms ChunkL1NormsBetween(std::span<const float> x, uint32_t lo_key, uint32_t hi_key) noexcept {
  // int32 compares as in ApplyMagnitudeWindow (keys < 2^31 after clamping);
  // the same lanes as ChunkNorms, with m = 1 inside the window.
  constexpr uint32_t kAboveAll = kNanKey + 1;
  const int32_t lo = static_cast<int32_t>(std::min(lo_key, kAboveAll));
  const int32_t hi = static_cast<int32_t>(std::min(hi_key, kAboveAll));
  const size_t n = x.size();
  const float* xs = x.data();
  L1Norms norms;
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    V8d all = {}, kept = {};
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      V8i key;
      std::memcpy(&key, xs + i, sizeof key);
      key &= INT32_MAX;
      key = key > 0x7F800000 ? static_cast<int32_t>(kNanKey) : key;
      const V8i inside = (key > lo) & (key < hi);  // −1 or 0 per lane
      V8d a;
      LoadAbs8(xs + i, a);
      all += a;
      kept += a * -__builtin_convertvector(inside, V8d);
    }
    uint8_t tail_keep[kLanes] = {};
    for (size_t lane = 0; i + lane < n; ++lane) {
      const int32_t key = static_cast<int32_t>(KeyOf(xs[i + lane]));
      tail_keep[lane] = static_cast<uint8_t>((key > lo) & (key < hi));
    }
    norms = FinishLanes(all, kept, xs + i, tail_keep, n - i);
  });
  return norms;
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
