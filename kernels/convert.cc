// Element codecs. Every conversion is integer-exact: values are rounded by
// bit manipulation (round to nearest, ties to even), never by the FPU, so the
// results do not depend on the rounding mode, FTZ/DAZ or -ffast-math. The only
// floating-point operations are exact ones: small integer → float/double,
// multiplication by a power of two with a normal result, and (EncodeI64) the
// truncating float → int64 cast of a value that is already an integer.
//
// Choices documented here (the header states the general policy):
// * bf16 NaN: keeps sign and top payload, sets the quiet bit ((bits >> 16) | 0x40),
//   as ggml does. Finite |x| ≥ 0x7F7F8000 overflows to ±inf (n_overflow).
// * f16 NaN: sign | 0x7E00. |x| ≥ 65520 (0x477FF000) overflows. With
//   Overflow::kToInf, finite inputs that become ±inf are counted in n_overflow;
//   with Overflow::kSaturate they become ±65504 (0x7BFF) and are counted in
//   n_clamped. An infinite input stays ±inf in both modes (it is representable
//   and is not a finite value that overflowed).
// * FP8 always saturates. An input is clamped (and counted in n_clamped) when
//   its unbounded RNE rounding would exceed the max finite value, i.e. when
//   |x| > 464 for E4M3FN (464 is a tie that goes to the even 448) and
//   |x| ≥ 61440 for E5M2 (that tie goes up). ±inf saturates too and is counted
//   in n_clamped. NaN → 0x7F | sign for both formats (0x7F is the only NaN of
//   E4M3FN and a quiet NaN of E5M2; PyTorch produces the same codes).
// * DecodeF64 is an RNE cast: |x| ≥ FLT_MAX + ulp/2 (incl. inf) → ±inf, tiny
//   values round to an f32 subnormal or (signed) zero, NaN keeps the sign and
//   the top 22 payload bits and gets the quiet bit (what x86 cvtsd2ss does).
// * EncodeF64 is exact; NaN payloads are kept bit for bit (no quieting).
// * Integer encoders: RNE by bit manipulation (no nearbyint/rint); results out
//   of range saturate to the type's min/max and are counted in n_clamped. An
//   input counts as clamped only when its *rounded* value is out of range
//   (-0.4 → 0 in U8 is not counted, -0.6 is; 127.5 → 128 is clamped in I8).
//   NaN → 0, counted in n_nan.
// * DecodeI32 goes through double (exact) and the f64 → f32 RNE cast; DecodeI64
//   rounds the 64-bit magnitude directly. Both are exact RNE.
// * Spans must not overlap (the loops use __restrict); in-place (in == out) is
//   not supported either.
//
// Performance: the loops are branch-free (masks and bitwise selects instead of
// ?:, so GCC neither rebuilds branches nor refuses to if-convert) and GCC
// auto-vectorizes them. Each span function is compiled for x86-64-v4
// (AVX-512), x86-64-v3 (AVX2) and the baseline, and picks one at run time
// (__builtin_cpu_supports, checked once). The baseline has no per-lane variable
// shifts, so its f16/FP8 encoders use a shift-free subnormal path
// (RoundMagnitude<..., false>); both paths give identical bits.
#include "kernels/convert.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/isa_dispatch.h"

#ifdef ALLOY_ISA_DISPATCH
#include <immintrin.h>
#endif

