// Tests for kernels/convert: exhaustive over the 16-bit and 8-bit codes,
// sampled against _Float16 and an independent exact-arithmetic RNE reference,
// the hand-checked cases of checkpoint-formats.md §5, stats, and span vs
// scalar agreement over awkward lengths and misaligned starts.
#include "kernels/convert.h"

#include <algorithm>
#include <bit>
#include <cfenv>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

namespace alloy::kernels {
namespace {

constexpr size_t kLengths[] = {0, 1, 3, 7, 63, 64, 65, 1000, 65537};
constexpr size_t kOffsets[] = {0, 1, 3};

uint32_t Bits(float x) { return std::bit_cast<uint32_t>(x); }
float FromBits(uint32_t b) { return std::bit_cast<float>(b); }
uint64_t Bits64(double x) { return std::bit_cast<uint64_t>(x); }
bool IsNan32(uint32_t b) { return (b & 0x7FFFFFFFu) > 0x7F800000u; }
bool IsNanF16(uint16_t h) { return (h & 0x7FFFu) > 0x7C00u; }

// The compiler's own f32 → f16 conversion (g++ 12 on x86-64 has _Float16;
// clang before 15 does not, and then the exact reference below stands in).
#if defined(__FLT16_MAX__)
constexpr bool kHaveFloat16 = true;
uint16_t Float16Bits(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t b = 0;
  std::memcpy(&b, &h, sizeof b);
  return b;
}
#else
constexpr bool kHaveFloat16 = false;
uint16_t RefF16(float x, bool saturate);
uint16_t Float16Bits(float x) { return RefF16(x, false); }
#endif

// ---- independent reference decoders (ldexp, straight from §5) ----

float RefF16Decode(uint16_t h) {
  const bool neg = (h & 0x8000u) != 0;
  const int e = (h >> 10) & 31;
  const int m = h & 0x3FF;
  float v = 0.0f;
  if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -24);
  } else if (e == 31) {
    if (m != 0) return FromBits((neg ? 0x80000000u : 0u) | 0x7F800000u | (uint32_t(m) << 13));
    v = std::numeric_limits<float>::infinity();
  } else {
    v = std::ldexp(static_cast<float>(1024 + m), e - 25);
  }
  return neg ? -v : v;
}

float RefE4M3Decode(uint8_t b) {
  const bool neg = (b & 0x80u) != 0;
  const int e = (b >> 3) & 15;
  const int m = b & 7;
  if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -9)
                         : std::ldexp(static_cast<float>(8 + m), e - 10);
  return neg ? -v : v;
}

float RefE5M2Decode(uint8_t b) { return RefF16Decode(static_cast<uint16_t>(b << 8)); }

// ---- independent reference encoder: exact RNE by search over the codes ----

// A format's positive finite codes 0..max_code, increasing in value.
struct Format {
  uint32_t max_code;
  double (*value)(uint32_t code);
};

double Bf16Value(uint32_t c) { return FromBits(c << 16); }
double F16Value(uint32_t c) { return RefF16Decode(static_cast<uint16_t>(c)); }
double E4M3Value(uint32_t c) { return RefE4M3Decode(static_cast<uint8_t>(c)); }
double E5M2Value(uint32_t c) { return RefE5M2Decode(static_cast<uint8_t>(c)); }

constexpr Format kBf16Format{0x7F7F, Bf16Value};
constexpr Format kF16Format{0x7BFF, F16Value};
constexpr Format kE4M3Format{0x7E, E4M3Value};
constexpr Format kE5M2Format{0x7B, E5M2Value};

// RNE of |x| (non-NaN) to a positive code; returns max_code + 1 when the
// unbounded rounding exceeds the largest finite value. Differences are exact
// in double for every format here.
uint32_t RefRound(const Format& f, float x) {
  const double ax = std::fabs(static_cast<double>(x));
  const double top = f.value(f.max_code);
  const double next = top + (top - f.value(f.max_code - 1));  // one step past max
  if (ax >= top) {
    const double mid = (top + next) / 2;
    if (ax < mid) return f.max_code;
    if (ax > mid) return f.max_code + 1;
    return (f.max_code & 1) == 0 ? f.max_code : f.max_code + 1;
  }
  uint32_t lo = 0;  // largest code with value ≤ ax
  uint32_t hi = f.max_code;
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    (f.value(mid) <= ax ? lo : hi) = mid;
  }
  if (f.value(hi) <= ax) lo = hi;
  const uint32_t up = lo + 1;
  const double d_lo = ax - f.value(lo);
  const double d_up = f.value(up) - ax;
  if (d_lo < d_up) return lo;
  if (d_up < d_lo) return up;
  return (lo & 1) == 0 ? lo : up;
}

uint16_t RefBf16(float x) {
  const uint32_t b = Bits(x);
  if (IsNan32(b)) return static_cast<uint16_t>((b >> 16) | 0x40);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t code = RefRound(kBf16Format, x);
  return static_cast<uint16_t>(sign | (code > kBf16Format.max_code ? 0x7F80u : code));
}

uint16_t RefF16(float x, bool saturate) {
  const uint32_t b = Bits(x);
  const uint32_t sign = (b >> 16) & 0x8000u;
  if (IsNan32(b)) return static_cast<uint16_t>(sign | 0x7E00u);
  if (std::isinf(x)) return static_cast<uint16_t>(sign | 0x7C00u);
  const uint32_t code = RefRound(kF16Format, x);
  if (code > kF16Format.max_code) return static_cast<uint16_t>(sign | (saturate ? 0x7BFFu : 0x7C00u));
  return static_cast<uint16_t>(sign | code);
}

// FP8: saturating; NaN → 0x7F | sign.
uint8_t RefF8(const Format& f, float x) {
  const uint32_t b = Bits(x);
  const uint32_t sign = (b >> 24) & 0x80u;
  if (IsNan32(b)) return static_cast<uint8_t>(sign | 0x7Fu);
  const uint32_t code = std::min(RefRound(f, x), f.max_code);
  return static_cast<uint8_t>(sign | code);
}
bool RefF8Clamped(const Format& f, float x) {
  return !std::isnan(x) && RefRound(f, x) > f.max_code;
}

