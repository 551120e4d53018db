// Tests for kernels/quant: blocks are packed byte by byte from per-element
// quants and scales (the packers below follow checkpoint-formats.md §4.4),
// and the outputs are compared bit for bit with a scalar reference computed
// from those fields (same float32 operations, in ggml's order). Hand-built
// blocks with hand-derived outputs pin the layouts; the quantizers are
// checked against scalar copies of ggml's quantize_row_q8_0_ref /
// quantize_row_q4_0_ref and by their round-trip error.
#include "kernels/quant.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/convert.h"

namespace alloy::kernels {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kSentinel = 0x7FC0DEADu;  // a NaN the kernels never write

uint32_t Bits(float x) { return std::bit_cast<uint32_t>(x); }
float F(int v) { return static_cast<float>(v); }

void PutU16(Bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v & 0xFF);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}
uint16_t GetU16(const Bytes& b, size_t off) {
  return static_cast<uint16_t>(b[off] | (b[off + 1] << 8));
}

// A finite f16 with any sign, exponent (subnormals included) and mantissa.
uint16_t RandomF16(std::mt19937& rng) {
  for (;;) {
    const auto h = static_cast<uint16_t>(rng() & 0xFFFFu);
    if ((h & 0x7C00u) != 0x7C00u) return h;
  }
}
uint8_t RandomBits(std::mt19937& rng, int bits) {
  return static_cast<uint8_t>(rng() & ((1u << bits) - 1u));
}

// Dequantizes `bytes` at several misaligned starts and checks every output
// bit for bit against `expected`, and that nothing outside `out` is written.
void CheckDequantize(QuantKind kind, const Bytes& bytes, const std::vector<float>& expected) {
  const QuantLayout layout = LayoutOf(kind);
  REQUIRE(bytes.size() % layout.block_bytes == 0);
  REQUIRE(expected.size() == bytes.size() / layout.block_bytes * layout.block_elems);
  for (const size_t offset : {size_t{0}, size_t{1}, size_t{3}}) {
    Bytes in(offset, 0xA5);
    in.insert(in.end(), bytes.begin(), bytes.end());
    std::vector<float> out(offset + expected.size() + 1, std::bit_cast<float>(kSentinel));
    Dequantize(kind, std::span<const uint8_t>(in).subspan(offset),
               std::span<float>(out).subspan(offset, expected.size()));
    for (size_t i = 0; i < offset; ++i) REQUIRE(Bits(out[i]) == kSentinel);
    REQUIRE(Bits(out.back()) == kSentinel);
    size_t n_bad = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      if (Bits(out[offset + i]) != Bits(expected[i])) {
        if (n_bad++ < 5) {
          INFO("element " << i << " offset " << offset);
          CHECK(out[offset + i] == expected[i]);
        }
      }
    }
    CHECK(n_bad == 0);
  }
}

// ---- legacy 32-element blocks, from per-element quants q[0..31] ----

struct LegacyBlock {
  uint16_t d = 0;
  uint16_t m = 0;               // Q4_1 / Q5_1 only
  std::array<uint8_t, 32> q{};  // 4-bit (Q4), 5-bit (Q5) or the int8 bits (Q8_0)
};