namespace alloy::kernels {
namespace {

using isa::Dispatch;

constexpr uint32_t kF32AbsMask = 0x7FFFFFFFu;
constexpr uint32_t kF32Inf = 0x7F800000u;

// Stats are counted in 32-bit lanes per block (vectorizes well), then widened.
constexpr size_t kStatsBlock = size_t{1} << 16;

ALLOY_INLINE uint32_t F32Bits(float x) noexcept { return std::bit_cast<uint32_t>(x); }
ALLOY_INLINE float BitsF32(uint32_t b) noexcept { return std::bit_cast<float>(b); }

// The kernels below are written with masks instead of ?: so that GCC neither
// turns them into branches (jump threading) nor refuses to if-convert them:
// every lane computes every candidate and picks one with bitwise selects.

// All-ones when a < b. Both operands must be < 2^(bits-1) (signed compares
// vectorize best on AVX2).
ALLOY_INLINE uint32_t MaskLt(uint32_t a, uint32_t b) noexcept {
  return 0u - static_cast<uint32_t>(static_cast<int32_t>(a) < static_cast<int32_t>(b));
}
ALLOY_INLINE uint64_t MaskLt(uint64_t a, uint64_t b) noexcept {
  return uint64_t{0} - static_cast<uint64_t>(static_cast<int64_t>(a) < static_cast<int64_t>(b));
}
// All-ones when a < b, any unsigned values.
template <typename U>
ALLOY_INLINE U MaskLtU(U a, U b) noexcept {
  return static_cast<U>(U{0} - static_cast<U>(a < b));
}
template <typename U>
ALLOY_INLINE U Sel(U mask, U if_set, U if_clear) noexcept {
  return static_cast<U>((if_set & mask) | (if_clear & ~mask));
}

// v / 2^s rounded to nearest, ties to even; 1 ≤ s and v + 2^(s-1) must fit in U.
template <typename U>
ALLOY_INLINE U ShiftRne(U v, U s) noexcept {
  return static_cast<U>((v + ((U{1} << (s - 1)) - 1) + ((v >> s) & 1)) >> s);
}

// v << t for 0 ≤ t ≤ kMaxT < 32, as constant shifts selected by the bits of t.
template <int kMaxT>
ALLOY_INLINE uint32_t ShiftLeftSmall(uint32_t v, uint32_t t) noexcept {
  static_assert(kMaxT > 0 && kMaxT < 32);
  v = Sel(0u - (t & 1u), v << 1, v);
  if constexpr (kMaxT >= 2) v = Sel(0u - ((t >> 1) & 1u), v << 2, v);
  if constexpr (kMaxT >= 4) v = Sel(0u - ((t >> 2) & 1u), v << 4, v);
  if constexpr (kMaxT >= 8) v = Sel(0u - ((t >> 3) & 1u), v << 8, v);
  if constexpr (kMaxT >= 16) v = Sel(0u - ((t >> 4) & 1u), v << 16, v);
  return v;
}

// Rounds the magnitude bits `a` of a finite f32 to a narrower binary float
// (kDstMant mantissa bits, bias kDstBias) with RNE, including the destination's
// subnormals. Returns the destination magnitude bits; a carry into the
// exponent is correct. The caller handles overflow and NaN (the value computed
// for them is discarded).
//
// Below the smallest normal, the result is RNE(m · 2^(e - kSub)) for the
// 24-bit significand m and biased exponent e: m shifted right by kSub - e,
// which is ≥ kShift + 1 there; 25 places or more always give 0.
// kVarShift = true does this with a per-lane variable shift (AVX2 and up).
// kVarShift = false (SSE2 has no per-lane shifts, so that loop would not
// vectorize) shifts m left by t = e - (kSub - 25) ∈ [0, kDstMant + 1] with
// constant shifts selected by the bits of t, then right by the constant 25.
// Where that could overflow 32 bits, kDrop low bits are first folded into a
// sticky bit, which stays below the rounding bit, so RNE is unchanged.
template <int kDstMant, int kDstBias, bool kVarShift>
ALLOY_INLINE uint32_t RoundMagnitude(uint32_t a) noexcept {
  constexpr int kShift = 23 - kDstMant;
  constexpr uint32_t kRebias = uint32_t{127 - kDstBias} << 23;
  constexpr uint32_t kMinNormal = uint32_t{127 - kDstBias + 1} << 23;
  constexpr int32_t kSub = 151 - kDstMant - kDstBias;
  const uint32_t normal =
      (a - kRebias + ((1u << (kShift - 1)) - 1) + ((a >> kShift) & 1u)) >> kShift;
  const int32_t e = static_cast<int32_t>(a >> 23);
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  uint32_t sub = 0;
  if constexpr (kVarShift) {
    const int32_t s = std::min(std::max(kSub - e, 1), 25);
    sub = ShiftRne<uint32_t>(m, static_cast<uint32_t>(s));
  } else {
    constexpr int32_t kMaxT = kDstMant + 1;
    constexpr int kDrop = std::max(0, 24 + kMaxT - 31);
    constexpr int kFinal = 25 - kDrop;
    const int32_t t = std::min(std::max(e - (kSub - 25), 0), kMaxT);
    uint32_t v = m;
    if constexpr (kDrop > 0) {
      v = (m >> kDrop) | (MaskLt(0u, m & ((1u << kDrop) - 1)) & 1u);
    }
    v = ShiftLeftSmall<kMaxT>(v, static_cast<uint32_t>(t));
    sub = (v + ((1u << (kFinal - 1)) - 1) + ((v >> kFinal) & 1u)) >> kFinal;
  }
  return Sel(MaskLt(a, kMinNormal), sub, normal);
}

// ---- per-element kernels on bit patterns ----

ALLOY_INLINE uint32_t EncodeBf16Bits(uint32_t bits) noexcept {
  const uint32_t a = bits & kF32AbsMask;
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t nan = (bits >> 16) | 0x40u;
  return Sel(MaskLt(kF32Inf, a), nan, rounded);
}

// `over` = 1 when a finite input overflowed (kToInf) or was clamped (kSaturate).
template <bool kSaturate, bool kVarShift>
ALLOY_INLINE uint32_t EncodeF16Bits(uint32_t bits, uint32_t& over) noexcept {
  constexpr uint32_t kOverflow = 0x477FF000u;  // 65520
  const uint32_t a = bits & kF32AbsMask;
  const uint32_t sign = (bits >> 16) & 0x8000u;
  uint32_t r = RoundMagnitude<10, 15, kVarShift>(a);
  const uint32_t big = ~MaskLt(a, kOverflow);
  const uint32_t finite_over = big & MaskLt(a, kF32Inf);
  r = Sel(big, 0x7C00u, r);
  if constexpr (kSaturate) r = Sel(finite_over, 0x7BFFu, r);
  r = Sel(MaskLt(kF32Inf, a), 0x7E00u, r);
  over = finite_over & 1u;
  return sign | r;
}

template <bool kVarShift>
ALLOY_INLINE uint32_t EncodeF8E4M3Bits(uint32_t bits, uint32_t& over) noexcept {
  constexpr uint32_t kClampAbove = 0x43E80000u;  // 464: ties down to 448
  const uint32_t a = bits & kF32AbsMask;
  const uint32_t sign = (bits >> 24) & 0x80u;
  uint32_t r = RoundMagnitude<3, 7, kVarShift>(a);
  const uint32_t clamped = MaskLt(kClampAbove, a) & MaskLt(a, kF32Inf + 1);
  r = Sel(clamped, 0x7Eu, r);
  r = Sel(MaskLt(kF32Inf, a), 0x7Fu, r);
  over = clamped & 1u;
  return sign | r;
}

template <bool kVarShift>
ALLOY_INLINE uint32_t EncodeF8E5M2Bits(uint32_t bits, uint32_t& over) noexcept {
  constexpr uint32_t kClampFrom = 0x47700000u;  // 61440: ties up past 57344
  const uint32_t a = bits & kF32AbsMask;
  const uint32_t sign = (bits >> 24) & 0x80u;
  uint32_t r = RoundMagnitude<2, 15, kVarShift>(a);
  const uint32_t clamped = ~MaskLt(a, kClampFrom) & MaskLt(a, kF32Inf + 1);
  r = Sel(clamped, 0x7Bu, r);
  r = Sel(MaskLt(kF32Inf, a), 0x7Fu, r);
  over = clamped & 1u;
  return sign | r;
}

// f16 bits (in the low 16 bits) → f32 bits. Exact; NaN payload << 13.
ALLOY_INLINE uint32_t F16ToF32Bits(uint32_t h) noexcept {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;
  const uint32_t normal = (em << 13) + (112u << 23);
  const uint32_t special = normal + (112u << 23);  // e = 31: inf / NaN
  // Subnormal m·2^-24: int → float and the power-of-two scaling are exact and
  // the result is a normal f32, so neither rounding mode nor FTZ/DAZ matter.
  // (Computed for every lane; only used when em < 0x400.)
  const uint32_t sub = F32Bits(static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f);
  const uint32_t r = Sel(MaskLt(em, 0x400u), sub, Sel(MaskLt(em, 0x7C00u), normal, special));
  return sign | r;
}

// f64 bits → f32 bits, RNE. Variable shifts stay on 32-bit lanes (GCC does not
// vectorize 64-bit shifts by computed amounts), so the subnormal path first
// drops 28 low significand bits into a sticky bit: every f32-subnormal result
// shifts the significand right by ≥ 30, so the sticky bit stays below the
// rounding bit and RNE is unchanged.
ALLOY_INLINE uint32_t F64ToF32Bits(uint64_t bits) noexcept {
  constexpr uint64_t kAbsMask = 0x7FFFFFFFFFFFFFFFull;
  constexpr uint64_t kInf = 0x7FF0000000000000ull;
  constexpr uint64_t kOverflow = 0x47EFFFFFF0000000ull;  // FLT_MAX + ulp/2
  constexpr uint64_t kRebias = uint64_t{1023 - 127} << 52;
  constexpr uint64_t kMinNormal = uint64_t{1023 - 127 + 1} << 52;  // 2^-126
  constexpr uint64_t kMant = (uint64_t{1} << 52) - 1;
  const uint64_t a = bits & kAbsMask;
  const uint32_t sign = static_cast<uint32_t>(bits >> 32) & 0x80000000u;
  // Normal: rebias, round 52 → 23 mantissa bits (valid when a ≥ kMinNormal
  // and below kOverflow, where the result fits in 31 bits).
  const uint32_t normal = static_cast<uint32_t>(
      (a - kRebias + ((uint64_t{1} << 28) - 1) + ((a >> 29) & 1)) >> 29);
  // Subnormal: result = RNE(m · 2^(e - 926)) with the 53-bit significand m.
  const uint64_t m = (a & kMant) | (kMant + 1);
  const uint32_t m_sticky = static_cast<uint32_t>(m >> 28) |
                            static_cast<uint32_t>(MaskLt(uint64_t{0}, m & 0xFFFFFFFu) & 1u);
  const int32_t e = static_cast<int32_t>(a >> 52);
  const uint32_t s = static_cast<uint32_t>(std::min(std::max(926 - 28 - e, 2), 26));
  const uint32_t sub = ShiftRne<uint32_t>(m_sticky, s);
  uint32_t r = Sel(static_cast<uint32_t>(MaskLt(a, kMinNormal)), sub, normal);
  r = Sel(static_cast<uint32_t>(~MaskLt(a, kOverflow)), kF32Inf, r);
  const uint32_t nan = 0x7FC00000u | static_cast<uint32_t>((a >> 29) & 0x7FFFFFu);
  r = Sel(static_cast<uint32_t>(MaskLt(kInf, a)), nan, r);
  return sign | r;
}

// Signed 64-bit integer → f32 bits, RNE.
ALLOY_INLINE uint32_t I64ToF32Bits(int64_t v) noexcept {
  const uint64_t neg = uint64_t{0} - static_cast<uint64_t>(v < 0);
  const uint64_t u = (static_cast<uint64_t>(v) ^ neg) - neg;  // |v|, also for INT64_MIN
  const int msb = 63 - std::countl_zero(u | 1u);
  const uint64_t left = u << std::max(23 - msb, 0);
  const uint64_t right = ShiftRne<uint64_t>(u, static_cast<uint64_t>(std::max(msb - 23, 1)));
  const uint64_t m = msb <= 23 ? left : right;
  // m includes the implicit bit (2^23), or is 2^24 after a rounding carry.
  const uint32_t mag = (static_cast<uint32_t>(msb + 126) << 23) + static_cast<uint32_t>(m);
  const uint32_t sign = static_cast<uint32_t>(neg) & 0x80000000u;
  return u == 0 ? 0u : (sign | mag);
}

// |x| < 2^23 given as magnitude bits → RNE(|x|) (at most 2^23). Larger
// magnitudes give garbage the callers discard.
ALLOY_INLINE uint32_t RoundSmallMagnitude(uint32_t a) noexcept {
  const int32_t e = static_cast<int32_t>(a >> 23);
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;  // value = m · 2^(e - 150)
  return ShiftRne<uint32_t>(m, static_cast<uint32_t>(std::min(std::max(150 - e, 1), 25)));
}

// f32 bits → integer T (up to 32 bits) with RNE and saturation. `over` = 1 when
// the rounded value was out of range (NaN excluded).
template <typename T>
ALLOY_INLINE T EncodeIntBits(uint32_t bits, uint32_t& over) noexcept {
  static_assert(sizeof(T) <= 4);
  constexpr uint32_t kBig = 0x4F800000u;  // 2^32: |x| beyond any 32-bit range
  constexpr uint32_t kMax = static_cast<uint32_t>(std::numeric_limits<T>::max());
  constexpr uint32_t kMin = static_cast<uint32_t>(std::numeric_limits<T>::min());
  constexpr uint32_t kNegLimit = 0u - kMin;  // largest magnitude allowed for x < 0

  const uint32_t a = bits & kF32AbsMask;
  const uint32_t neg = 0u - (bits >> 31);
  const uint32_t nan = MaskLt(kF32Inf, a);
  // |x| ≥ 2^23 is an integer: m << (e - 150), at most 8 places below kBig.
  const int32_t e = static_cast<int32_t>(a >> 23);
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t large = m << std::min(std::max(e - 150, 0), 8);
  const uint32_t q = Sel(MaskLt(a, 0x4B000000u), RoundSmallMagnitude(a), large);
  const uint32_t big = ~MaskLt(a, kBig);
  const uint32_t clamped = (big | MaskLtU(Sel(neg, kNegLimit, kMax), q)) & ~nan;
  uint32_t v = Sel(neg, 0u - q, q);
  v = Sel(clamped, Sel(neg, kMin, kMax), v);
  v &= ~nan;
  over = clamped & 1u;
  return static_cast<T>(v);
}

// f32 bits → int64 with RNE and saturation. |x| ≥ 2^23 is an integer, so it is
// converted exactly by the (truncating, mode-independent) float → int64 cast,
// guarded to |x| < 2^63 so the cast is always defined.
ALLOY_INLINE int64_t EncodeI64Bits(uint32_t bits, uint32_t& over) noexcept {
  constexpr uint32_t k2Pow63 = 0x5F000000u;
  const uint32_t a = bits & kF32AbsMask;
  const uint64_t neg = uint64_t{0} - (bits >> 31);
  const uint32_t nan = MaskLt(kF32Inf, a);
  const uint32_t big = ~MaskLt(a, k2Pow63);  // incl. inf and NaN
  const uint64_t large =
      static_cast<uint64_t>(static_cast<int64_t>(BitsF32(a & ~big)));
  const uint64_t q = Sel(uint64_t{0} - (MaskLt(a, 0x4B000000u) & 1u),
                         uint64_t{RoundSmallMagnitude(a)}, large);
  uint64_t v = Sel(neg, uint64_t{0} - q, q);
  const uint64_t big64 = uint64_t{0} - (big & 1u);
  v = Sel(big64, Sel(neg, uint64_t{0x8000000000000000ull}, uint64_t{0x7FFFFFFFFFFFFFFFull}), v);
  v &= ~(uint64_t{0} - (nan & 1u));
  // -2^63 is exact, not clamped.
  const uint32_t exact_min = (0u - (bits == 0xDF000000u ? 1u : 0u));
  over = big & ~nan & ~exact_min & 1u;
  return static_cast<int64_t>(v);
}

// ---- FP8 decode tables ----

constexpr float DecodeE4M3Const(uint32_t b) {
  const uint32_t sign = (b & 0x80u) << 24;
  const uint32_t e = (b >> 3) & 15u;
  const uint32_t m = b & 7u;
  uint32_t bits = 0;
  if (e == 15 && m == 7) {
    bits = 0x7FC00000u;
  } else if (e == 0) {
    bits = std::bit_cast<uint32_t>(static_cast<float>(m) * 0x1p-9f);
  } else {
    bits = ((e + 120u) << 23) | (m << 20);
  }
  return std::bit_cast<float>(sign | bits);
}

constexpr float DecodeE5M2Const(uint32_t b) {
  // E5M2 is the high byte of an f16.
  const uint32_t h = b << 8;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 31u;
  const uint32_t m = h & 0x3FFu;
  uint32_t bits = 0;
  if (e == 31) {
    bits = 0x7F800000u | (m << 13);
  } else if (e == 0) {
    bits = std::bit_cast<uint32_t>(static_cast<float>(m) * 0x1p-24f);
  } else {
    bits = ((e + 112u) << 23) | (m << 13);
  }
  return std::bit_cast<float>(sign | bits);
}

template <float (*kDecode)(uint32_t)>
constexpr std::array<float, 256> MakeTable() {
  std::array<float, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) t[i] = kDecode(i);
  return t;
}

constexpr std::array<float, 256> kE4M3Table = MakeTable<DecodeE4M3Const>();
constexpr std::array<float, 256> kE5M2Table = MakeTable<DecodeE5M2Const>();

// ---- loop drivers ----

ALLOY_INLINE void AddStats(EncodeStats* stats, uint64_t EncodeStats::*over_field,
                           uint64_t n_over, uint64_t n_nan, uint32_t max_bits) noexcept {
  if (stats == nullptr) return;
  stats->*over_field += n_over;
  stats->n_nan += n_nan;
  stats->max_abs_finite = std::max(stats->max_abs_finite, BitsF32(max_bits));
}

// out[i] = kernel(to_bits(in[i]), over); counts over/NaN and max |x| (on the
// f32 bits returned by to_bits) into stats.
template <typename In, typename Out, typename ToBits, typename Kernel>
ALLOY_INLINE void EncodeLoop(const In* __restrict in, Out* __restrict out, size_t n,
                             EncodeStats* stats, uint64_t EncodeStats::*over_field,
                             ToBits to_bits, Kernel kernel) noexcept {
  uint64_t n_over = 0;
  uint64_t n_nan = 0;
  uint32_t max_bits = 0;
  for (size_t base = 0; base < n; base += kStatsBlock) {
    const size_t len = std::min(kStatsBlock, n - base);
    const In* __restrict src = in + base;
    Out* __restrict dst = out + base;
    uint32_t b_over = 0;
    uint32_t b_nan = 0;
    uint32_t b_max = 0;
    for (size_t i = 0; i < len; ++i) {
      const uint32_t bits = to_bits(src[i]);
      const uint32_t a = bits & kF32AbsMask;
      uint32_t over = 0;
      dst[i] = static_cast<Out>(kernel(bits, over));
      b_over += over;
      b_nan += MaskLt(kF32Inf, a) & 1u;
      // Max over finite |x| on the bits (monotonic for non-negative floats);
      // written as a mask so GCC sees a plain MAX reduction.
      b_max = std::max(b_max, a & MaskLt(a, kF32Inf));
    }
    n_over += b_over;
    n_nan += b_nan;
    max_bits = std::max(max_bits, b_max);
  }
  AddStats(stats, over_field, n_over, n_nan, max_bits);
}

template <typename In, typename Out, typename Fn>
ALLOY_INLINE void MapLoop(const In* __restrict in, Out* __restrict out, size_t n,
                          Fn fn) noexcept {
  for (size_t i = 0; i < n; ++i) out[i] = fn(in[i]);
}

struct FromF32 {
  ALLOY_INLINE uint32_t operator()(float x) const noexcept { return F32Bits(x); }
};
struct FromBf16 {
  ALLOY_INLINE uint32_t operator()(uint16_t b) const noexcept { return uint32_t{b} << 16; }
};
struct FromF16 {
  ALLOY_INLINE uint32_t operator()(uint16_t h) const noexcept { return F16ToF32Bits(h); }
};

// float64 → float32 bits rounded to odd. The hardware conversion rounds to
// nearest even (MXCSR is never changed here); an inexact result is moved to
// the neighbour towards zero when RNE went away from zero, and its last bit
// set. NaN compares unequal to itself but counts as exact (x == x is false),
// so it passes through quieted.
struct FromF64RoundToOdd {
  ALLOY_INLINE uint32_t operator()(double x) const noexcept {
    const float f = static_cast<float>(x);
    const double back = static_cast<double>(f);
    const uint32_t inexact = static_cast<uint32_t>(back != x) & static_cast<uint32_t>(x == x);
    const uint32_t away = static_cast<uint32_t>(std::fabs(back) > std::fabs(x));
    return (F32Bits(f) - (inexact & away)) | inexact;
  }
};

struct Bf16Kernel {
  ALLOY_INLINE uint32_t operator()(uint32_t bits, uint32_t& over) const noexcept {
    const uint32_t a = bits & kF32AbsMask;
    over = ~MaskLt(a, 0x7F7F8000u) & MaskLt(a, kF32Inf) & 1u;
    return EncodeBf16Bits(bits);
  }
};
template <bool kSaturate, bool kVarShift>
struct F16Kernel {
  ALLOY_INLINE uint32_t operator()(uint32_t bits, uint32_t& over) const noexcept {
    return EncodeF16Bits<kSaturate, kVarShift>(bits, over);
  }
};
template <bool kVarShift>
struct E4M3Kernel {
  ALLOY_INLINE uint32_t operator()(uint32_t bits, uint32_t& over) const noexcept {
    return EncodeF8E4M3Bits<kVarShift>(bits, over);
  }
};
template <bool kVarShift>
struct E5M2Kernel {
  ALLOY_INLINE uint32_t operator()(uint32_t bits, uint32_t& over) const noexcept {
    return EncodeF8E5M2Bits<kVarShift>(bits, over);
  }
};
template <typename T>
struct IntKernel {
  ALLOY_INLINE T operator()(uint32_t bits, uint32_t& over) const noexcept {
    return EncodeIntBits<T>(bits, over);
  }
};
struct I64Kernel {
  ALLOY_INLINE int64_t operator()(uint32_t bits, uint32_t& over) const noexcept {
    return EncodeI64Bits(bits, over);
  }
};

template <bool kVarShift, typename In, typename ToBits>
ALLOY_INLINE void EncodeF16Loop(const In* in, uint16_t* out, size_t n, Overflow overflow,
                                EncodeStats* stats, ToBits to_bits) noexcept {
  if (overflow == Overflow::kSaturate) {
    EncodeLoop(in, out, n, stats, &EncodeStats::n_clamped, to_bits,
               F16Kernel<true, kVarShift>{});
  } else {
    EncodeLoop(in, out, n, stats, &EncodeStats::n_overflow, to_bits,
               F16Kernel<false, kVarShift>{});
  }
}

}  // namespace

