// Philox4x32-10 pieces shared by kernels/random.cc (the reference generator)
// and kernels/sparsify.cc (its many-blocks-at-once form). Internal to
// kernels/; the public API is kernels/random.h.
#pragma once

#include <array>
#include <cstdint>

#include "kernels/random.h"

namespace alloy::kernels::philox {

// Random123's constants (philox.h): multipliers and Weyl key increments.
inline constexpr uint32_t kM0 = 0xD2511F53u;
inline constexpr uint32_t kM1 = 0xCD9E8D57u;
inline constexpr uint32_t kW0 = 0x9E3779B9u;
inline constexpr uint32_t kW1 = 0xBB67AE85u;
inline constexpr int kRounds = 10;

// One block: ten rounds over counter (c0..c3) with key (k0, k1).
inline std::array<uint32_t, 4> Block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                     uint32_t k0, uint32_t k1) noexcept {
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t p0 = uint64_t{kM0} * c0;
    const uint64_t p1 = uint64_t{kM1} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

// The 64-bit stream key of (seed, name_hash): SplitMix64-mixed (random.cc
// explains why), split into Philox's two key words.
struct StreamKey {
  uint32_t k0;
  uint32_t k1;
};
inline StreamKey MakeKey(uint64_t seed, uint64_t name_hash) noexcept {
  const uint64_t key = Mix64(Mix64(seed) + name_hash);
  return {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
}

}  // namespace alloy::kernels::philox
