// GGUF block (de)quantization, written after ggml's scalar reference code
// (ggml-quants.c) so that the float32 results match it bit for bit:
// * every output is the same float32 expression in the same order, e.g.
//   Q4_K y = (d·sc)·q − (dmin·m), Q6_K y = (d·sc)·q, Q4_1 y = q·d + m, with
//   the integer quant converted to float exactly first. The build uses
//   -ffp-contract=off, so no product is fused into an FMA and every ISA path
//   gives the same bits;
// * f16 scales are decoded exactly (DecodeF16) and encoded RNE (F32ToF16),
//   as GGML_FP16_TO_FP32 / GGML_FP32_TO_FP16 do.
//
// Performance: the per-block loops have fixed trip counts over bytes and
// floats, which GCC vectorizes; each Dequantize path is compiled for
// AVX-512, AVX2 and the baseline and picked at run time (isa_dispatch.h).
// The f16 scales of up to kBatch blocks are gathered and decoded in one
// vectorized call instead of one call per block (for Q8_0 a block is only 32
// elements, so a call per block would cost as much as the block).
//
// Quantizers: ggml converts the rounded float to int8_t with a plain cast. On
// x86-64 that is cvttss2si into 32 bits and the low byte, so values outside
// the int32 range and NaN become 0. In the reference's own range the values
// fit in int8; only degenerate blocks (inf/NaN inputs, max|x| < ~1e-36 where
// 1/d is inexact or inf) reach the rest. TruncToByteLikeX86 and
// RoundToByteLikeX86 reproduce that without undefined behaviour, so the bytes
// match ggml's there too. max|x| is taken as an integer max over the bit
// patterns (vectorizes); only a block holding a NaN replays ggml's sequential
// loop, whose result then depends on the order.
#include "kernels/quant.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/convert.h"
#include "kernels/isa_dispatch.h"