// ---- scalar codecs ----

float Bf16ToF32(uint16_t bits) noexcept { return BitsF32(uint32_t{bits} << 16); }

uint16_t F32ToBf16(float x) noexcept {
  return static_cast<uint16_t>(EncodeBf16Bits(F32Bits(x)));
}

float F16ToF32(uint16_t bits) noexcept { return BitsF32(F16ToF32Bits(bits)); }

uint16_t F32ToF16(float x) noexcept {
  uint32_t over = 0;
  return static_cast<uint16_t>(EncodeF16Bits<false, true>(F32Bits(x), over));
}

float F8E4M3ToF32(uint8_t bits) noexcept { return kE4M3Table[bits]; }

uint8_t F32ToF8E4M3(float x) noexcept {
  uint32_t over = 0;
  return static_cast<uint8_t>(EncodeF8E4M3Bits<true>(F32Bits(x), over));
}

float F8E5M2ToF32(uint8_t bits) noexcept { return kE5M2Table[bits]; }

uint8_t F32ToF8E5M2(float x) noexcept {
  uint32_t over = 0;
  return static_cast<uint8_t>(EncodeF8E5M2Bits<true>(F32Bits(x), over));
}

// ---- span decoders ----

void DecodeBf16(std::span<const uint16_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](uint16_t b) ALLOY_LAMBDA_INLINE { return BitsF32(uint32_t{b} << 16); });
  });
}