// ---- test data ----

// Random f32 values: uniform bit patterns, values spread over a wide exponent
// range, and the specials.
std::vector<float> MakePool(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exp_dist(-40, 40);
  std::vector<float> v;
  v.reserve(n);
  const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f,
                            -1e-45f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 448.0f,
                            464.0f, 480.0f, -480.0f, 57344.0f, 61440.0f, 0.5f, 1.5f, 2.5f,
                            127.5f, -128.5f, 255.5f, 1e10f, -1e30f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), FromBits(0xFF800001u),
                            FromBits(0x7FA00001u)};
  for (size_t i = 0; i < n; ++i) {
    const uint32_t kind = rng() % 16;
    if (kind == 0) {
      v.push_back(FromBits(static_cast<uint32_t>(rng())));
    } else if (kind == 1) {
      v.push_back(specials[rng() % std::size(specials)]);
    } else {
      v.push_back(std::ldexp(normal(rng), exp_dist(rng)));
    }
  }
  return v;
}

// Every tie point between consecutive codes of a format (and its neighbours),
// as f32 values; all are exactly representable.
std::vector<float> TiePoints(const Format& f) {
  std::vector<float> v;
  for (uint32_t c = 0; c < f.max_code; ++c) {
    const float mid = static_cast<float>((f.value(c) + f.value(c + 1)) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, FLT_MAX)}) {
      v.push_back(x);
      v.push_back(-x);
    }
  }
  return v;
}

template <typename T>
bool SameBits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Runs span_fn on every length in kLengths at every start offset in kOffsets
// and compares each output with expect(in[i]). Checks that nothing outside
// the output span is written.
template <typename In, typename Out, typename SpanFn, typename Expect>
void CheckSpan(const std::vector<In>& pool, SpanFn span_fn, Expect expect) {
  for (size_t len : kLengths) {
    for (size_t off : kOffsets) {
      CAPTURE(len, off);
      std::vector<In> in(off + len);
      for (size_t i = 0; i < len; ++i) in[off + i] = pool[(i * 7 + off) % pool.size()];
      Out sentinel;
      std::memset(&sentinel, 0xA5, sizeof sentinel);
      std::vector<Out> out(off + len + 2, sentinel);
      span_fn(std::span<const In>(in.data() + off, len), std::span<Out>(out.data() + off, len));
      size_t mismatches = 0;
      for (size_t i = 0; i < len; ++i) {
        if (!SameBits(out[off + i], expect(in[off + i]))) ++mismatches;
      }
      CHECK(mismatches == 0);
      for (size_t i = 0; i < off; ++i) CHECK(SameBits(out[i], sentinel));
      CHECK(SameBits(out[off + len], sentinel));
      CHECK(SameBits(out[off + len + 1], sentinel));
    }
  }
}

void CheckStatsEqual(const EncodeStats& a, const EncodeStats& b) {
  CHECK(a.n_overflow == b.n_overflow);
  CHECK(a.n_clamped == b.n_clamped);
  CHECK(a.n_nan == b.n_nan);
  CHECK(Bits(a.max_abs_finite) == Bits(b.max_abs_finite));
}

// Expected stats computed with the test's own classification.
template <typename Over>
EncodeStats ExpectedStats(std::span<const float> in, Over counts_as_over) {
  EncodeStats s;
  for (float x : in) {
    if (std::isnan(x)) {
      ++s.n_nan;
      continue;
    }
    if (std::isfinite(x)) s.max_abs_finite = std::max(s.max_abs_finite, std::fabs(x));
    if (counts_as_over(x)) ++s.n_overflow;
  }
  return s;
}

template <typename T>
T RefInt(float x, bool* clamped) {
  *clamped = false;
  if (std::isnan(x)) return 0;
  const double r = std::nearbyint(static_cast<double>(x));  // default mode: RNE
  const double lo = static_cast<double>(std::numeric_limits<T>::min());
  const double hi = static_cast<double>(std::numeric_limits<T>::max());
  if (r < lo) {
    *clamped = true;
    return std::numeric_limits<T>::min();
  }
  if (r >= hi + 1.0 || (sizeof(T) == 8 && r >= hi)) {  // 2^63 - 1 rounds to 2^63 in double
    *clamped = true;
    return std::numeric_limits<T>::max();
  }
  return static_cast<T>(r);
}

// ============================== bf16 ==============================

