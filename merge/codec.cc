#include "merge/codec.h"

#include <cstring>

#include "formats/status.h"

namespace alloy::merge {
namespace {

using formats::DType;

// A typed span over `bytes`. The caller guarantees alignment.
template <typename T>
std::span<const T> As(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}
template <typename T>
std::span<T> AsMut(std::span<uint8_t> bytes) {
  return {reinterpret_cast<T*>(bytes.data()), bytes.size() / sizeof(T)};
}

bool Aligned(const void* p, size_t align) {
  return reinterpret_cast<uintptr_t>(p) % align == 0;
}

// Calls fn(aligned_bytes) with `bytes` or an aligned copy of a piece of it.
// Misaligned input is rare (old writers); it is copied in 64 KiB pieces.
template <typename Fn>
void WithAlignedInput(std::span<const uint8_t> bytes, size_t elem, Fn&& fn) {
  if (Aligned(bytes.data(), elem)) {
    fn(bytes, size_t{0});
    return;
  }
  alignas(64) uint8_t buf[64 * 1024];
  const size_t piece = sizeof(buf) / elem * elem;
  for (size_t off = 0; off < bytes.size(); off += piece) {
    const size_t n = std::min(piece, bytes.size() - off);
    std::memcpy(buf, bytes.data() + off, n);
    fn(std::span<const uint8_t>(buf, n), off / elem);
  }
}

}  // namespace

size_t ElementBytes(DType d) { return static_cast<size_t>(formats::DTypeBits(d)) / 8; }

bool CanDecode(DType dtype) {
  switch (dtype) {
    case DType::kF64: case DType::kF32: case DType::kBF16: case DType::kF16:
    case DType::kF8_E4M3: case DType::kF8_E5M2: case DType::kI8: case DType::kU8:
    case DType::kI16: case DType::kI32: case DType::kI64:
      return true;
    default:
      return false;
  }
}

bool CanEncode(DType dtype) { return CanDecode(dtype); }

void DecodeToF32(DType dtype, std::span<const uint8_t> bytes, std::span<float> out) {
  const size_t elem = ElementBytes(dtype);
  ALLOY_CHECK(CanDecode(dtype) && bytes.size() == out.size() * elem);
  WithAlignedInput(bytes, elem, [&](std::span<const uint8_t> in, size_t first) {
    std::span<float> o = out.subspan(first, in.size() / elem);
    switch (dtype) {
      case DType::kF32: std::memcpy(o.data(), in.data(), in.size()); break;
      case DType::kF64: kernels::DecodeF64(As<double>(in), o); break;
      case DType::kBF16: kernels::DecodeBf16(As<uint16_t>(in), o); break;
      case DType::kF16: kernels::DecodeF16(As<uint16_t>(in), o); break;
      case DType::kF8_E4M3: kernels::DecodeF8E4M3(in, o); break;
      case DType::kF8_E5M2: kernels::DecodeF8E5M2(in, o); break;
      case DType::kI8: kernels::DecodeI8(As<int8_t>(in), o); break;
      case DType::kU8: kernels::DecodeU8(in, o); break;
      case DType::kI16: kernels::DecodeI16(As<int16_t>(in), o); break;
      case DType::kI32: kernels::DecodeI32(As<int32_t>(in), o); break;
      case DType::kI64: kernels::DecodeI64(As<int64_t>(in), o); break;
      default: ALLOY_CHECK(false);
    }
  });
}

void EncodeFromF32(DType dtype, std::span<const float> in, std::span<uint8_t> bytes,
                   kernels::Overflow f16_overflow, kernels::EncodeStats* stats) {
  ALLOY_CHECK(CanEncode(dtype) && bytes.size() == in.size() * ElementBytes(dtype));
  ALLOY_CHECK(Aligned(bytes.data(), ElementBytes(dtype)));
  switch (dtype) {
    case DType::kF32: std::memcpy(bytes.data(), in.data(), bytes.size()); break;
    case DType::kF64: kernels::EncodeF64(in, AsMut<double>(bytes)); break;
    case DType::kBF16: kernels::EncodeBf16(in, AsMut<uint16_t>(bytes), stats); break;
    case DType::kF16: kernels::EncodeF16(in, AsMut<uint16_t>(bytes), f16_overflow, stats); break;
    case DType::kF8_E4M3: kernels::EncodeF8E4M3(in, bytes, stats); break;
    case DType::kF8_E5M2: kernels::EncodeF8E5M2(in, bytes, stats); break;
    case DType::kI8: kernels::EncodeI8(in, AsMut<int8_t>(bytes), stats); break;
    case DType::kU8: kernels::EncodeU8(in, bytes, stats); break;
    case DType::kI16: kernels::EncodeI16(in, AsMut<int16_t>(bytes), stats); break;
    case DType::kI32: kernels::EncodeI32(in, AsMut<int32_t>(bytes), stats); break;
    case DType::kI64: kernels::EncodeI64(in, AsMut<int64_t>(bytes), stats); break;
    default: ALLOY_CHECK(false);
  }
}

void EncodeFromF64(DType dtype, std::span<const double> in, std::span<uint8_t> bytes,
                   std::span<float> scratch, kernels::Overflow f16_overflow,
                   kernels::EncodeStats* stats) {
  ALLOY_CHECK(CanEncode(dtype) && bytes.size() == in.size() * ElementBytes(dtype));
  if (dtype == DType::kF64) {
    std::memcpy(bytes.data(), in.data(), bytes.size());
    return;
  }
  if (dtype == DType::kBF16 && Aligned(bytes.data(), 2)) {
    kernels::EncodeBf16FromF64(in, AsMut<uint16_t>(bytes), stats);
    return;
  }
  if (dtype == DType::kF16 && Aligned(bytes.data(), 2)) {
    kernels::EncodeF16FromF64(in, AsMut<uint16_t>(bytes), f16_overflow, stats);
    return;
  }
  ALLOY_CHECK(scratch.size() >= in.size());
  std::span<float> f32 = scratch.first(in.size());
  if (dtype == DType::kF32) {
    kernels::DecodeF64(in, f32);
  } else {
    kernels::NarrowF64RoundToOdd(in, f32);
  }
  EncodeFromF32(dtype, f32, bytes, f16_overflow, stats);
}

void ConvertElements(DType from, DType to, std::span<const uint8_t> in, std::span<uint8_t> out,
                     std::span<float> scratch, kernels::Overflow f16_overflow,
                     kernels::EncodeStats* stats) {
  const size_t n = in.size() / ElementBytes(from);
  ALLOY_CHECK(out.size() == n * ElementBytes(to));
  if (from == to) {
    std::memcpy(out.data(), in.data(), in.size());
    return;
  }
  if (from == DType::kBF16 && to == DType::kF16 && Aligned(in.data(), 2)) {
    kernels::Bf16ToF16(As<uint16_t>(in), AsMut<uint16_t>(out), f16_overflow, stats);
    return;
  }
  if (from == DType::kF16 && to == DType::kBF16 && Aligned(in.data(), 2)) {
    kernels::F16ToBf16(As<uint16_t>(in), AsMut<uint16_t>(out), stats);
    return;
  }
  ALLOY_CHECK(scratch.size() >= n);
  std::span<float> f32 = scratch.first(n);
  DecodeToF32(from, in, f32);
  EncodeFromF32(to, f32, out, f16_overflow, stats);
}

}  // namespace alloy::merge