void DecodeF16(std::span<const uint16_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](uint16_t h) ALLOY_LAMBDA_INLINE { return BitsF32(F16ToF32Bits(h)); });
  });
}

void DecodeF8E4M3(std::span<const uint8_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](uint8_t b) ALLOY_LAMBDA_INLINE { return kE4M3Table[b]; });
  });
}

void DecodeF8E5M2(std::span<const uint8_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](uint8_t b) ALLOY_LAMBDA_INLINE { return kE5M2Table[b]; });
  });
}

void DecodeF64(std::span<const double> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    // Hardware conversion: IEEE round to nearest even (MXCSR is never changed).
    MapLoop(in.data(), out.data(), in.size(),
            [](double x) ALLOY_LAMBDA_INLINE { return static_cast<float>(x); });
  });
}

void NarrowF64RoundToOdd(std::span<const double> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](double x) ALLOY_LAMBDA_INLINE { return BitsF32(FromF64RoundToOdd{}(x)); });
  });
}

void DecodeI8(std::span<const int8_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](int8_t v) ALLOY_LAMBDA_INLINE { return static_cast<float>(v); });
  });
}

void DecodeU8(std::span<const uint8_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](uint8_t v) ALLOY_LAMBDA_INLINE { return static_cast<float>(v); });
  });
}

