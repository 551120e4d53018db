// Element codecs between float32 and the stored floating types, and integer
// types where meaningful. Pure functions over spans: no allocation, no error
// path, noexcept. Decoding is exact. Encoding rounds to nearest, ties to even
// (RNE), integer-exact (independent of FPU rounding mode, FTZ/DAZ).
//
// NaN policy: bf16 keeps the sign and top payload and sets the quiet bit
// ((bits >> 16) | 0x40); f16 gives sign | 0x7E00; FP8 gives the format's NaN
// with the input's sign.
//
// Thread safety: pure; callers split spans across threads freely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace alloy::kernels {

// What happened while encoding a span (accumulated: callers zero it first).
struct EncodeStats {
  uint64_t n_overflow = 0;      // finite inputs that became ±inf
  uint64_t n_clamped = 0;       // finite inputs saturated to ±max finite
  uint64_t n_nan = 0;           // NaN inputs (carried over as NaN)
  float max_abs_finite = 0.0f;  // largest |x| over finite inputs
};

enum class Overflow : uint8_t {
  kToInf,     // IEEE behaviour: out-of-range finite values become ±inf (counted)
  kSaturate,  // clamp to ±max finite (counted)
};

// ---- scalar codecs (reference behaviour; also used by tests) ----
float Bf16ToF32(uint16_t bits) noexcept;
uint16_t F32ToBf16(float x) noexcept;  // RNE; finite values ≥ 0x7F7F8000 round to inf
float F16ToF32(uint16_t bits) noexcept;
uint16_t F32ToF16(float x) noexcept;  // RNE; |x| ≥ 65520 → inf
float F8E4M3ToF32(uint8_t bits) noexcept;
uint8_t F32ToF8E4M3(float x) noexcept;  // RNE, saturating at ±448; NaN/inf → NaN/±448
float F8E5M2ToF32(uint8_t bits) noexcept;
uint8_t F32ToF8E5M2(float x) noexcept;  // RNE, saturating at ±57344; inf → ±57344

// ---- span decoders: out.size() must equal in.size() ----
void DecodeBf16(std::span<const uint16_t> in, std::span<float> out) noexcept;
void DecodeF16(std::span<const uint16_t> in, std::span<float> out) noexcept;
void DecodeF8E4M3(std::span<const uint8_t> in, std::span<float> out) noexcept;
void DecodeF8E5M2(std::span<const uint8_t> in, std::span<float> out) noexcept;
void DecodeF64(std::span<const double> in, std::span<float> out) noexcept;  // RNE cast
void DecodeI8(std::span<const int8_t> in, std::span<float> out) noexcept;
void DecodeU8(std::span<const uint8_t> in, std::span<float> out) noexcept;
void DecodeI16(std::span<const int16_t> in, std::span<float> out) noexcept;
void DecodeI32(std::span<const int32_t> in, std::span<float> out) noexcept;
void DecodeI64(std::span<const int64_t> in, std::span<float> out) noexcept;

// ---- span encoders: out.size() must equal in.size(); stats accumulate ----
void EncodeBf16(std::span<const float> in, std::span<uint16_t> out, EncodeStats* stats) noexcept;
void EncodeF16(std::span<const float> in, std::span<uint16_t> out, Overflow overflow,
               EncodeStats* stats) noexcept;
// FP8 always saturates (alloy rule); clamped values are counted.
void EncodeF8E4M3(std::span<const float> in, std::span<uint8_t> out, EncodeStats* stats) noexcept;
void EncodeF8E5M2(std::span<const float> in, std::span<uint8_t> out, EncodeStats* stats) noexcept;
void EncodeF64(std::span<const float> in, std::span<double> out) noexcept;
// float64 → float32 rounded to odd (truncate, then set the last bit when
// inexact). Encoding that float32 with RNE into any type of at most 22
// significand bits (bf16, f16, fp8) gives the correctly rounded float64 value:
// one rounding, as Decision (a) asks of merge outputs. Overflow goes to
// ±FLT_MAX with the last bit set (which rounds to inf or saturates later);
// NaN stays NaN.
void NarrowF64RoundToOdd(std::span<const double> in, std::span<float> out) noexcept;
// NarrowF64RoundToOdd then EncodeBf16 / EncodeF16, in one pass (same bits,
// same stats).
void EncodeBf16FromF64(std::span<const double> in, std::span<uint16_t> out,
                       EncodeStats* stats) noexcept;
void EncodeF16FromF64(std::span<const double> in, std::span<uint16_t> out, Overflow overflow,
                      EncodeStats* stats) noexcept;
// Integers: RNE, saturating (counted as clamped); NaN → 0 (counted as n_nan).
void EncodeI8(std::span<const float> in, std::span<int8_t> out, EncodeStats* stats) noexcept;
void EncodeU8(std::span<const float> in, std::span<uint8_t> out, EncodeStats* stats) noexcept;
void EncodeI16(std::span<const float> in, std::span<int16_t> out, EncodeStats* stats) noexcept;
void EncodeI32(std::span<const float> in, std::span<int32_t> out, EncodeStats* stats) noexcept;
void EncodeI64(std::span<const float> in, std::span<int64_t> out, EncodeStats* stats) noexcept;

// ---- fused 16-bit paths (bit-identical to decode-then-encode) ----
void Bf16ToF16(std::span<const uint16_t> in, std::span<uint16_t> out, Overflow overflow,
               EncodeStats* stats) noexcept;
void F16ToBf16(std::span<const uint16_t> in, std::span<uint16_t> out, EncodeStats* stats) noexcept;

}  // namespace alloy::kernels
