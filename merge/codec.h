// Element conversion between stored dtypes and float32, dispatching on DType
// to the kernels in kernels/convert.h. This is where bytes become floats.
//
// All functions handle unaligned input (they copy through aligned scratch
// when the pointer is not aligned for the element type).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/dtype.h"
#include "kernels/convert.h"

namespace alloy::merge {

// Bytes per element of `dtype` (whole-byte types).
size_t ElementBytes(formats::DType dtype);

// True when `dtype` can be decoded to f32 (floats and integer types).
bool CanDecode(formats::DType dtype);
// True when `dtype` can be encoded from f32.
bool CanEncode(formats::DType dtype);

// Decodes out.size() elements of `dtype` from `bytes`.
// REQUIRES: CanDecode(dtype); bytes.size() == out.size() * element size.
void DecodeToF32(formats::DType dtype, std::span<const uint8_t> bytes, std::span<float> out);

// Encodes `in` as `dtype` into `bytes`; statistics accumulate into *stats.
// REQUIRES: CanEncode(dtype); bytes.size() == in.size() * element size.
void EncodeFromF32(formats::DType dtype, std::span<const float> in, std::span<uint8_t> bytes,
                   kernels::Overflow f16_overflow, kernels::EncodeStats* stats);

// Encodes float64 values as `dtype` with one rounding (Decision (a)): f64 is
// copied, f32 is an RNE cast, narrower types go through a round-to-odd
// float32 in `scratch` (at least in.size() floats) and then RNE.
// REQUIRES: CanEncode(dtype); bytes.size() == in.size() * element size.
void EncodeFromF64(formats::DType dtype, std::span<const double> in, std::span<uint8_t> bytes,
                   std::span<float> scratch, kernels::Overflow f16_overflow,
                   kernels::EncodeStats* stats);

// Converts n elements `from` → `to` (bytes in, bytes out), through `scratch`
// (at least n floats) unless a fused or copy path exists.
// REQUIRES: CanDecode(from), CanEncode(to), sizes consistent.
void ConvertElements(formats::DType from, formats::DType to, std::span<const uint8_t> in,
                     std::span<uint8_t> out, std::span<float> scratch,
                     kernels::Overflow f16_overflow, kernels::EncodeStats* stats);

}  // namespace alloy::merge