void DecodeI16(std::span<const int16_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](int16_t v) ALLOY_LAMBDA_INLINE { return static_cast<float>(v); });
  });
}

void DecodeI32(std::span<const int32_t> in, std::span<float> out) noexcept {
  // int32 → double is exact; the f64 → f32 step rounds (RNE) integer-exactly.
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(), [](int32_t v) ALLOY_LAMBDA_INLINE {
      return BitsF32(F64ToF32Bits(std::bit_cast<uint64_t>(static_cast<double>(v))));
    });
  });
}

void DecodeI64(std::span<const int64_t> in, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(),
            [](int64_t v) ALLOY_LAMBDA_INLINE { return BitsF32(I64ToF32Bits(v)); });
  });
}

// ---- span encoders ----

void EncodeBf16(std::span<const float> in, std::span<uint16_t> out,
                EncodeStats* stats) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_overflow, FromF32{},
               Bf16Kernel{});
  });
}

void EncodeF16(std::span<const float> in, std::span<uint16_t> out, Overflow overflow,
               EncodeStats* stats) noexcept {
  Dispatch([&](auto var_shift) ALLOY_LAMBDA_INLINE {
    EncodeF16Loop<decltype(var_shift)::value>(in.data(), out.data(), in.size(), overflow,
                                              stats, FromF32{});
  });
}