namespace alloy::kernels {
namespace {

using isa::Dispatch;

constexpr size_t kQk = 32;    // elements per legacy block
constexpr size_t kQkK = 256;  // elements per K-quant super-block

constexpr size_t kQ4_0Bytes = 18;   // f16 d, u8 qs[16]
constexpr size_t kQ4_1Bytes = 20;   // f16 d, f16 m, u8 qs[16]
constexpr size_t kQ5_0Bytes = 22;   // f16 d, u8 qh[4], u8 qs[16]
constexpr size_t kQ5_1Bytes = 24;   // f16 d, f16 m, u8 qh[4], u8 qs[16]
constexpr size_t kQ8_0Bytes = 34;   // f16 d, i8 qs[32]
constexpr size_t kQ4_KBytes = 144;  // f16 d, f16 dmin, u8 scales[12], u8 qs[128]
constexpr size_t kQ5_KBytes = 176;  // f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
constexpr size_t kQ6_KBytes = 210;  // u8 ql[128], u8 qh[64], i8 scales[16], f16 d

// Blocks whose f16 scales are decoded together (two float arrays of this
// size live on the stack).
constexpr size_t kBatch = 64;
constexpr size_t kNoField = ~size_t{0};

ALLOY_INLINE uint16_t LoadU16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
ALLOY_INLINE uint32_t LoadU32(const uint8_t* p) noexcept {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
ALLOY_INLINE void StoreU16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
ALLOY_INLINE float I2F(int v) noexcept { return static_cast<float>(v); }

// Decodes the f16 at byte `offset` of each of n blocks of `stride` bytes.
void DecodeScales(const uint8_t* blocks, size_t n, size_t stride, size_t offset,
                  float* out) noexcept {
  uint16_t bits[kBatch];
  for (size_t i = 0; i < n; ++i) bits[i] = LoadU16(blocks + i * stride + offset);
  DecodeF16(std::span<const uint16_t>(bits, n), std::span<float>(out, n));
}

// Calls fn(block bytes, d, m, block outputs) for n blocks; d and m are the
// decoded f16 fields at kDOffset and kMOffset (m = 0 when kMOffset is
// kNoField).
template <size_t kBytes, size_t kElems, size_t kDOffset, size_t kMOffset, typename Fn>
ALLOY_INLINE void ForEachBlock(const uint8_t* src, float* dst, size_t n, Fn fn) noexcept {
  float d[kBatch];
  float m[kBatch] = {};
  for (size_t first = 0; first < n; first += kBatch) {
    const size_t len = std::min(kBatch, n - first);
    const uint8_t* batch = src + first * kBytes;
    DecodeScales(batch, len, kBytes, kDOffset, d);
    if constexpr (kMOffset != kNoField) DecodeScales(batch, len, kBytes, kMOffset, m);
    float* out = dst + first * kElems;
    for (size_t i = 0; i < len; ++i) fn(batch + i * kBytes, d[i], m[i], out + i * kElems);
  }
}

// ---- legacy 32-element blocks: element j < 16 is the low nibble of qs[j],
// element j + 16 the high nibble; Q5 adds bit j (resp. j + 16) of qh as bit 4.

struct BlockQ4_0 {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float,
                               float* __restrict y) const noexcept {
    const uint8_t* qs = b + 2;
    for (size_t j = 0; j < kQk / 2; ++j) {
      y[j] = I2F((qs[j] & 0x0F) - 8) * d;
      y[j + kQk / 2] = I2F((qs[j] >> 4) - 8) * d;
    }
  }
};

struct BlockQ4_1 {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float m,
                               float* __restrict y) const noexcept {
    const uint8_t* qs = b + 4;
    for (size_t j = 0; j < kQk / 2; ++j) {
      y[j] = I2F(qs[j] & 0x0F) * d + m;
      y[j + kQk / 2] = I2F(qs[j] >> 4) * d + m;
    }
  }
};

struct BlockQ5_0 {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float,
                               float* __restrict y) const noexcept {
    const uint32_t qh = LoadU32(b + 2);
    const uint8_t* qs = b + 6;
    for (size_t j = 0; j < kQk / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      y[j] = I2F(((qs[j] & 0x0F) | h0) - 16) * d;
      y[j + kQk / 2] = I2F(((qs[j] >> 4) | h1) - 16) * d;
    }
  }
};

struct BlockQ5_1 {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float m,
                               float* __restrict y) const noexcept {
    const uint32_t qh = LoadU32(b + 4);
    const uint8_t* qs = b + 8;
    for (size_t j = 0; j < kQk / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      y[j] = I2F((qs[j] & 0x0F) | h0) * d + m;
      y[j + kQk / 2] = I2F((qs[j] >> 4) | h1) * d + m;
    }
  }
};

struct BlockQ8_0 {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float,
                               float* __restrict y) const noexcept {
    const uint8_t* qs = b + 2;
    for (size_t j = 0; j < kQk; ++j) y[j] = I2F(static_cast<int8_t>(qs[j])) * d;
  }
};

// ---- K-quants

