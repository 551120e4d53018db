// Counter-based random numbers (mergekit-semantics.md, Decision b).
//
// Every draw is a pure function of (seed, name_hash, model, index): there is
// no generator state, so any chunking and any thread count give the same
// values. The generator is Philox4x32-10 (Salmon et al., SC'11, as in
// Random123): one 128-bit counter block gives four 32-bit words, and element
// `index` uses word (index % 4) of block (index / 4):
//
//   key     = Mix64(Mix64(seed) + name_hash), split into (lo32, hi32)
//   counter = (block lo32, block hi32, model, 0)
//   U       = (word >> 8) · 2^-24            — in [0, 1), 24-bit resolution
//
// Mix64 is the SplitMix64 finalizer (a bijection on 64 bits). Tensor names are
// hashed with 64-bit FNV-1a over the name's bytes (never std::hash, which is
// not stable across builds).
//
// Thread safety: pure functions; callers split spans across threads freely.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace alloy::kernels {

// 64-bit FNV-1a of the bytes of `s` (offset basis 0xcbf29ce484222325, prime
// 0x100000001b3). HashName("") == 0xcbf29ce484222325.
uint64_t HashName(std::string_view s) noexcept;

// The SplitMix64 finalizer: a bijective 64-bit mixer.
uint64_t Mix64(uint64_t x) noexcept;

// One Philox4x32-10 block (reference behaviour; matches Random123's
// known-answer vectors).
std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> counter,
                                   std::array<uint32_t, 2> key) noexcept;

// The 32 random bits of element `index`.
uint32_t RandomBits(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t index) noexcept;

// U(seed, name_hash, model, index) in [0, 1): (RandomBits >> 8) · 2^-24.
float Uniform(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t index) noexcept;

// A standard normal draw for element `index`: Box–Muller on the 32-bit draws
// 2·index and 2·index + 1, u1 = (bits + 0.5)·2^-32 in (0, 1) so the log is
// finite (|x| < 6.7), in float64.
double StandardNormal(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t index) noexcept;

// out[i] = Uniform(seed, name_hash, model, first_index + i).
// REQUIRES: first_index + out.size() does not wrap around 2^64.
void FillUniform(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t first_index,
                 std::span<float> out) noexcept;

}  // namespace alloy::kernels