#ifdef ALLOY_ISA_DISPATCH
namespace {

// GCC 12's avx512fintrin.h reads an "undefined" vector in the masked
// conversion, which -Wmaybe-uninitialized reports at every use.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// EncodeBf16FromF64 for AVX-512, 16 values per step, bit-identical to the
// generic loop: the truncating conversion (embedded rounding, MXCSR
// untouched) plus the sticky bit is round-to-odd, then Bf16Kernel's RNE and
// NaN rule, and the same stats. Returns how many leading values it did.
__attribute__((target("avx512f"))) size_t EncodeBf16FromF64Avx512(
    const double* in, uint16_t* out, size_t n, uint64_t* n_over, uint64_t* n_nan,
    uint32_t* max_bits) noexcept {
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i abs_mask = _mm512_set1_epi32(static_cast<int>(kF32AbsMask));
  const __m512i inf = _mm512_set1_epi32(static_cast<int>(kF32Inf));
  const __m512i round_bias = _mm512_set1_epi32(0x7FFF);
  const __m512i over_min = _mm512_set1_epi32(0x7F7F8000);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  __m512i vmax = _mm512_setzero_si512();
  uint64_t over = 0, nan = 0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512d x0 = _mm512_loadu_pd(in + i);
    const __m512d x1 = _mm512_loadu_pd(in + i + 8);
    const __m256 t0 = _mm512_cvt_roundpd_ps(x0, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 t1 = _mm512_cvt_roundpd_ps(x1, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    // Inexact: the truncation differs from x (ordered compare: NaN is exact).
    const __mmask8 i0 = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t0), x0, _CMP_NEQ_OQ);
    const __mmask8 i1 = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t1), x1, _CMP_NEQ_OQ);
    const __mmask16 inexact = static_cast<__mmask16>(i0 | (i1 << 8));
    __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_castps_si256(t0)),
                                      _mm256_castps_si256(t1), 1);
    bits = _mm512_mask_or_epi32(bits, inexact, bits, one);
    const __m512i a = _mm512_and_si512(bits, abs_mask);
    const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(a, inf);
    const __mmask16 finite = _mm512_cmplt_epu32_mask(a, inf);
    const __mmask16 overflow = _mm512_mask_cmpge_epu32_mask(finite, a, over_min);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, round_bias), lsb), 16);
    r = _mm512_mask_or_epi32(r, is_nan, _mm512_srli_epi32(bits, 16), quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(r));
    vmax = _mm512_mask_max_epu32(vmax, finite, vmax, a);
    over += static_cast<uint64_t>(__builtin_popcount(overflow));
    nan += static_cast<uint64_t>(__builtin_popcount(is_nan));
  }
  *n_over += over;
  *n_nan += nan;
  *max_bits = std::max(*max_bits, _mm512_reduce_max_epu32(vmax));
  return i;
}