// The 6-bit scale and min of sub-block j of Q4_K/Q5_K (ggml's
// get_scale_min_k4): j < 4 in the low 6 bits of scales[j] and scales[j + 4];
// j ≥ 4 in the nibbles of scales[j + 4] with bits 4..5 in the top two bits of
// scales[j − 4] (scale) and scales[j] (min).
ALLOY_INLINE void ScaleMinK4(size_t j, const uint8_t* scales, int* sc, int* mn) noexcept {
  if (j < 4) {
    *sc = scales[j] & 63;
    *mn = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
    *mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// Q4_K: chunk c (64 outputs) reads qs[32c .. 32c+31]: low nibbles with
// sub-block 2c, then high nibbles with sub-block 2c+1.
struct BlockQ4_K {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float dmin,
                               float* __restrict y) const noexcept {
    const uint8_t* scales = b + 4;
    const uint8_t* qs = b + 16;
    for (size_t chunk = 0; chunk < 4; ++chunk) {
      int sc = 0;
      int mn = 0;
      ScaleMinK4(2 * chunk, scales, &sc, &mn);
      const float d1 = d * I2F(sc);
      const float m1 = dmin * I2F(mn);
      ScaleMinK4(2 * chunk + 1, scales, &sc, &mn);
      const float d2 = d * I2F(sc);
      const float m2 = dmin * I2F(mn);
      const uint8_t* q = qs + 32 * chunk;
      float* out = y + 64 * chunk;
      for (size_t l = 0; l < 32; ++l) out[l] = d1 * I2F(q[l] & 0x0F) - m1;
      for (size_t l = 0; l < 32; ++l) out[32 + l] = d2 * I2F(q[l] >> 4) - m2;
    }
  }
};

// Q5_K: as Q4_K, plus bit 2c (low half) or 2c+1 (high half) of qh[l] as 16.
struct BlockQ5_K {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float dmin,
                               float* __restrict y) const noexcept {
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48;
    for (size_t chunk = 0; chunk < 4; ++chunk) {
      int sc = 0;
      int mn = 0;
      ScaleMinK4(2 * chunk, scales, &sc, &mn);
      const float d1 = d * I2F(sc);
      const float m1 = dmin * I2F(mn);
      ScaleMinK4(2 * chunk + 1, scales, &sc, &mn);
      const float d2 = d * I2F(sc);
      const float m2 = dmin * I2F(mn);
      const uint8_t* ql = qs + 32 * chunk;
      const unsigned shift = static_cast<unsigned>(2 * chunk);
      float* out = y + 64 * chunk;
      for (size_t l = 0; l < 32; ++l) {
        const int hi = ((qh[l] >> shift) & 1) << 4;
        out[l] = d1 * I2F((ql[l] & 0x0F) + hi) - m1;
      }
      for (size_t l = 0; l < 32; ++l) {
        const int hi = ((qh[l] >> (shift + 1)) & 1) << 4;
        out[32 + l] = d2 * I2F((ql[l] >> 4) + hi) - m2;
      }
    }
  }
};

// Q6_K: half h (128 outputs) reads ql[64h..], qh[32h..] and scales[8h..];
// output 32k + l of the half (k = 0..3) takes the low (k = 0, 1) or high
// (k = 2, 3) nibble of ql[l + 32·(k & 1)] and bits 2k..2k+1 of qh[l], with
// scale index 2k + l/16. ggml computes d * sc * q left to right.
struct BlockQ6_K {
  ALLOY_INLINE void operator()(const uint8_t* __restrict b, float d, float,
                               float* __restrict y) const noexcept {
    float ds[16];
    for (size_t s = 0; s < 16; ++s) ds[s] = d * I2F(static_cast<int8_t>(b[192 + s]));
    for (size_t half = 0; half < 2; ++half) {
      const uint8_t* ql = b + 64 * half;
      const uint8_t* qh = b + 128 + 32 * half;
      const float* dh = ds + 8 * half;
      float* out = y + 128 * half;
      for (size_t sub = 0; sub < 2; ++sub) {
        const float s0 = dh[sub];
        const float s1 = dh[sub + 2];
        const float s2 = dh[sub + 4];
        const float s3 = dh[sub + 6];
        for (size_t l = 16 * sub; l < 16 * sub + 16; ++l) {
          const int q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
          const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
          const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          out[l] = s0 * I2F(q1);
          out[l + 32] = s1 * I2F(q2);
          out[l + 64] = s2 * I2F(q3);
          out[l + 96] = s3 * I2F(q4);
        }
      }
    }
  }
};

template <size_t kBytes, size_t kElems, size_t kDOffset, size_t kMOffset, typename Fn>
void DequantizeWith(std::span<const uint8_t> blocks, std::span<float> out, Fn fn) noexcept {
  const size_t n = std::min(blocks.size() / kBytes, out.size() / kElems);
  const uint8_t* src = blocks.data();
  float* dst = out.data();
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    ForEachBlock<kBytes, kElems, kDOffset, kMOffset>(src, dst, n, fn);
  });
}

constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;

ALLOY_INLINE uint32_t F32Bits(float x) noexcept { return std::bit_cast<uint32_t>(x); }
// All-ones when the condition holds. The helpers below use masks rather than
// ?: so that GCC if-converts and vectorizes them (as in convert.cc).
ALLOY_INLINE uint32_t MaskIf(bool c) noexcept { return 0u - static_cast<uint32_t>(c); }

// What ggml's `(int8_t)f` stores on x86-64: cvttss2si gives trunc(f) when
// |f| < 2^31 and 0x80000000 otherwise (NaN, ±inf, out of range), and the
// int8 is its low byte.
ALLOY_INLINE uint8_t TruncToByteLikeX86(float v) noexcept {
  const uint32_t in_range = MaskIf(std::fabs(v) < 2147483648.0f);
  const float s = std::bit_cast<float>(F32Bits(v) & in_range);
  return static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(s)) & in_range);
}

// The same for (int8_t)roundf(f): round half away from zero, from the
// truncation and the exact remainder f − trunc(f) (exact for every float).
ALLOY_INLINE uint8_t RoundToByteLikeX86(float v) noexcept {
  const uint32_t in_range = MaskIf(std::fabs(v) < 2147483648.0f);
  const float s = std::bit_cast<float>(F32Bits(v) & in_range);
  const int32_t t = static_cast<int32_t>(s);
  const float frac = s - static_cast<float>(t);
  const int32_t r = t + static_cast<int32_t>(frac >= 0.5f) - static_cast<int32_t>(frac <= -0.5f);
  return static_cast<uint8_t>(static_cast<uint32_t>(r) & in_range);
}

// Largest |x| bit pattern of a block, as an integer max (order-independent,
// so it vectorizes; |x| bits order like the values, inf included). Above
// kInfBits when the block holds a NaN.
ALLOY_INLINE uint32_t MaxAbsBits(const float* __restrict x) noexcept {
  uint32_t max_bits = 0;
  for (size_t j = 0; j < kQk; ++j) max_bits = std::max(max_bits, F32Bits(x[j]) & kAbsMask);
  return max_bits;
}

// ggml's Q8_0 amax: `amax = MAX(amax, fabsf(v))` in element order. Without
// NaN that is the plain maximum; a NaN makes it depend on the order (the
// running value becomes NaN, then the next |v|), so that case replays it.
ALLOY_INLINE float AmaxQ8_0(const float* __restrict x) noexcept {
  const uint32_t max_bits = MaxAbsBits(x);
  if (max_bits <= kInfBits) return std::bit_cast<float>(max_bits);
  float amax = 0.0f;
  for (size_t j = 0; j < kQk; ++j) {
    const float a = std::fabs(x[j]);
    amax = amax > a ? amax : a;
  }
  return amax;
}

// ggml's Q4_0 `max`: the first element whose |x| is largest, with its sign
// (`if (amax < fabsf(v))` skips NaN); +0 when every |x| is 0 or NaN.
ALLOY_INLINE float SignedMaxQ4_0(const float* __restrict x) noexcept {
  uint32_t max_bits = 0;
  for (size_t j = 0; j < kQk; ++j) {
    const uint32_t a = F32Bits(x[j]) & kAbsMask;
    max_bits = std::max(max_bits, a & MaskIf(a <= kInfBits));
  }
  if (max_bits == 0) return 0.0f;
  size_t j = 0;
  while ((F32Bits(x[j]) & kAbsMask) != max_bits) ++j;
  return x[j];
}

}  // namespace

