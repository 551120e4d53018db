// Tests for kernels/random: Philox4x32-10 known answers, the FNV-1a name
// hash, the purity of every draw (any split gives the same values) and the
// distribution of the uniforms.
#include "tests/kernels/kernel_test_support.h"
#include "kernels/random.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/parallel.h"

namespace alloy::kernels {
namespace {


TEST_CASE("Philox4x32-10 matches Random123's known-answer vectors", "[kernels][random]") {
  CHECK(Philox4x32({0, 0, 0, 0}, {0, 0}) ==
        std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(Philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(Philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("HashName is 64-bit FNV-1a", "[kernels][random]") {
  CHECK(HashName("") == 0xcbf29ce484222325ull);
  CHECK(HashName("a") == 0xaf63dc4c8601ec8cull);
  CHECK(HashName("foobar") == 0x85944171f73967e8ull);
  CHECK(HashName("model.layers.0.mlp.up_proj.weight") !=
        HashName("model.layers.1.mlp.up_proj.weight"));
}

TEST_CASE("RandomBits follows the documented layout", "[kernels][random]") {
  const uint64_t seed = 42;
  const uint64_t name = HashName("lm_head.weight");
  const uint64_t key = Mix64(Mix64(seed) + name);
  const std::array<uint32_t, 2> philox_key = {static_cast<uint32_t>(key),
                                              static_cast<uint32_t>(key >> 32)};
  for (uint64_t index : {uint64_t{0}, uint64_t{1}, uint64_t{6}, (uint64_t{1} << 33) + 3}) {
    const uint64_t block = index >> 2;
    const auto words = Philox4x32(
        {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 7u, 0u}, philox_key);
    CHECK(RandomBits(seed, name, 7, index) == words[index & 3]);
    CHECK(Uniform(seed, name, 7, index) == static_cast<float>(words[index & 3] >> 8) * 0x1p-24f);
  }
  // Pinned values: a recorded --seed must keep reproducing the same merge.
  CHECK(Mix64(0) == 0xe220a8397b1dcdafull);
}

TEST_CASE("FillUniform equals per-element Uniform for any start and length", "[kernels][random]") {
  const uint64_t name = HashName("model.embed_tokens.weight");
  for (uint64_t first :
       {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{5}, (uint64_t{1} << 32) + 3}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, kBlock - 1, kBlock, kBlock + 1}) {
      CAPTURE(first, n);
      std::vector<float> out(n);
      FillUniform(9, name, 2, first, out);
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) bad += out[i] != Uniform(9, name, 2, first + i);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("Uniform draws lie in 0 <= u < 1 on a 2^-24 grid with the right moments",
          "[kernels][random]") {
  const size_t n = 1 << 20;
  std::vector<float> u(n);
  FillUniform(1, HashName("t"), 0, 0, u);
  double sum = 0.0;
  double sum_sq = 0.0;
  size_t off_grid = 0;
  size_t out_of_range = 0;
  for (float v : u) {
    out_of_range += !(v >= 0.0f && v < 1.0f);
    const float scaled = v * 0x1p24f;
    off_grid += scaled != std::floor(scaled);
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  CHECK(out_of_range == 0);
  CHECK(off_grid == 0);
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  // Standard error of the mean is sqrt(1/12/n) ≈ 2.8e-4.
  CHECK(std::fabs(mean - 0.5) < 2e-3);
  CHECK(std::fabs(var - 1.0 / 12.0) < 2e-3);
}

TEST_CASE("Streams of different seeds, names and models are unrelated", "[kernels][random]") {
  const size_t n = 100000;
  const uint64_t name = HashName("w");
  std::vector<float> base(n), other_seed(n), other_name(n), other_model(n);
  FillUniform(0, name, 0, 0, base);
  FillUniform(1, name, 0, 0, other_seed);
  FillUniform(0, HashName("w2"), 0, 0, other_name);
  FillUniform(0, name, 1, 0, other_model);
  for (const std::vector<float>* other : {&other_seed, &other_name, &other_model}) {
    size_t same = 0;
    double cov = 0.0;
    for (size_t i = 0; i < n; ++i) {
      same += base[i] == (*other)[i];
      cov += (base[i] - 0.5) * ((*other)[i] - 0.5);
    }
    CHECK(same < 10);
    // Correlation of independent uniforms: |r| ≲ 4/sqrt(n) ≈ 0.013.
    CHECK(std::fabs(cov / n * 12.0) < 0.013);
  }
}

TEST_CASE("FillUniform through ParallelForChunks is identical at 1 and N threads",
          "[kernels][random]") {
  ThreadsGuard guard;
  const size_t n = 3 * kBlock + 17;
  const uint64_t name = HashName("model.norm.weight");
  std::vector<float> whole(n);
  FillUniform(5, name, 3, 100, whole);
  for (int threads : {1, 4}) {
    SetThreads(threads);
    std::vector<float> pieces(n);
    ParallelForChunks(n, 1000, [&](size_t, size_t begin, size_t end) {
      FillUniform(5, name, 3, 100 + begin, std::span<float>(pieces).subspan(begin, end - begin));
    });
    CHECK(pieces == whole);
  }
}

}  // namespace
}  // namespace alloy::kernels