#pragma GCC diagnostic pop

}  // namespace
#endif

void EncodeBf16FromF64(std::span<const double> in, std::span<uint16_t> out,
                       EncodeStats* stats) noexcept {
  size_t done = 0;
#ifdef ALLOY_ISA_DISPATCH
  if (isa::CurrentIsa() == isa::kIsaAvx512) {
    uint64_t n_over = 0, n_nan = 0;
    uint32_t max_bits = 0;
    done = EncodeBf16FromF64Avx512(in.data(), out.data(), in.size(), &n_over, &n_nan, &max_bits);
    AddStats(stats, &EncodeStats::n_overflow, n_over, n_nan, max_bits);
  }
#endif
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data() + done, out.data() + done, in.size() - done, stats,
               &EncodeStats::n_overflow, FromF64RoundToOdd{}, Bf16Kernel{});
  });
}

void EncodeF16FromF64(std::span<const double> in, std::span<uint16_t> out, Overflow overflow,
                      EncodeStats* stats) noexcept {
  Dispatch([&](auto var_shift) ALLOY_LAMBDA_INLINE {
    EncodeF16Loop<decltype(var_shift)::value>(in.data(), out.data(), in.size(), overflow,
                                              stats, FromF64RoundToOdd{});
  });
}

void EncodeF8E4M3(std::span<const float> in, std::span<uint8_t> out,
                  EncodeStats* stats) noexcept {
  Dispatch([&](auto var_shift) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               E4M3Kernel<decltype(var_shift)::value>{});
  });
}

