// Tests for kernels/lowrank: LowRankRow against the textbook dot product.
#include "kernels/lowrank.h"

#include <bit>
#include <cstdint>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

namespace alloy::kernels {
namespace {

TEST_CASE("LowRankRow equals the k-ordered dot product for any segment", "[kernels]") {
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  for (size_t rank : {size_t{1}, size_t{3}, size_t{16}}) {
    const size_t cols = 37;
    std::vector<double> l(rank), r(rank * cols);
    for (double& v : l) v = normal(rng);
    for (double& v : r) v = normal(rng);
    std::vector<double> whole(cols);
    LowRankRow(l, r.data(), cols, whole);
    for (size_t j = 0; j < cols; ++j) {
      double want = 0.0;
      for (size_t k = 0; k < rank; ++k) want += l[k] * r[k * cols + j];
      CHECK(std::bit_cast<uint64_t>(whole[j]) == std::bit_cast<uint64_t>(want));
    }
    // Any segment gives the same bits as the whole row.
    for (size_t first : {size_t{0}, size_t{5}, size_t{36}}) {
      for (size_t len : {size_t{0}, size_t{1}, cols - first}) {
        std::vector<double> part(len + 1, 7.0);
        LowRankRow(l, r.data() + first, cols, std::span<double>(part.data(), len));
        for (size_t j = 0; j < len; ++j) CHECK(part[j] == whole[first + j]);
        CHECK(part[len] == 7.0);
      }
    }
  }
}

}  // namespace
}  // namespace alloy::kernels