QuantLayout LayoutOf(QuantKind k) noexcept {
  switch (k) {
    case QuantKind::kQ4_0:
      return {kQk, kQ4_0Bytes};
    case QuantKind::kQ4_1:
      return {kQk, kQ4_1Bytes};
    case QuantKind::kQ5_0:
      return {kQk, kQ5_0Bytes};
    case QuantKind::kQ5_1:
      return {kQk, kQ5_1Bytes};
    case QuantKind::kQ8_0:
      return {kQk, kQ8_0Bytes};
    case QuantKind::kQ4_K:
      return {kQkK, kQ4_KBytes};
    case QuantKind::kQ5_K:
      return {kQkK, kQ5_KBytes};
    case QuantKind::kQ6_K:
      return {kQkK, kQ6_KBytes};
  }
  return {0, 0};
}

void Dequantize(QuantKind k, std::span<const uint8_t> blocks, std::span<float> out) noexcept {
  switch (k) {
    case QuantKind::kQ4_0:
      return DequantizeWith<kQ4_0Bytes, kQk, 0, kNoField>(blocks, out, BlockQ4_0{});
    case QuantKind::kQ4_1:
      return DequantizeWith<kQ4_1Bytes, kQk, 0, 2>(blocks, out, BlockQ4_1{});
    case QuantKind::kQ5_0:
      return DequantizeWith<kQ5_0Bytes, kQk, 0, kNoField>(blocks, out, BlockQ5_0{});
    case QuantKind::kQ5_1:
      return DequantizeWith<kQ5_1Bytes, kQk, 0, 2>(blocks, out, BlockQ5_1{});
    case QuantKind::kQ8_0:
      return DequantizeWith<kQ8_0Bytes, kQk, 0, kNoField>(blocks, out, BlockQ8_0{});
    case QuantKind::kQ4_K:
      return DequantizeWith<kQ4_KBytes, kQkK, 0, 2>(blocks, out, BlockQ4_K{});
    case QuantKind::kQ5_K:
      return DequantizeWith<kQ5_KBytes, kQkK, 0, 2>(blocks, out, BlockQ5_K{});
    case QuantKind::kQ6_K:
      return DequantizeWith<kQ6_KBytes, kQkK, 208, kNoField>(blocks, out, BlockQ6_K{});
  }
}

void QuantizeQ8_0(std::span<const float> in, std::span<uint8_t> out) noexcept {
  const size_t n = std::min(in.size() / kQk, out.size() / kQ8_0Bytes);
  const float* src = in.data();
  uint8_t* dst = out.data();
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    for (size_t block_idx = 0; block_idx < n; ++block_idx) {
      const float* __restrict x = src + block_idx * kQk;
      uint8_t* __restrict b = dst + block_idx * kQ8_0Bytes;
      const float d = AmaxQ8_0(x) / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      StoreU16(b, F32ToF16(d));
      for (size_t j = 0; j < kQk; ++j) b[2 + j] = RoundToByteLikeX86(x[j] * id);
    }
  });
}

void QuantizeQ4_0(std::span<const float> in, std::span<uint8_t> out) noexcept {
  const size_t n = std::min(in.size() / kQk, out.size() / kQ4_0Bytes);
  const float* src = in.data();
  uint8_t* dst = out.data();
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    for (size_t block_idx = 0; block_idx < n; ++block_idx) {
      const float* __restrict x = src + block_idx * kQk;
      uint8_t* __restrict b = dst + block_idx * kQ4_0Bytes;
      const float d = SignedMaxQ4_0(x) / -8.0f;  // -0 for an all-zero block, as in ggml
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      StoreU16(b, F32ToF16(d));
      // ggml: uint8_t xi = MIN(15, (int8_t)(x·id + 8.5f)); qs = xi0 | xi1 << 4
      // (the MIN compares the signed int8).
      for (size_t j = 0; j < kQk / 2; ++j) {
        const int q0 = std::min(15, int{static_cast<int8_t>(TruncToByteLikeX86(x[j] * id + 8.5f))});
        const int q1 =
            std::min(15, int{static_cast<int8_t>(TruncToByteLikeX86(x[j + kQk / 2] * id + 8.5f))});
        b[2 + j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
      }
    }
  });
}

}  // namespace alloy::kernels