TEST_CASE("bf16 decode is bits << 16 and decode→encode is the identity", "[kernels]") {
  size_t bad = 0;
  for (uint32_t c = 0; c < 65536; ++c) {
    const auto h = static_cast<uint16_t>(c);
    const float x = Bf16ToF32(h);
    if (Bits(x) != c << 16) ++bad;
    const uint16_t back = F32ToBf16(x);
    if (IsNan32(c << 16)) {
      if (!IsNan32(uint32_t{back} << 16) || back != (h | 0x40)) ++bad;
    } else if (back != h) {
      ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("bf16 encoder matches the exact RNE reference", "[kernels]") {
  std::vector<float> xs = MakePool(1 << 20, 1);
  const std::vector<float> ties = TiePoints(kBf16Format);
  xs.insert(xs.end(), ties.begin(), ties.end());
  std::mt19937 rng(2);
  for (int i = 0; i < (1 << 20); ++i) xs.push_back(FromBits(static_cast<uint32_t>(rng())));
  size_t mismatches = 0;
  for (float x : xs) {
    if (F32ToBf16(x) != RefBf16(x)) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("bf16 hand-checked cases", "[kernels]") {
  CHECK(F32ToBf16(1.00390625f) == 0x3F80);  // tie → even (down)
  CHECK(F32ToBf16(1.01171875f) == 0x3F82);  // tie → even (up)
  CHECK(F32ToBf16(FLT_MAX) == 0x7F80);
  CHECK(F32ToBf16(-FLT_MAX) == 0xFF80);
  CHECK(F32ToBf16(FromBits(0x7F7F7FFFu)) == 0x7F7F);
  CHECK(F32ToBf16(FromBits(0x7F7F8000u)) == 0x7F80);  // first finite value that overflows
  CHECK(F32ToBf16(FromBits(0x7FA00001u)) == 0x7FE0);  // sNaN → quiet, payload kept
  CHECK(F32ToBf16(FromBits(0xFF800001u)) == 0xFFC0);
  CHECK(F32ToBf16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(F32ToBf16(FromBits(0x00008000u)) == 0x0000);  // subnormal tie → even
  CHECK(F32ToBf16(FromBits(0x00018000u)) == 0x0002);
  CHECK(F32ToBf16(FromBits(0x00008001u)) == 0x0001);  // subnormals are rounded, not flushed
  CHECK(F32ToBf16(-0.0f) == 0x8000);
}

// ============================== f16 ==============================

TEST_CASE("f16 decode is exact for all 65536 codes", "[kernels]") {
  size_t bad = 0;
  for (uint32_t c = 0; c < 65536; ++c) {
    const auto h = static_cast<uint16_t>(c);
    if (Bits(F16ToF32(h)) != Bits(RefF16Decode(h))) ++bad;
  }
  CHECK(bad == 0);
  CHECK(Bits(F16ToF32(0x7C01)) == 0x7F802000u);  // NaN payload << 13 (signalling kept)
  CHECK(Bits(F16ToF32(0xFE00)) == 0xFFC00000u);
  CHECK(F16ToF32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(F16ToF32(0x7BFF) == 65504.0f);
}

TEST_CASE("f16 decode→encode is the identity and NaN stays NaN", "[kernels]") {
  size_t bad = 0;
  for (uint32_t c = 0; c < 65536; ++c) {
    const auto h = static_cast<uint16_t>(c);
    const uint16_t back = F32ToF16(F16ToF32(h));
    if (IsNanF16(h)) {
      if (back != ((h & 0x8000) | 0x7E00)) ++bad;
    } else if (back != h) {
      ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("f16 encoder matches _Float16 over sampled f32 bit patterns", "[kernels]") {
  if (!kHaveFloat16) WARN("no _Float16 in this compiler: comparing with the exact reference");
  std::vector<float> xs = MakePool(1 << 20, 3);
  const std::vector<float> ties = TiePoints(kF16Format);
  xs.insert(xs.end(), ties.begin(), ties.end());
  std::mt19937 rng(4);
  for (int i = 0; i < (1 << 21); ++i) xs.push_back(FromBits(static_cast<uint32_t>(rng())));
  // Dense coverage of the exponents where f16 rounds: 2^-26 .. 2^17.
  for (uint32_t e = 100; e <= 144; ++e) {
    for (int i = 0; i < 20000; ++i) {
      xs.push_back(FromBits((e << 23) | (static_cast<uint32_t>(rng()) & 0x807FFFFFu)));
    }
  }
  REQUIRE(xs.size() > 3000000);
  size_t mismatches = 0;
  size_t nan_mismatches = 0;
  for (float x : xs) {
    const uint16_t got = F32ToF16(x);
    if (std::isnan(x)) {
      if (got != ((Bits(x) >> 16 & 0x8000u) | 0x7E00u)) ++nan_mismatches;
    } else if (got != Float16Bits(x)) {
      ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  CHECK(nan_mismatches == 0);
  // And against the exact-arithmetic reference, on a subset.
  size_t ref_mismatches = 0;
  for (size_t i = 0; i < xs.size(); i += 7) {
    if (F32ToF16(xs[i]) != RefF16(xs[i], false)) ++ref_mismatches;
  }
  CHECK(ref_mismatches == 0);
}

TEST_CASE("f16 hand-checked cases", "[kernels]") {
  CHECK(F32ToF16(65504.0f) == 0x7BFF);
  CHECK(F32ToF16(65519.99f) == 0x7BFF);
  CHECK(F32ToF16(65520.0f) == 0x7C00);
  CHECK(F32ToF16(-65520.0f) == 0xFC00);
  CHECK(F32ToF16(std::ldexp(1.0f, -25)) == 0x0000);  // tie → even (0)
  CHECK(F32ToF16(2.98023259e-8f) == 0x0001);
  CHECK(F32ToF16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(F32ToF16(std::ldexp(3.0f, -25)) == 0x0002);  // tie 1.5 → 2
  CHECK(F32ToF16(std::ldexp(1.0f, -14)) == 0x0400);
  CHECK(F32ToF16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)) == 0x0400);  // carry to normal
  CHECK(F32ToF16(1.0f) == 0x3C00);
  CHECK(F32ToF16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);       // tie → even
  CHECK(F32ToF16(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);       // tie → even
  CHECK(F32ToF16(2047.5f) == 0x6800);                             // carry into exponent
  CHECK(F32ToF16(std::numeric_limits<float>::quiet_NaN()) == 0x7E00);
  CHECK(F32ToF16(FromBits(0xFF800001u)) == 0xFE00);
  CHECK(F32ToF16(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(F32ToF16(-0.0f) == 0x8000);
  CHECK(F32ToF16(FLT_MAX) == 0x7C00);
}

// ============================== FP8 ==============================

TEST_CASE("FP8 E4M3FN: all 256 codes decode and round-trip", "[kernels]") {
  for (uint32_t c = 0; c < 256; ++c) {
    CAPTURE(c);
    const auto b = static_cast<uint8_t>(c);
    const float x = F8E4M3ToF32(b);
    if ((c & 0x7F) == 0x7F) {
      CHECK(std::isnan(x));
      CHECK(F32ToF8E4M3(x) == (c & 0x80 ? 0xFF : 0x7F));
    } else {
      CHECK(Bits(x) == Bits(RefE4M3Decode(b)));
      CHECK(F32ToF8E4M3(x) == b);
    }
  }
  CHECK(F8E4M3ToF32(0x7E) == 448.0f);
  CHECK(F8E4M3ToF32(0x01) == std::ldexp(1.0f, -9));
  CHECK(F8E4M3ToF32(0x08) == std::ldexp(1.0f, -6));
  CHECK(Bits(F8E4M3ToF32(0x80)) == 0x80000000u);
}

TEST_CASE("FP8 E5M2: all 256 codes decode and round-trip", "[kernels]") {
  for (uint32_t c = 0; c < 256; ++c) {
    CAPTURE(c);
    const auto b = static_cast<uint8_t>(c);
    const float x = F8E5M2ToF32(b);
    const uint32_t mag = c & 0x7F;
    if (mag > 0x7C) {
      CHECK(std::isnan(x));
      CHECK(F32ToF8E5M2(x) == (c & 0x80 ? 0xFF : 0x7F));
    } else if (mag == 0x7C) {
      CHECK(std::isinf(x));
      CHECK(F32ToF8E5M2(x) == ((c & 0x80) | 0x7B));  // inf saturates
    } else {
      CHECK(Bits(x) == Bits(RefE5M2Decode(b)));
      CHECK(F32ToF8E5M2(x) == b);
    }
  }
  CHECK(F8E5M2ToF32(0x7B) == 57344.0f);
  CHECK(F8E5M2ToF32(0x01) == std::ldexp(1.0f, -16));
}

TEST_CASE("FP8 encoders match the exact RNE reference", "[kernels]") {
  std::vector<float> xs = MakePool(1 << 19, 5);
  for (const Format* f : {&kE4M3Format, &kE5M2Format}) {
    const std::vector<float> ties = TiePoints(*f);
    xs.insert(xs.end(), ties.begin(), ties.end());
  }
  std::mt19937 rng(6);
  for (uint32_t e = 100; e <= 145; ++e) {
    for (int i = 0; i < 4000; ++i) {
      xs.push_back(FromBits((e << 23) | (static_cast<uint32_t>(rng()) & 0x807FFFFFu)));
    }
  }
  size_t bad_e4m3 = 0;
  size_t bad_e5m2 = 0;
  for (float x : xs) {
    if (F32ToF8E4M3(x) != RefF8(kE4M3Format, x)) ++bad_e4m3;
    if (F32ToF8E5M2(x) != RefF8(kE5M2Format, x)) ++bad_e5m2;
  }
  CHECK(bad_e4m3 == 0);
  CHECK(bad_e5m2 == 0);
}

TEST_CASE("FP8 hand-checked cases and clamp counting", "[kernels]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SECTION("E4M3FN") {
    CHECK(F32ToF8E4M3(448.0f) == 0x7E);
    CHECK(F32ToF8E4M3(464.0f) == 0x7E);  // tie → even 448, not clamped
    CHECK(F32ToF8E4M3(480.0f) == 0x7E);  // saturated
    CHECK(F32ToF8E4M3(-480.0f) == 0xFE);
    CHECK(F32ToF8E4M3(inf) == 0x7E);
    CHECK(F32ToF8E4M3(-inf) == 0xFE);
    CHECK(F32ToF8E4M3(nan) == 0x7F);
    CHECK(F32ToF8E4M3(-nan) == 0xFF);
    CHECK(F32ToF8E4M3(1.0f) == 0x38);
    CHECK(F32ToF8E4M3(std::ldexp(1.0f, -9)) == 0x01);
    CHECK(F32ToF8E4M3(std::ldexp(1.0f, -10)) == 0x00);  // tie → even
    CHECK(F32ToF8E4M3(std::ldexp(3.0f, -11)) == 0x01);
    CHECK(F32ToF8E4M3(std::ldexp(1.0f, -6)) == 0x08);

    const std::vector<float> in = {448.0f, 464.0f, std::nextafter(464.0f, inf), 480.0f,
                                   -1e30f, inf, nan, 1.0f};
    std::vector<uint8_t> out(in.size());
    EncodeStats st;
    EncodeF8E4M3(in, out, &st);
    CHECK(out == std::vector<uint8_t>{0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0x7E, 0x7F, 0x38});
    CHECK(st.n_clamped == 4);  // nextafter(464), 480, -1e30, inf
    CHECK(st.n_nan == 1);
    CHECK(st.n_overflow == 0);
    CHECK(st.max_abs_finite == 1e30f);
  }
  SECTION("E5M2") {
    CHECK(F32ToF8E5M2(57344.0f) == 0x7B);
    CHECK(F32ToF8E5M2(std::nextafter(61440.0f, 0.0f)) == 0x7B);
    CHECK(F32ToF8E5M2(61440.0f) == 0x7B);  // tie would go up: saturated
    CHECK(F32ToF8E5M2(-61440.0f) == 0xFB);
    CHECK(F32ToF8E5M2(inf) == 0x7B);
    CHECK(F32ToF8E5M2(nan) == 0x7F);
    CHECK(F32ToF8E5M2(-nan) == 0xFF);
    CHECK(F32ToF8E5M2(1.0f) == 0x3C);
    CHECK(F32ToF8E5M2(std::ldexp(1.0f, -16)) == 0x01);
    CHECK(F32ToF8E5M2(std::ldexp(1.0f, -17)) == 0x00);

    const std::vector<float> in = {57344.0f, std::nextafter(61440.0f, 0.0f), 61440.0f,
                                   -1e6f, -inf, nan, 0.0f};
    std::vector<uint8_t> out(in.size());
    EncodeStats st;
    EncodeF8E5M2(in, out, &st);
    CHECK(out == std::vector<uint8_t>{0x7B, 0x7B, 0x7B, 0xFB, 0xFB, 0x7F, 0x00});
    CHECK(st.n_clamped == 3);  // 61440, -1e6, -inf
    CHECK(st.n_nan == 1);
    CHECK(st.max_abs_finite == 1e6f);
  }
}

// ============================== stats ==============================

TEST_CASE("EncodeF16 stats: overflow, clamp, NaN, max |x|", "[kernels]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> in = {1.0f, 65504.0f, 65519.99f, 65520.0f, 1e10f,
                                 inf,  -inf,     nan,       -nan,     -70000.0f};
  std::vector<uint16_t> out(in.size());
  SECTION("kToInf") {
    EncodeStats st;
    EncodeF16(in, out, Overflow::kToInf, &st);
    CHECK(out == std::vector<uint16_t>{0x3C00, 0x7BFF, 0x7BFF, 0x7C00, 0x7C00, 0x7C00, 0xFC00,
                                       0x7E00, 0xFE00, 0xFC00});
    CHECK(st.n_overflow == 3);
    CHECK(st.n_clamped == 0);
    CHECK(st.n_nan == 2);
    CHECK(st.max_abs_finite == 1e10f);
    // Stats accumulate.
    EncodeF16(in, out, Overflow::kToInf, &st);
    CHECK(st.n_overflow == 6);
    CHECK(st.n_nan == 4);
  }
  SECTION("kSaturate") {
    EncodeStats st;
    EncodeF16(in, out, Overflow::kSaturate, &st);
    CHECK(out == std::vector<uint16_t>{0x3C00, 0x7BFF, 0x7BFF, 0x7BFF, 0x7BFF, 0x7C00, 0xFC00,
                                       0x7E00, 0xFE00, 0xFBFF});
    CHECK(st.n_overflow == 0);
    CHECK(st.n_clamped == 3);
    CHECK(st.n_nan == 2);
    CHECK(st.max_abs_finite == 1e10f);
  }
  SECTION("null stats") {
    EncodeF16(in, out, Overflow::kToInf, nullptr);
    CHECK(out[3] == 0x7C00);
  }
}

TEST_CASE("EncodeBf16 stats", "[kernels]") {
  const std::vector<float> in = {FLT_MAX, -3.0f, FromBits(0x7F7F7FFFu),
                                 std::numeric_limits<float>::quiet_NaN(),
                                 std::numeric_limits<float>::infinity()};
  std::vector<uint16_t> out(in.size());
  EncodeStats st;
  st.max_abs_finite = 1.0f;
  EncodeBf16(in, out, &st);
  CHECK(out == std::vector<uint16_t>{0x7F80, 0xC040, 0x7F7F, 0x7FC0, 0x7F80});
  CHECK(st.n_overflow == 1);
  CHECK(st.n_nan == 1);
  CHECK(st.n_clamped == 0);
  CHECK(st.max_abs_finite == FLT_MAX);
}

// ============================== span vs scalar ==============================

TEST_CASE("span decoders equal the scalar decoders", "[kernels]") {
  std::vector<uint16_t> codes16(65536);
  for (uint32_t c = 0; c < 65536; ++c) codes16[c] = static_cast<uint16_t>(c * 40503u);
  std::vector<uint8_t> codes8(256);
  for (uint32_t c = 0; c < 256; ++c) codes8[c] = static_cast<uint8_t>(c * 167u);
  CheckSpan<uint16_t, float>(codes16, DecodeBf16, Bf16ToF32);
  CheckSpan<uint16_t, float>(codes16, DecodeF16, F16ToF32);
  CheckSpan<uint8_t, float>(codes8, DecodeF8E4M3, F8E4M3ToF32);
  CheckSpan<uint8_t, float>(codes8, DecodeF8E5M2, F8E5M2ToF32);
}

TEST_CASE("span encoders equal the scalar encoders, with stats", "[kernels]") {
  const std::vector<float> pool = MakePool(70000, 7);
  CheckSpan<float, uint16_t>(
      pool, [](auto in, auto out) { EncodeBf16(in, out, nullptr); }, F32ToBf16);
  CheckSpan<float, uint16_t>(
      pool, [](auto in, auto out) { EncodeF16(in, out, Overflow::kToInf, nullptr); }, F32ToF16);
  CheckSpan<float, uint16_t>(
      pool, [](auto in, auto out) { EncodeF16(in, out, Overflow::kSaturate, nullptr); },
      [](float x) { return RefF16(x, true); });
  CheckSpan<float, uint8_t>(
      pool, [](auto in, auto out) { EncodeF8E4M3(in, out, nullptr); }, F32ToF8E4M3);
  CheckSpan<float, uint8_t>(
      pool, [](auto in, auto out) { EncodeF8E5M2(in, out, nullptr); }, F32ToF8E5M2);

  // Stats over spans of awkward lengths and starts.
  for (size_t len : kLengths) {
    for (size_t off : kOffsets) {
      CAPTURE(len, off);
      std::vector<float> buf(off + len);
      for (size_t i = 0; i < len; ++i) buf[off + i] = pool[(i * 13 + off) % pool.size()];
      const std::span<const float> in(buf.data() + off, len);
      std::vector<uint16_t> out16(len);
      std::vector<uint8_t> out8(len);

      EncodeStats st;
      EncodeBf16(in, out16, &st);
      CheckStatsEqual(st, ExpectedStats(in, [](float x) {
                        return std::isfinite(x) && std::isinf(Bf16ToF32(RefBf16(x)));
                      }));
      st = {};
      EncodeF16(in, out16, Overflow::kToInf, &st);
      CheckStatsEqual(st, ExpectedStats(in, [](float x) {
                        return std::isfinite(x) && std::isinf(F16ToF32(RefF16(x, false)));
                      }));
      st = {};
      EncodeF16(in, out16, Overflow::kSaturate, &st);
      EncodeStats want = ExpectedStats(in, [](float x) {
        return std::isfinite(x) && std::isinf(F16ToF32(RefF16(x, false)));
      });
      std::swap(want.n_overflow, want.n_clamped);
      CheckStatsEqual(st, want);
      st = {};
      EncodeF8E4M3(in, out8, &st);
      want = ExpectedStats(in, [](float x) { return RefF8Clamped(kE4M3Format, x); });
      std::swap(want.n_overflow, want.n_clamped);
      CheckStatsEqual(st, want);
      st = {};
      EncodeF8E5M2(in, out8, &st);
      want = ExpectedStats(in, [](float x) { return RefF8Clamped(kE5M2Format, x); });
      std::swap(want.n_overflow, want.n_clamped);
      CheckStatsEqual(st, want);
    }
  }
}

// ============================== fused paths ==============================

TEST_CASE("fused Bf16ToF16 / F16ToBf16 equal decode then encode for all codes", "[kernels]") {
  std::vector<uint16_t> codes(65536);
  for (uint32_t c = 0; c < 65536; ++c) codes[c] = static_cast<uint16_t>(c);
  std::vector<float> f32(codes.size());
  std::vector<uint16_t> fused(codes.size());
  std::vector<uint16_t> two_step(codes.size());

  for (Overflow mode : {Overflow::kToInf, Overflow::kSaturate}) {
    EncodeStats st_fused;
    EncodeStats st_two;
    Bf16ToF16(codes, fused, mode, &st_fused);
    DecodeBf16(codes, f32);
    EncodeF16(f32, two_step, mode, &st_two);
    CHECK(fused == two_step);
    CheckStatsEqual(st_fused, st_two);
    CHECK(st_fused.n_nan == 2 * 127);
  }
  EncodeStats st_fused;
  EncodeStats st_two;
  F16ToBf16(codes, fused, &st_fused);
  DecodeF16(codes, f32);
  EncodeBf16(f32, two_step, &st_two);
  CHECK(fused == two_step);
  CheckStatsEqual(st_fused, st_two);
  CHECK(st_fused.n_nan == 2 * 1023);
  CHECK(st_fused.n_overflow == 0);
  CHECK(st_fused.max_abs_finite == 65504.0f);

  // Misaligned, odd-length spans.
  CheckSpan<uint16_t, uint16_t>(
      codes, [](auto in, auto out) { Bf16ToF16(in, out, Overflow::kToInf, nullptr); },
      [](uint16_t b) { return F32ToF16(Bf16ToF32(b)); });
  CheckSpan<uint16_t, uint16_t>(
      codes, [](auto in, auto out) { F16ToBf16(in, out, nullptr); },
      [](uint16_t h) { return F32ToBf16(F16ToF32(h)); });
}

TEST_CASE("bf16 → f16 pitfall values (§5.4)", "[kernels]") {
  // bf16 65536 (0x4780) overflows; 65280 (0x477F) rounds to 65280 exactly.
  const std::vector<uint16_t> in = {0x4780, 0x477F, 0x3380, 0x3300, 0xC780};
  std::vector<uint16_t> out(in.size());
  EncodeStats st;
  Bf16ToF16(in, out, Overflow::kToInf, &st);
  CHECK(out[0] == 0x7C00);
  CHECK(out[1] == F32ToF16(65280.0f));
  CHECK(out[2] == 0x0001);  // 2^-24
  CHECK(out[3] == 0x0000);  // 2^-25: tie → 0
  CHECK(out[4] == 0xFC00);
  CHECK(st.n_overflow == 2);
  CHECK(st.max_abs_finite == 65536.0f);
  st = {};
  Bf16ToF16(in, out, Overflow::kSaturate, &st);
  CHECK(out[0] == 0x7BFF);
  CHECK(out[4] == 0xFBFF);
  CHECK(st.n_clamped == 2);
}

// ============================== f64 ==============================

TEST_CASE("DecodeF64 is the RNE cast and EncodeF64 is exact", "[kernels]") {
  std::mt19937_64 rng(8);
  std::vector<double> in;
  for (int i = 0; i < 200000; ++i) in.push_back(std::bit_cast<double>(rng()));
  for (int i = 0; i < 200000; ++i) {
    // Exponents around the f32 range, including f32 subnormals and overflow.
    const uint64_t e = 1023 - 160 + rng() % 300;
    in.push_back(std::bit_cast<double>((rng() & 0x800FFFFFFFFFFFFFull) | (e << 52)));
  }
  const double f32_max_half_up = static_cast<double>(FLT_MAX) + std::ldexp(1.0, 103);
  for (double d : {0.0, -0.0, 1.0, static_cast<double>(FLT_MAX), f32_max_half_up,
                   std::nextafter(f32_max_half_up, 0.0), 1e300, -1e300, 1e-300,
                   std::ldexp(1.0, -150), std::ldexp(1.0, -149), std::ldexp(3.0, -151),
                   std::nextafter(std::ldexp(1.0, -150), 1.0), std::ldexp(1.0, -126),
                   std::ldexp(1.0, -126) - std::ldexp(1.0, -150),
                   std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN(),
                   std::bit_cast<double>(0xFFF0000000000001ull),
                   std::bit_cast<double>(0x7FF4000012345678ull), 16777217.0}) {
    in.push_back(d);
  }
  CheckSpan<double, float>(in, DecodeF64, [](double d) {
    if (std::isnan(d)) {  // documented: sign, quiet bit, top 22 payload bits (as cvtsd2ss)
      const uint64_t b = Bits64(d);
      return FromBits(static_cast<uint32_t>(b >> 32 & 0x80000000u) | 0x7FC00000u |
                      static_cast<uint32_t>(b >> 29 & 0x7FFFFFu));
    }
    return static_cast<float>(d);
  });
  std::vector<float> out(in.size());
  DecodeF64(in, out);
  CHECK(Bits(out[in.size() - 20 + 4]) == 0x7F800000u);  // FLT_MAX + ulp/2 → inf
  CHECK(out[in.size() - 20 + 5] == FLT_MAX);

  std::vector<float> fin = MakePool(70000, 9);
  for (uint32_t b : {0x00000001u, 0x807FFFFFu, 0x00400000u, 0x7F800000u, 0xFF800001u}) {
    fin.push_back(FromBits(b));
  }
  CheckSpan<float, double>(fin, EncodeF64, [](float x) {
    if (std::isnan(x)) {  // payload kept bit for bit (no quieting)
      const uint32_t b = Bits(x);
      return std::bit_cast<double>(uint64_t{b >> 31} << 63 | 0x7FF0000000000000ull |
                                   uint64_t{b & 0x7FFFFFu} << 29);
    }
    return static_cast<double>(x);
  });
}

// Doubles around and beyond the float32 range, plus the special values.
std::vector<double> MakeF64Pool(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> in;
  for (int i = 0; i < 100000; ++i) {
    const uint64_t e = 1023 - 160 + rng() % 300;
    in.push_back(std::bit_cast<double>((rng() & 0x800FFFFFFFFFFFFFull) | (e << 52)));
  }
  for (int i = 0; i < 1000; ++i) {  // exact float32 values stay exact
    in.push_back(static_cast<double>(FromBits(static_cast<uint32_t>(rng()))));
  }
  for (double d : {0.0, -0.0, 1.0, -1.0, static_cast<double>(FLT_MAX), 1e300, -1e300, 1e-300,
                   -1e-300, std::ldexp(1.0, -149), std::ldexp(3.0, -151), 16777217.0,
                   -16777219.0, std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN(),
                   std::bit_cast<double>(0xFFF0000000000001ull)}) {
    in.push_back(d);
  }
  return in;
}

// Round to odd by the definition: truncate (the FPU in round-toward-zero
// mode), then set the last bit when the result is inexact.
float RoundToOddReference(double x) {
  if (std::isnan(x)) return static_cast<float>(x);
  const int mode = std::fegetround();
  std::fesetround(FE_TOWARDZERO);
  volatile double v = x;
  const float t = static_cast<float>(v);
  std::fesetround(mode);
  return static_cast<double>(t) == x ? t : FromBits(Bits(t) | 1u);
}

TEST_CASE("NarrowF64RoundToOdd matches truncate-and-set-sticky", "[kernels]") {
  const std::vector<double> pool = MakeF64Pool(21);
  CheckSpan<double, float>(pool, NarrowF64RoundToOdd, RoundToOddReference);
  std::vector<float> out(4);
  const std::vector<double> edge = {1e300, -1e-300, std::ldexp(1.0, 128), 1.0 + std::ldexp(1.0, -40)};
  NarrowF64RoundToOdd(edge, out);
  CHECK(Bits(out[0]) == 0x7F7FFFFFu);  // overflow: FLT_MAX, odd
  CHECK(Bits(out[1]) == 0x80000001u);  // below the smallest subnormal: ±2^-149
  CHECK(Bits(out[2]) == 0x7F7FFFFFu);
  CHECK(Bits(out[3]) == 0x3F800001u);  // 1 + tiny: 1 with the sticky bit
}

TEST_CASE("fused f64 encoders equal round-to-odd then encode, with stats", "[kernels]") {
  const std::vector<double> pool = MakeF64Pool(22);
  std::vector<float> narrow(pool.size());
  NarrowF64RoundToOdd(pool, narrow);
  std::vector<uint16_t> want(pool.size()), got(pool.size());
  EncodeStats want_stats, got_stats;
  EncodeBf16(narrow, want, &want_stats);
  EncodeBf16FromF64(pool, got, &got_stats);
  CHECK(got == want);
  CHECK(got_stats.n_overflow == want_stats.n_overflow);
  CHECK(got_stats.n_nan == want_stats.n_nan);
  CHECK(got_stats.max_abs_finite == want_stats.max_abs_finite);
  CHECK(want_stats.n_overflow > 0);
  for (Overflow mode : {Overflow::kToInf, Overflow::kSaturate}) {
    EncodeStats w16, g16;
    EncodeF16(narrow, want, mode, &w16);
    EncodeF16FromF64(pool, got, mode, &g16);
    CHECK(got == want);
    CHECK(g16.n_overflow == w16.n_overflow);
    CHECK(g16.n_clamped == w16.n_clamped);
    CHECK(g16.n_nan == w16.n_nan);
  }
  // Every length and start (vector body and scalar tail), with stats.
  for (size_t len : kLengths) {
    for (size_t off : kOffsets) {
      CAPTURE(len, off);
      const size_t n = std::min(len, pool.size() - off);
      const std::span<const double> in(pool.data() + off, n);
      std::vector<float> f(n);
      NarrowF64RoundToOdd(in, f);
      std::vector<uint16_t> w(n + 1, 0xA5A5), g(n + 1, 0xA5A5);
      EncodeStats ws, gs;
      EncodeBf16(f, std::span<uint16_t>(w.data(), n), &ws);
      EncodeBf16FromF64(in, std::span<uint16_t>(g.data(), n), &gs);
      CHECK(g == w);
      CHECK(gs.n_overflow == ws.n_overflow);
      CHECK(gs.n_nan == ws.n_nan);
      CHECK(gs.max_abs_finite == ws.max_abs_finite);
    }
  }
  // One rounding: 1 + 2^-8 + 2^-40 is just above the bf16 tie, so it rounds up;
  // rounding first to float32 (RNE) would land on the tie and round to even (1).
  const std::vector<double> tie = {1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40)};
  std::vector<uint16_t> one(1);
  EncodeBf16FromF64(tie, one, nullptr);
  CHECK(one[0] == 0x3F81u);
}

// ============================== integers ==============================

TEST_CASE("integer decoders", "[kernels]") {
  std::vector<int8_t> i8(256);
  std::vector<uint8_t> u8(256);
  for (int v = 0; v < 256; ++v) {
    i8[static_cast<size_t>(v)] = static_cast<int8_t>(v - 128);
    u8[static_cast<size_t>(v)] = static_cast<uint8_t>(v);
  }
  std::vector<int16_t> i16(65536);
  for (int v = 0; v < 65536; ++v) i16[static_cast<size_t>(v)] = static_cast<int16_t>(v - 32768);
  std::mt19937_64 rng(10);
  std::vector<int32_t> i32 = {0, 1, -1, INT32_MAX, INT32_MIN, 16777217, -16777219, 33554435};
  std::vector<int64_t> i64 = {0, 1, -1, INT64_MAX, INT64_MIN, 16777217, -16777219,
                              (int64_t{1} << 40) + 1, (int64_t{1} << 53) + 3};
  for (int i = 0; i < 100000; ++i) {
    const uint64_t r = rng();
    const int shift = static_cast<int>(rng() % 64);
    i32.push_back(static_cast<int32_t>(static_cast<uint32_t>(r) >> (shift % 32)));
    const uint64_t mag = r >> shift;
    i64.push_back(static_cast<int64_t>((r & 1) != 0 ? uint64_t{0} - mag : mag));
  }
  // Reference: the hardware conversion under the default (RNE) mode.
  CheckSpan<int8_t, float>(i8, DecodeI8, [](int8_t v) { return static_cast<float>(v); });
  CheckSpan<uint8_t, float>(u8, DecodeU8, [](uint8_t v) { return static_cast<float>(v); });
  CheckSpan<int16_t, float>(i16, DecodeI16, [](int16_t v) { return static_cast<float>(v); });
  CheckSpan<int32_t, float>(i32, DecodeI32, [](int32_t v) { return static_cast<float>(v); });
  CheckSpan<int64_t, float>(i64, DecodeI64, [](int64_t v) { return static_cast<float>(v); });
}

template <typename T, typename Fn>
void CheckIntEncoder(Fn encode) {
  std::vector<float> pool = MakePool(70000, 11);
  std::mt19937 rng(12);
  for (int i = 0; i < 20000; ++i) {
    // Half-integers and near-range values.
    const auto k = static_cast<float>(static_cast<int32_t>(rng() % 1024u) - 512);
    pool.push_back(k + 0.5f);
    pool.push_back(std::ldexp(k, static_cast<int>(rng() % 64u)));
  }
  for (float x : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, -0.4f, -0.6f, 127.5f, 127.4f, 128.0f,
                  -128.5f, -128.6f, 255.5f, 255.4f, 32767.5f, -32768.5f, 2147483520.0f,
                  2147483648.0f, -2147483648.0f, 4294967040.0f, 4294967296.0f,
                  9223371487098961920.0f, 9223372036854775808.0f, -9223372036854775808.0f,
                  1e30f, -1e30f}) {
    pool.push_back(x);
  }
  CheckSpan<float, T>(pool, [&](auto in, auto out) { encode(in, out, nullptr); },
                      [](float x) {
                        bool clamped = false;
                        return RefInt<T>(x, &clamped);
                      });
  EncodeStats st;
  std::vector<T> out(pool.size());
  encode(std::span<const float>(pool), std::span<T>(out), &st);
  EncodeStats want = ExpectedStats(pool, [](float x) {
    bool clamped = false;
    RefInt<T>(x, &clamped);
    return clamped;
  });
  std::swap(want.n_overflow, want.n_clamped);
  CheckStatsEqual(st, want);
  CHECK(st.n_clamped > 0);
  CHECK(st.n_nan > 0);
}

TEST_CASE("integer encoders: RNE, saturation, NaN → 0", "[kernels]") {
  SECTION("I8") { CheckIntEncoder<int8_t>(EncodeI8); }
  SECTION("U8") { CheckIntEncoder<uint8_t>(EncodeU8); }
  SECTION("I16") { CheckIntEncoder<int16_t>(EncodeI16); }
  SECTION("I32") { CheckIntEncoder<int32_t>(EncodeI32); }
  SECTION("I64") { CheckIntEncoder<int64_t>(EncodeI64); }

  SECTION("hand-checked") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> in = {0.5f, 1.5f, 2.5f, -2.5f, 127.5f, -128.5f, -128.6f, nan, -inf};
    std::vector<int8_t> out(in.size());
    EncodeStats st;
    EncodeI8(in, out, &st);
    CHECK(out == std::vector<int8_t>{0, 2, 2, -2, 127, -128, -128, 0, -128});
    CHECK(st.n_clamped == 3);  // 127.5 → 128, -128.6 → -129, -inf
    CHECK(st.n_nan == 1);

    const std::vector<float> in_u = {-0.4f, -0.5f, -0.6f, 255.4f, 255.5f};
    std::vector<uint8_t> out_u(in_u.size());
    st = {};
    EncodeU8(in_u, out_u, &st);
    CHECK(out_u == std::vector<uint8_t>{0, 0, 0, 255, 255});
    CHECK(st.n_clamped == 2);  // -0.6 → -1, 255.5 → 256

    const std::vector<float> in_64 = {-9223372036854775808.0f, 9223372036854775808.0f,
                                      9223371487098961920.0f, 2.5f};
    std::vector<int64_t> out_64(in_64.size());
    st = {};
    EncodeI64(in_64, out_64, &st);
    CHECK(out_64 == std::vector<int64_t>{INT64_MIN, INT64_MAX, 9223371487098961920, 2});
    CHECK(st.n_clamped == 1);

    const std::vector<float> in_32 = {-2147483648.0f, 2147483648.0f, 2147483520.0f};
    std::vector<int32_t> out_32(in_32.size());
    st = {};
    EncodeI32(in_32, out_32, &st);
    CHECK(out_32 == std::vector<int32_t>{INT32_MIN, INT32_MAX, 2147483520});
    CHECK(st.n_clamped == 1);
  }
}

// ============================== exhaustive (slow) ==============================

TEST_CASE("f16 and bf16 encoders over all 2^32 f32 patterns", "[kernels][.slow]") {
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<float> in(kChunk);
  std::vector<uint16_t> f16(kChunk);
  std::vector<uint16_t> bf16(kChunk);
  size_t bad_f16 = 0;
  size_t bad_bf16 = 0;
  for (uint64_t base = 0; base < (uint64_t{1} << 32); base += kChunk) {
    for (size_t i = 0; i < kChunk; ++i) in[i] = FromBits(static_cast<uint32_t>(base + i));
    EncodeF16(in, f16, Overflow::kToInf, nullptr);
    EncodeBf16(in, bf16, nullptr);
    for (size_t i = 0; i < kChunk; ++i) {
      const uint32_t b = static_cast<uint32_t>(base + i);
      const uint16_t want16 =
          IsNan32(b) ? static_cast<uint16_t>((b >> 16 & 0x8000u) | 0x7E00u) : Float16Bits(in[i]);
      if (f16[i] != want16) ++bad_f16;
      const uint16_t want_bf = IsNan32(b) ? static_cast<uint16_t>((b >> 16) | 0x40u)
                                          : static_cast<uint16_t>((b + 0x7FFFu + (b >> 16 & 1u)) >> 16);
      if (bf16[i] != want_bf) ++bad_bf16;
    }
  }
  CHECK(bad_f16 == 0);
  CHECK(bad_bf16 == 0);
}

}  // namespace
}  // namespace alloy::kernels
