// Philox4x32-10 with the constants of Random123 (philox.h): multipliers
// 0xD2511F53 / 0xCD9E8D57 and Weyl key increments 0x9E3779B9 / 0xBB67AE85.
// Ten rounds is Random123's recommended (Crush-resistant) count.
//
// Why four words per block: a block costs ten rounds of two 32×32→64
// multiplies; spreading it over four consecutive elements makes FillUniform
// about 4× cheaper than one block per element, while each element still
// depends only on its own (seed, name_hash, model, index).
//
// Why the key is mixed: the four inputs have 224 bits and Philox takes 192
// (128-bit counter + 64-bit key). seed and name_hash are folded into the key
// through SplitMix64's finalizer, so two (seed, name) pairs share a stream
// only on a 64-bit collision; model and index are placed in the counter
// exactly, so the streams of different models and elements never overlap.
#include "kernels/random.h"

#include <cmath>
#include <numbers>

#include "kernels/philox_internal.h"

namespace alloy::kernels {
namespace {

constexpr float kTwoPowMinus24 = 0x1p-24f;

using philox::Block;
using philox::MakeKey;
using philox::StreamKey;

inline std::array<uint32_t, 4> BlockAt(StreamKey key, uint32_t model, uint64_t block) noexcept {
  return Block(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), model, 0,
                     key.k0, key.k1);
}

inline float ToUniform(uint32_t bits) noexcept {
  return static_cast<float>(bits >> 8) * kTwoPowMinus24;  // exact: 24-bit integer × 2^-24
}

}  // namespace

uint64_t HashName(std::string_view s) noexcept {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t Mix64(uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> counter,
                                   std::array<uint32_t, 2> key) noexcept {
  return Block(counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
}

uint32_t RandomBits(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t index) noexcept {
  return BlockAt(MakeKey(seed, name_hash), model, index >> 2)[index & 3];
}

float Uniform(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t index) noexcept {
  return ToUniform(RandomBits(seed, name_hash, model, index));
}

double StandardNormal(uint64_t seed, uint64_t name_hash, uint32_t model,
                      uint64_t index) noexcept {
  constexpr double kTwoPow32 = 4294967296.0;
  const double u1 =
      (static_cast<double>(RandomBits(seed, name_hash, model, 2 * index)) + 0.5) / kTwoPow32;
  const double u2 = static_cast<double>(RandomBits(seed, name_hash, model, 2 * index + 1)) / kTwoPow32;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

void FillUniform(uint64_t seed, uint64_t name_hash, uint32_t model, uint64_t first_index,
                 std::span<float> out) noexcept {
  const StreamKey key = MakeKey(seed, name_hash);
  const size_t n = out.size();
  size_t i = 0;
  uint64_t index = first_index;
  // Leading partial block (first_index not a multiple of 4).
  if ((index & 3) != 0 && n > 0) {
    const std::array<uint32_t, 4> words = BlockAt(key, model, index >> 2);
    for (; i < n && (index & 3) != 0; ++i, ++index) out[i] = ToUniform(words[index & 3]);
  }
  for (; i + 4 <= n; i += 4, index += 4) {
    const std::array<uint32_t, 4> words = BlockAt(key, model, index >> 2);
    out[i] = ToUniform(words[0]);
    out[i + 1] = ToUniform(words[1]);
    out[i + 2] = ToUniform(words[2]);
    out[i + 3] = ToUniform(words[3]);
  }
  if (i < n) {
    const std::array<uint32_t, 4> words = BlockAt(key, model, index >> 2);
    for (size_t word = 0; i < n; ++i, ++word) out[i] = ToUniform(words[word]);
  }
}

}  // namespace alloy::kernels