void EncodeF8E5M2(std::span<const float> in, std::span<uint8_t> out,
                  EncodeStats* stats) noexcept {
  Dispatch([&](auto var_shift) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               E5M2Kernel<decltype(var_shift)::value>{});
  });
}

void EncodeF64(std::span<const float> in, std::span<double> out) noexcept {
  // Exact widening done on the bits (under DAZ a hardware cvtss2sd would flush
  // f32 subnormals, and it quiets NaNs).
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    MapLoop(in.data(), out.data(), in.size(), [](float x) ALLOY_LAMBDA_INLINE {
      const uint32_t bits = F32Bits(x);
      const uint32_t a = bits & kF32AbsMask;
      const uint64_t sign = uint64_t{bits >> 31} << 63;
      const uint64_t normal = (uint64_t{a} << 29) + (uint64_t{1023 - 127} << 52);
      const uint64_t special = normal + (uint64_t{1023 - 127} << 52);  // inf / NaN
      // f32 subnormal m·2^-149: exact int → double and power-of-two scaling.
      const uint64_t sub =
          std::bit_cast<uint64_t>(static_cast<double>(static_cast<int32_t>(a)) * 0x1p-149);
      const uint64_t is_sub = uint64_t{0} - (MaskLt(a, 0x00800000u) & 1u);
      const uint64_t is_special = uint64_t{0} - (~MaskLt(a, kF32Inf) & 1u);
      const uint64_t r = Sel(is_sub, sub, Sel(is_special, special, normal));
      return std::bit_cast<double>(sign | r);
    });
  });
}

void EncodeI8(std::span<const float> in, std::span<int8_t> out, EncodeStats* stats) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               IntKernel<int8_t>{});
  });
}

void EncodeU8(std::span<const float> in, std::span<uint8_t> out, EncodeStats* stats) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               IntKernel<uint8_t>{});
  });
}

void EncodeI16(std::span<const float> in, std::span<int16_t> out,
               EncodeStats* stats) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               IntKernel<int16_t>{});
  });
}

void EncodeI32(std::span<const float> in, std::span<int32_t> out,
               EncodeStats* stats) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               IntKernel<int32_t>{});
  });
}

void EncodeI64(std::span<const float> in, std::span<int64_t> out,
               EncodeStats* stats) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_clamped, FromF32{},
               I64Kernel{});
  });
}

// ---- fused 16-bit paths: the same bit pipeline as decode-then-encode ----

void Bf16ToF16(std::span<const uint16_t> in, std::span<uint16_t> out, Overflow overflow,
               EncodeStats* stats) noexcept {
  Dispatch([&](auto var_shift) ALLOY_LAMBDA_INLINE {
    EncodeF16Loop<decltype(var_shift)::value>(in.data(), out.data(), in.size(), overflow,
                                              stats, FromBf16{});
  });
}

void F16ToBf16(std::span<const uint16_t> in, std::span<uint16_t> out,
               EncodeStats* stats) noexcept {
  // f16 values never overflow bf16; the over flag stays 0.
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    EncodeLoop(in.data(), out.data(), in.size(), stats, &EncodeStats::n_overflow, FromF16{},
               Bf16Kernel{});
  });
}

}  // namespace alloy::kernels