// Element j < 16 is the low nibble of qs[j], element j + 16 its high nibble.
void PutNibbles(Bytes& b, size_t off, const std::array<uint8_t, 32>& q) {
  for (size_t j = 0; j < 16; ++j) {
    b[off + j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
  }
}
// Bit k of the little-endian u32 is bit 4 of element k.
void PutHighBits(Bytes& b, size_t off, const std::array<uint8_t, 32>& q) {
  uint32_t qh = 0;
  for (size_t k = 0; k < 32; ++k) qh |= uint32_t{(q[k] >> 4) & 1u} << k;
  for (size_t i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(qh >> (8 * i));
}

Bytes PackLegacy(QuantKind kind, const LegacyBlock& blk) {
  Bytes b(LayoutOf(kind).block_bytes, 0);
  PutU16(b, 0, blk.d);
  switch (kind) {
    case QuantKind::kQ4_0:
      PutNibbles(b, 2, blk.q);
      break;
    case QuantKind::kQ4_1:
      PutU16(b, 2, blk.m);
      PutNibbles(b, 4, blk.q);
      break;
    case QuantKind::kQ5_0:
      PutHighBits(b, 2, blk.q);
      PutNibbles(b, 6, blk.q);
      break;
    case QuantKind::kQ5_1:
      PutU16(b, 2, blk.m);
      PutHighBits(b, 4, blk.q);
      PutNibbles(b, 8, blk.q);
      break;
    case QuantKind::kQ8_0:
      std::copy(blk.q.begin(), blk.q.end(), b.begin() + 2);
      break;
    default:
      FAIL("not a legacy kind");
  }
  return b;
}

// The formulas of §4.4, in ggml's operation order (integer quant → float,
// times d, plus m).
float RefLegacy(QuantKind kind, const LegacyBlock& blk, size_t k) {
  const float d = F16ToF32(blk.d);
  const float m = F16ToF32(blk.m);
  const int q = blk.q[k];
  switch (kind) {
    case QuantKind::kQ4_0:
      return F(q - 8) * d;
    case QuantKind::kQ4_1:
      return F(q) * d + m;
    case QuantKind::kQ5_0:
      return F(q - 16) * d;
    case QuantKind::kQ5_1:
      return F(q) * d + m;
    case QuantKind::kQ8_0:
      return F(static_cast<int8_t>(blk.q[k])) * d;
    default:
      return 0.0f;
  }
}

int QuantBits(QuantKind kind) {
  switch (kind) {
    case QuantKind::kQ4_0:
    case QuantKind::kQ4_1:
      return 4;
    case QuantKind::kQ5_0:
    case QuantKind::kQ5_1:
      return 5;
    default:
      return 8;
  }
}

// ---- K-quants ----

struct KBlock {  // Q4_K / Q5_K
  uint16_t d = 0;
  uint16_t dmin = 0;
  std::array<uint8_t, 8> sc{};   // 6-bit scale of sub-block j (elements 32j..32j+31)
  std::array<uint8_t, 8> mn{};   // 6-bit min of sub-block j
  std::array<uint8_t, 256> q{};  // 4-bit (Q4_K) or 5-bit (Q5_K)
};

// The 12-byte scale/min packing of §4.4 (inverse of get_scale_min_k4).
std::array<uint8_t, 12> PackScalesK4(const std::array<uint8_t, 8>& sc,
                                     const std::array<uint8_t, 8>& mn) {
  std::array<uint8_t, 12> s{};
  for (size_t j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
  }
  return s;
}

// Chunk c (elements 64c..64c+63): element 64c + l is the low nibble of
// qs[32c + l], element 64c + 32 + l its high nibble; Q5_K puts their bit 4 in
// bits 2c and 2c + 1 of qh[l].
Bytes PackK(QuantKind kind, const KBlock& blk) {
  const bool q5 = kind == QuantKind::kQ5_K;
  Bytes b(LayoutOf(kind).block_bytes, 0);
  PutU16(b, 0, blk.d);
  PutU16(b, 2, blk.dmin);
  const auto scales = PackScalesK4(blk.sc, blk.mn);
  std::copy(scales.begin(), scales.end(), b.begin() + 4);
  const size_t qh_at = 16;
  const size_t qs_at = q5 ? 48 : 16;
  for (size_t c = 0; c < 4; ++c) {
    for (size_t l = 0; l < 32; ++l) {
      const uint8_t lo = blk.q[64 * c + l];
      const uint8_t hi = blk.q[64 * c + 32 + l];
      b[qs_at + 32 * c + l] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
      if (q5) {
        b[qh_at + l] |=
            static_cast<uint8_t>((((lo >> 4) & 1) << (2 * c)) | (((hi >> 4) & 1) << (2 * c + 1)));
      }
    }
  }
  return b;
}

// y = (d·sc)·q − (dmin·mn), each product rounded to float32 first (ggml's
// d1 = d * sc; m1 = min * m; y = d1 * q - m1).
float RefK(const KBlock& blk, size_t e) {
  const float d1 = F16ToF32(blk.d) * F(blk.sc[e / 32]);
  const float m1 = F16ToF32(blk.dmin) * F(blk.mn[e / 32]);
  return d1 * F(blk.q[e]) - m1;
}

struct Q6Block {
  uint16_t d = 0;
  std::array<int8_t, 16> sc{};   // scale of sub-block s (elements 16s..16s+15)
  std::array<uint8_t, 256> q{};  // 6-bit, stored value q − 32
};

// Half h (elements 128h..): element 128h + 32k + l has its low 4 bits in
// ql[64h + l + 32·(k & 1)] (low nibble for k < 2, high for k ≥ 2) and its top
// 2 bits in bits 2k..2k+1 of qh[32h + l].
Bytes PackQ6(const Q6Block& blk) {
  Bytes b(210, 0);
  for (size_t e = 0; e < 256; ++e) {
    const size_t h = e / 128;
    const size_t k = (e % 128) / 32;
    const size_t l = e % 32;
    const size_t ql_at = 64 * h + l + 32 * (k & 1);
    const int shift = k < 2 ? 0 : 4;
    b[ql_at] |= static_cast<uint8_t>((blk.q[e] & 0x0F) << shift);
    b[128 + 32 * h + l] |= static_cast<uint8_t>((blk.q[e] >> 4) << (2 * k));
  }
  for (size_t s = 0; s < 16; ++s) b[192 + s] = static_cast<uint8_t>(blk.sc[s]);
  PutU16(b, 208, blk.d);
  return b;
}

// y = (d·sc)·(q − 32), left to right as ggml's d * sc[is] * q.
float RefQ6(const Q6Block& blk, size_t e) {
  return F16ToF32(blk.d) * F(blk.sc[e / 16]) * F(blk.q[e] - 32);
}

// ---- reference quantizers: scalar copies of ggml's *_ref code ----

Bytes RefQuantizeQ8_0(const std::vector<float>& x) {
  Bytes out(x.size() / 32 * 34);
  for (size_t blk = 0; blk < x.size() / 32; ++blk) {
    float amax = 0.0f;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * blk + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    PutU16(out, 34 * blk, F32ToF16(d));
    for (size_t j = 0; j < 32; ++j) {
      const auto q = static_cast<int8_t>(std::roundf(x[32 * blk + j] * id));
      out[34 * blk + 2 + j] = static_cast<uint8_t>(q);
    }
  }
  return out;
}

Bytes RefQuantizeQ4_0(const std::vector<float>& x) {
  Bytes out(x.size() / 32 * 18);
  for (size_t blk = 0; blk < x.size() / 32; ++blk) {
    const float* v = x.data() + 32 * blk;
    float amax = 0.0f;
    float max = 0.0f;
    for (size_t j = 0; j < 32; ++j) {
      if (amax < std::fabs(v[j])) {
        amax = std::fabs(v[j]);
        max = v[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    PutU16(out, 18 * blk, F32ToF16(d));
    for (size_t j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(v[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(v[j + 16] * id + 8.5f));
      out[18 * blk + 2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
  return out;
}

// Random blocks of 32 floats at scales spanning 1e-4 .. 1e4, some with a
// single large outlier, some constant, some all zero.
std::vector<float> RandomInputs(std::mt19937& rng, size_t n_blocks) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_scale(-4.0f, 4.0f);
  std::vector<float> x(32 * n_blocks);
  for (size_t blk = 0; blk < n_blocks; ++blk) {
    const float scale = std::pow(10.0f, log_scale(rng));
    float* v = x.data() + 32 * blk;
    switch (blk % 8) {
      case 5:
        for (size_t j = 0; j < 32; ++j) v[j] = 0.0f;
        break;
      case 6:
        for (size_t j = 0; j < 32; ++j) v[j] = -scale;
        break;
      default:
        for (size_t j = 0; j < 32; ++j) v[j] = scale * normal(rng);
        if (blk % 8 == 7) v[rng() % 32] = 50.0f * scale;
        break;
    }
  }
  return x;
}

std::vector<float> Dequantized(QuantKind kind, const Bytes& bytes) {
  std::vector<float> y(bytes.size() / LayoutOf(kind).block_bytes * LayoutOf(kind).block_elems);
  Dequantize(kind, bytes, y);
  return y;
}

constexpr QuantKind kLegacyKinds[] = {QuantKind::kQ4_0, QuantKind::kQ4_1, QuantKind::kQ5_0,
                                      QuantKind::kQ5_1, QuantKind::kQ8_0};

TEST_CASE("LayoutOf gives the GGUF block sizes and the enum holds ggml type ids",
          "[kernels][quant]") {
  struct Row {
    QuantKind kind;
    uint32_t ggml_id, elems, bytes;
  };
  const Row rows[] = {{QuantKind::kQ4_0, 2, 32, 18},    {QuantKind::kQ4_1, 3, 32, 20},
                      {QuantKind::kQ5_0, 6, 32, 22},    {QuantKind::kQ5_1, 7, 32, 24},
                      {QuantKind::kQ8_0, 8, 32, 34},    {QuantKind::kQ4_K, 12, 256, 144},
                      {QuantKind::kQ5_K, 13, 256, 176}, {QuantKind::kQ6_K, 14, 256, 210}};
  for (const Row& row : rows) {
    INFO("ggml type " << row.ggml_id);
    CHECK(static_cast<uint32_t>(row.kind) == row.ggml_id);
    CHECK(LayoutOf(row.kind).block_elems == row.elems);
    CHECK(LayoutOf(row.kind).block_bytes == row.bytes);
  }
}

TEST_CASE("Dequantize legacy blocks matches the scalar formulas bit for bit", "[kernels][quant]") {
  std::mt19937 rng(20240601);
  for (const QuantKind kind : kLegacyKinds) {
    // 130 blocks cross the kernel's 64-block batches twice.
    for (const size_t n_blocks : {size_t{0}, size_t{1}, size_t{7}, size_t{64}, size_t{130}}) {
      INFO("ggml type " << static_cast<int>(kind) << " blocks " << n_blocks);
      Bytes bytes;
      std::vector<float> expected;
      for (size_t blk_idx = 0; blk_idx < n_blocks; ++blk_idx) {
        LegacyBlock blk;
        blk.d = RandomF16(rng);
        blk.m = RandomF16(rng);
        for (auto& q : blk.q) q = RandomBits(rng, QuantBits(kind));
        const Bytes packed = PackLegacy(kind, blk);
        bytes.insert(bytes.end(), packed.begin(), packed.end());
        for (size_t k = 0; k < 32; ++k) expected.push_back(RefLegacy(kind, blk, k));
      }
      CheckDequantize(kind, bytes, expected);
    }
  }
}

TEST_CASE("Dequantize legacy hand blocks", "[kernels][quant]") {
  // Each block: fields written byte by byte; expected values derived by hand.
  SECTION("Q4_0 with d = -0.5: nibble 0 gives 4 and nibble 15 gives -3.5") {
    Bytes b = {0x00, 0xB8};                          // f16 -0.5
    for (int j = 0; j < 16; ++j) b.push_back(0xF0);  // low nibbles 0, high nibbles 15
    std::vector<float> expected(32, 4.0f);
    std::fill(expected.begin() + 16, expected.end(), -3.5f);
    CheckDequantize(QuantKind::kQ4_0, b, expected);
  }
  SECTION("Q4_1 with d = 0.25 and m = -1") {
    Bytes b = {0x00, 0x34, 0x00, 0xBC};              // d = 0.25, m = -1
    for (int j = 0; j < 16; ++j) b.push_back(0x0F);  // low nibbles 15, high nibbles 0
    std::vector<float> expected(32, 2.75f);
    std::fill(expected.begin() + 16, expected.end(), -1.0f);
    CheckDequantize(QuantKind::kQ4_1, b, expected);
  }
  SECTION("Q5_0 with d = 2 and the fifth bit set on the second half") {
    Bytes b = {0x00, 0x40, 0x00, 0x00, 0xFF, 0xFF};  // d = 2, qh = 0xFFFF0000
    for (int j = 0; j < 16; ++j) b.push_back(0xF0);
    std::vector<float> expected(32, -32.0f);                  // (0 - 16)·2
    std::fill(expected.begin() + 16, expected.end(), 30.0f);  // (31 - 16)·2
    CheckDequantize(QuantKind::kQ5_0, b, expected);
  }
  SECTION("Q5_1 with d = 1 and m = 0.5 and the fifth bit set on the first half") {
    Bytes b = {0x00, 0x3C, 0x00, 0x38, 0xFF, 0xFF, 0x00, 0x00};
    for (int j = 0; j < 16; ++j) b.push_back(0x0F);
    std::vector<float> expected(32, 31.5f);
    std::fill(expected.begin() + 16, expected.end(), 0.5f);
    CheckDequantize(QuantKind::kQ5_1, b, expected);
  }
  SECTION("Q8_0 with d = -0.5 over -128 and 127 and 1") {
    Bytes b = {0x00, 0xB8, 0x80, 0x7F, 0x01};
    b.resize(34, 0x00);
    std::vector<float> expected(32, -0.0f);  // 0·(-0.5)
    expected[0] = 64.0f;
    expected[1] = -63.5f;
    expected[2] = -0.5f;
    CheckDequantize(QuantKind::kQ8_0, b, expected);
  }
  SECTION("d = 0 gives zeros whatever the quants") {
    for (const QuantKind kind : kLegacyKinds) {
      INFO("ggml type " << static_cast<int>(kind));
      Bytes b(LayoutOf(kind).block_bytes, 0x5A);
      PutU16(b, 0, 0x0000);
      if (kind == QuantKind::kQ4_1 || kind == QuantKind::kQ5_1) PutU16(b, 2, 0x0000);
      for (const float y : Dequantized(kind, b)) CHECK(y == 0.0f);
    }
  }
}

TEST_CASE("Dequantize Q4_K and Q5_K match the scalar formulas bit for bit", "[kernels][quant]") {
  std::mt19937 rng(7);
  for (const QuantKind kind : {QuantKind::kQ4_K, QuantKind::kQ5_K}) {
    for (const size_t n_blocks : {size_t{0}, size_t{1}, size_t{3}, size_t{65}}) {
      INFO("ggml type " << static_cast<int>(kind) << " blocks " << n_blocks);
      Bytes bytes;
      std::vector<float> expected;
      for (size_t blk_idx = 0; blk_idx < n_blocks; ++blk_idx) {
        KBlock blk;
        blk.d = RandomF16(rng);
        blk.dmin = RandomF16(rng);
        for (auto& s : blk.sc) s = RandomBits(rng, 6);
        for (auto& m : blk.mn) m = RandomBits(rng, 6);
        for (auto& q : blk.q) q = RandomBits(rng, kind == QuantKind::kQ5_K ? 5 : 4);
        const Bytes packed = PackK(kind, blk);
        bytes.insert(bytes.end(), packed.begin(), packed.end());
        for (size_t e = 0; e < 256; ++e) expected.push_back(RefK(blk, e));
      }
      CheckDequantize(kind, bytes, expected);
    }
  }
}

TEST_CASE("Dequantize Q6_K matches the scalar formula bit for bit", "[kernels][quant]") {
  std::mt19937 rng(11);
  for (const size_t n_blocks : {size_t{0}, size_t{1}, size_t{3}, size_t{65}}) {
    INFO("blocks " << n_blocks);
    Bytes bytes;
    std::vector<float> expected;
    for (size_t blk_idx = 0; blk_idx < n_blocks; ++blk_idx) {
      Q6Block blk;
      blk.d = RandomF16(rng);
      for (auto& s : blk.sc) s = static_cast<int8_t>(RandomBits(rng, 8));
      for (auto& q : blk.q) q = RandomBits(rng, 6);
      const Bytes packed = PackQ6(blk);
      bytes.insert(bytes.end(), packed.begin(), packed.end());
      for (size_t e = 0; e < 256; ++e) expected.push_back(RefQ6(blk, e));
    }
    CheckDequantize(QuantKind::kQ6_K, bytes, expected);
  }
}

// Sub-block j: scale 7 + 8j, min 63 - 8j (both cross 16, so the split j ≥ 4
// packing is exercised). Packed by hand:
//   scales[0..3]  = sc[0..3] | (sc[4..7] >> 4) << 6 = 7|128, 15|128, 23|192, 31|192
//   scales[4..7]  = mn[0..3] | (mn[4..7] >> 4) << 6 = 63|64, 55|64, 47, 39
//   scales[8..11] = (sc[4..7] & 15) | (mn[4..7] & 15) << 4 = 7|240, 15|112, 7|240, 15|112
constexpr std::array<uint8_t, 12> kHandScales = {135, 143, 215, 223, 127, 119,
                                                 47,  39,  247, 127, 247, 127};
int HandSc(size_t e) { return 7 + 8 * static_cast<int>(e / 32); }
int HandMn(size_t e) { return 63 - 8 * static_cast<int>(e / 32); }

TEST_CASE("Dequantize Q4_K hand block", "[kernels][quant]") {
  // d = 1, dmin = 0.5, qs[i] = (i % 16)·0x11: element e has quant e % 16.
  Bytes b = {0x00, 0x3C, 0x00, 0x38};
  b.insert(b.end(), kHandScales.begin(), kHandScales.end());
  for (int i = 0; i < 128; ++i) b.push_back(static_cast<uint8_t>((i % 16) * 0x11));
  REQUIRE(b.size() == 144);

  KBlock fields;
  for (size_t j = 0; j < 8; ++j) {
    fields.sc[j] = static_cast<uint8_t>(HandSc(32 * j));
    fields.mn[j] = static_cast<uint8_t>(HandMn(32 * j));
  }
  CHECK(PackScalesK4(fields.sc, fields.mn) == kHandScales);

  const std::vector<float> y = Dequantized(QuantKind::kQ4_K, b);
  CHECK(y[0] == -31.5f);    // 7·0 − 63/2
  CHECK(y[33] == -12.5f);   // 15·1 − 55/2
  CHECK(y[200] == 432.5f);  // 55·8 − 15/2
  CHECK(y[255] == 941.5f);  // 63·15 − 7/2
  for (size_t e = 0; e < 256; ++e) {
    INFO("element " << e);
    CHECK(y[e] == static_cast<float>(HandSc(e) * static_cast<int>(e % 16)) - 0.5f * F(HandMn(e)));
  }
}

TEST_CASE("Dequantize Q5_K hand block", "[kernels][quant]") {
  // d = 1, dmin = 0.5, the hand scales, qs all 0xF0 (low nibble 0, high 15)
  // and qh all 0xAA (bit 2c clear, bit 2c+1 set): element e of a 64-chunk has
  // quant 0 in its first 32 and 15 + 16 = 31 in its last 32.
  Bytes b = {0x00, 0x3C, 0x00, 0x38};
  b.insert(b.end(), kHandScales.begin(), kHandScales.end());
  b.insert(b.end(), 32, 0xAA);
  b.insert(b.end(), 128, 0xF0);
  REQUIRE(b.size() == 176);
  const std::vector<float> y = Dequantized(QuantKind::kQ5_K, b);
  CHECK(y[0] == -31.5f);     // 7·0 − 63/2
  CHECK(y[32] == 437.5f);    // 15·31 − 55/2
  CHECK(y[255] == 1949.5f);  // 63·31 − 7/2
  for (size_t e = 0; e < 256; ++e) {
    INFO("element " << e);
    const int q = e % 64 < 32 ? 0 : 31;
    CHECK(y[e] == static_cast<float>(HandSc(e) * q) - 0.5f * F(HandMn(e)));
  }

  // qh all 0x55 flips the fifth bits: 16 in the first halves, 15 in the second.
  std::fill(b.begin() + 16, b.begin() + 48, 0x55);
  const std::vector<float> y2 = Dequantized(QuantKind::kQ5_K, b);
  CHECK(y2[0] == 80.5f);    // 7·16 − 63/2
  CHECK(y2[32] == 197.5f);  // 15·15 − 55/2
}

TEST_CASE("Dequantize Q6_K hand blocks", "[kernels][quant]") {
  // scales[s] = s − 8, d = 0.25 at byte 208.
  auto make = [](uint8_t ql, uint8_t qh) {
    Bytes b(128, ql);
    b.insert(b.end(), 64, qh);
    for (int s = 0; s < 16; ++s) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(s - 8)));
    b.push_back(0x00);
    b.push_back(0x34);
    return b;
  };
  SECTION("all quants 0 (stored -32) give -8·(s - 8)") {
    const std::vector<float> y = Dequantized(QuantKind::kQ6_K, make(0x00, 0x00));
    for (size_t e = 0; e < 256; ++e) CHECK(y[e] == -8.0f * F(static_cast<int>(e / 16) - 8));
  }
  SECTION("all quants 63 (stored 31) give 7.75·(s - 8)") {
    const std::vector<float> y = Dequantized(QuantKind::kQ6_K, make(0xFF, 0xFF));
    for (size_t e = 0; e < 256; ++e) CHECK(y[e] == 7.75f * F(static_cast<int>(e / 16) - 8));
  }
  SECTION("one ql and one qh byte reach elements 0 and 32 and 64 and 96") {
    // d = 1, scales all 1; ql[0] = 0x21, qh[0] = 0b11'10'01'00.
    Bytes b(210, 0);
    b[0] = 0x21;
    b[128] = 0xE4;
    for (int s = 0; s < 16; ++s) b[192 + s] = 1;
    PutU16(b, 208, 0x3C00);
    const std::vector<float> y = Dequantized(QuantKind::kQ6_K, b);
    CHECK(y[0] == -31.0f);   // 1 | 0 << 4 = 1
    CHECK(y[32] == -16.0f);  // 0 | 1 << 4 = 16
    CHECK(y[64] == 2.0f);    // 2 | 2 << 4 = 34
    CHECK(y[96] == 16.0f);   // 0 | 3 << 4 = 48
    for (size_t e = 0; e < 256; ++e) {
      if (e % 32 != 0 || e >= 128) CHECK(y[e] == -32.0f);
    }
  }
}

TEST_CASE("Dequantize decodes only the blocks both spans hold", "[kernels][quant]") {
  Bytes b(2 * 34, 0);
  PutU16(b, 0, 0x3C00);  // d = 1
  b[2] = 5;
  PutU16(b, 34, 0x3C00);
  b[36] = 7;
  std::vector<float> out(96, std::bit_cast<float>(kSentinel));
  Dequantize(QuantKind::kQ8_0, b, out);  // 2 blocks of bytes, room for 3
  CHECK(out[0] == 5.0f);
  CHECK(out[32] == 7.0f);
  for (size_t i = 64; i < 96; ++i) CHECK(Bits(out[i]) == kSentinel);
}

TEST_CASE("QuantizeQ8_0 matches ggml quantize_row_q8_0_ref bit for bit", "[kernels][quant]") {
  std::mt19937 rng(42);
  const std::vector<float> x = RandomInputs(rng, 200);
  Bytes out(200 * 34, 0xCC);
  QuantizeQ8_0(x, out);
  CHECK(out == RefQuantizeQ8_0(x));
}

TEST_CASE("QuantizeQ8_0 rounds halves away from zero", "[kernels][quant]") {
  // With 127·2^-4 as max|x|, d = 2^-4 exactly and x·(1/d) is exact.
  const float step = 0.0625f;
  std::vector<float> x(32, 0.0f);
  const float halves[] = {0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 126.5f};
  for (size_t j = 0; j < 6; ++j) x[j] = halves[j] * step;
  x[31] = 127.0f * step;
  Bytes out(34);
  QuantizeQ8_0(x, out);
  CHECK(GetU16(out, 0) == 0x2C00);  // f16 2^-4
  const int expected[] = {1, 2, 3, -1, -3, 127};
  for (size_t j = 0; j < 6; ++j) CHECK(static_cast<int8_t>(out[2 + j]) == expected[j]);
  CHECK(static_cast<int8_t>(out[33]) == 127);
}

TEST_CASE("QuantizeQ8_0 round trip error is within half a step", "[kernels][quant]") {
  // Format bound: q = round(x/d) with the float32 d = max|x|/127, stored as
  // f16 d16, so |x − d16·q| ≤ d/2 + 127·|d − d16| (plus float32 rounding of
  // 1/d and of the product, covered by 1e-4·d).
  std::mt19937 rng(3);
  const std::vector<float> x = RandomInputs(rng, 256);
  Bytes q(256 * 34);
  QuantizeQ8_0(x, q);
  const std::vector<float> y = Dequantized(QuantKind::kQ8_0, q);
  for (size_t blk = 0; blk < 256; ++blk) {
    float amax = 0.0f;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * blk + j]));
    const double d = amax / 127.0f;
    const double d16 = F16ToF32(GetU16(q, 34 * blk));
    const double bound = 0.5 * d + 127.0 * std::fabs(d - d16) + 1e-4 * d;
    for (size_t j = 0; j < 32; ++j) {
      const size_t i = 32 * blk + j;
      INFO("block " << blk << " element " << j << " x " << x[i] << " y " << y[i]);
      CHECK(std::fabs(double{x[i]} - double{y[i]}) <= bound);
    }
  }
}

TEST_CASE("QuantizeQ8_0 with an f16-exact scale is within d/2 and exact on the grid",
          "[kernels][quant]") {
  std::mt19937 rng(5);
  const float d = 0.0234375f;  // 3·2^-7, exact in f16
  SECTION("values on the grid round-trip exactly") {
    std::vector<float> x(32);
    for (size_t j = 0; j < 32; ++j) x[j] = d * F(static_cast<int>(rng() % 255) - 127);
    x[7] = -127.0f * d;  // max|x| = 127·d, so the block's scale is d
    Bytes q(34);
    QuantizeQ8_0(x, q);
    CHECK(F16ToF32(GetU16(q, 0)) == d);
    const std::vector<float> y = Dequantized(QuantKind::kQ8_0, q);
    for (size_t j = 0; j < 32; ++j) CHECK(y[j] == x[j]);
  }
  SECTION("values off the grid are within d/2") {
    std::uniform_real_distribution<float> u(-127.0f * d, 127.0f * d);
    std::vector<float> x(32);
    for (float& v : x) v = u(rng);
    x[0] = 127.0f * d;
    Bytes q(34);
    QuantizeQ8_0(x, q);
    REQUIRE(F16ToF32(GetU16(q, 0)) == d);
    const std::vector<float> y = Dequantized(QuantKind::kQ8_0, q);
    for (size_t j = 0; j < 32; ++j) {
      CHECK(std::fabs(double{x[j]} - double{y[j]}) <= 0.5 * d * (1.0 + 1e-6));
    }
  }
}

TEST_CASE("QuantizeQ8_0 edge blocks", "[kernels][quant]") {
  SECTION("a zero block gives d = 0 and zero quants") {
    const std::vector<float> x(64, 0.0f);
    Bytes q(68, 0xCC);
    QuantizeQ8_0(x, q);
    CHECK(q == Bytes(68, 0));
    for (const float y : Dequantized(QuantKind::kQ8_0, q)) CHECK(y == 0.0f);
  }
  SECTION("a block below the f16 range dequantizes to zeros") {
    std::vector<float> x(32, -1e-38f);
    x[3] = 1e-38f;
    Bytes q(34);
    QuantizeQ8_0(x, q);
    CHECK(GetU16(q, 0) == 0);
    for (const float y : Dequantized(QuantKind::kQ8_0, q)) CHECK(y == 0.0f);
  }
  SECTION("an infinite element gives d = inf and zero quants as ggml on x86-64") {
    std::vector<float> x(32, 1.0f);
    x[9] = INFINITY;
    Bytes q(34);
    QuantizeQ8_0(x, q);
    CHECK(GetU16(q, 0) == 0x7C00);
    for (size_t j = 0; j < 32; ++j) CHECK(q[2 + j] == 0);
  }
}

TEST_CASE("QuantizeQ4_0 matches ggml quantize_row_q4_0_ref bit for bit", "[kernels][quant]") {
  std::mt19937 rng(43);
  const std::vector<float> x = RandomInputs(rng, 200);
  Bytes out(200 * 18, 0xCC);
  QuantizeQ4_0(x, out);
  CHECK(out == RefQuantizeQ4_0(x));
}

TEST_CASE("QuantizeQ4_0 round trip error follows the -8..7 range", "[kernels][quant]") {
  // d = max/−8 (max = the signed element of largest |x|), stored as f16 d16;
  // q = min(15, floor(x/d + 8.5)) stores x/d rounded half up, in −8..7:
  // * the max element maps to −8, i.e. exactly −8·d16;
  // * x/d ≤ 7.5 (every element of max's sign, and the others up to 7.5·|d|)
  //   is within |d|/2 + 8·|d − d16| of −8..7 times d16;
  // * x/d > 7.5 (opposite sign, beyond 7.5·|d|) clamps to 7·d16.
  std::mt19937 rng(9);
  const std::vector<float> x = RandomInputs(rng, 256);
  Bytes q(256 * 18);
  QuantizeQ4_0(x, q);
  const std::vector<float> y = Dequantized(QuantKind::kQ4_0, q);
  for (size_t blk = 0; blk < 256; ++blk) {
    const float* v = x.data() + 32 * blk;
    size_t max_idx = 0;
    for (size_t j = 1; j < 32; ++j) {
      if (std::fabs(v[j]) > std::fabs(v[max_idx])) max_idx = j;
    }
    const double d = v[max_idx] / -8.0f;
    const float d16 = F16ToF32(GetU16(q, 18 * blk));
    const double bound = 0.5 * std::fabs(d) + 8.0 * std::fabs(d - d16) + 1e-5 * std::fabs(d);
    for (size_t j = 0; j < 32; ++j) {
      const size_t i = 32 * blk + j;
      INFO("block " << blk << " element " << j << " x " << x[i] << " y " << y[i]);
      if (j == max_idx) {
        CHECK(y[i] == -8.0f * d16);
      } else if (d != 0.0 && double{v[j]} / d > 7.5 + 1e-5) {
        CHECK(y[i] == 7.0f * d16);
      } else {
        CHECK(std::fabs(double{v[j]} - double{y[i]}) <= bound);
      }
    }
  }
}

TEST_CASE("QuantizeQ4_0 hand blocks", "[kernels][quant]") {
  SECTION("the max element maps exactly and the opposite extreme clamps to 7") {
    // max = 5 → d = −0.625 (exact in f16); 5 → −8·d, −5 → x/d = 8 → 7·d = −4.375.
    std::vector<float> x(32, 0.0f);
    x[0] = 5.0f;
    x[1] = -5.0f;
    x[2] = 0.3125f;    // x/d = −0.5 → q = 8 (half up) → 0
    x[17] = -0.9375f;  // x/d = 1.5 → q = 10 (half up) → 2·d = −1.25
    Bytes q(18);
    QuantizeQ4_0(x, q);
    CHECK(GetU16(q, 0) == 0xB900);  // f16 −0.625
    const std::vector<float> y = Dequantized(QuantKind::kQ4_0, q);
    CHECK(y[0] == 5.0f);
    CHECK(y[1] == -4.375f);
    CHECK(y[2] == 0.0f);
    CHECK(y[17] == -1.25f);
    CHECK(y[5] == 0.0f);
  }
  SECTION("a zero block stores d = -0 and quants 8") {
    const std::vector<float> x(32, 0.0f);
    Bytes q(18);
    QuantizeQ4_0(x, q);
    CHECK(GetU16(q, 0) == 0x8000);
    for (size_t j = 0; j < 16; ++j) CHECK(q[2 + j] == 0x88);
    for (const float y : Dequantized(QuantKind::kQ4_0, q)) CHECK(y == 0.0f);
  }
}

}  // namespace
}  // namespace alloy::kernels
