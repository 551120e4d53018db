// GGUF block quantization: dequantization of the legacy 32-element types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the 256-element K-quants (Q4_K, Q5_K,
// Q6_K), and ggml's two reference quantizers that alloy writes (Q8_0, Q4_0).
// Byte layouts: checkpoint-formats.md §4.3–§4.4 (Q5_K: f16 d @0, f16 dmin @2,
// u8 scales[12] @4 packed as Q4_K's, u8 qh[32] @16, u8 qs[128] @48).
//
// Results are bit-identical to ggml's scalar reference code
// (dequantize_row_*, quantize_row_q8_0_ref, quantize_row_q4_0_ref): the same
// float32 operations in the same order, f16 fields decoded exactly and
// encoded RNE (kernels/convert.h), and no FMA contraction.
//
// Pure functions over spans: no allocation, no error path, noexcept. Spans
// must not overlap.
//
// Thread safety: pure; callers split spans across threads at block
// boundaries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace alloy::kernels {

// The enumerator values are ggml's type ids (GGML_TYPE_Q4_0 = 2, …), so a
// reader can convert a validated id with static_cast.
enum class QuantKind : uint8_t {
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
};

struct QuantLayout {
  uint32_t block_elems;  // elements per block: 32, or 256 for the K-quants
  uint32_t block_bytes;  // bytes per block
};

// The block size of k ({0, 0} for a value that is not an enumerator).
QuantLayout LayoutOf(QuantKind k) noexcept;

// Dequantizes n whole blocks.
// blocks: size n·block_bytes; out: size n·block_elems.
// REQUIRES: both sizes describe the same n (otherwise only the blocks that
// both spans hold completely are decoded); k is an enumerator.
void Dequantize(QuantKind k, std::span<const uint8_t> blocks, std::span<float> out) noexcept;

// ggml's quantize_row_q8_0_ref: per block of 32, d = max|x| / 127, stored as
// f16; q = roundf(x · (1/d)) (half away from zero) with the float32 d.
// Dequantized, |x − y| ≤ d/2 + 127·|d − f16(d)| (half a step, plus the f16
// rounding of the scale).
// in: size 32·n; out: size 34·n.
void QuantizeQ8_0(std::span<const float> in, std::span<uint8_t> out) noexcept;

// ggml's quantize_row_q4_0_ref: per block of 32, `max` = the element of
// largest |x| (the first on ties), d = max / −8 stored as f16, and
// q = min(15, trunc(x · (1/d) + 8.5)). Dequantized, `max` becomes −8·f16(d)
// (max itself when d is exact in f16); other elements are within
// |d|/2 + 8·|d − f16(d)|, except those of the opposite sign beyond 7.5·|d|,
// which clamp to 7·f16(d).
// in: size 32·n; out: size 18·n.
void QuantizeQ4_0(std::span<const float> in, std::span<uint8_t> out) noexcept;

// NOTE: for the quantizers, NaN/inf inputs and blocks so small that 1/d is
// not accurate (max|x| below ~1e-36, where f16(d) is 0 anyway) give the bytes
// of ggml's scalar code on x86-64, whose float → int8 conversion turns
// out-of-range values into 0. Callers should not rely on them.

}  // namespace alloy::kernels
