// Tests for kernels/lowrank: LowRankRow against the textbook dot product.
#include "kernels/lowrank.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include <Eigen/Dense>
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

TEST_CASE("LowRankSingularValues equals the SVD of the full product", "[kernels]") {
  std::mt19937 rng(9);
  std::normal_distribution<double> normal;
  for (auto [m, k, n] : {std::tuple<size_t, size_t, size_t>{30, 4, 20}, {5, 8, 40}, {40, 8, 3},
                         {1, 1, 1}}) {
    std::vector<double> l(m * k), r(k * n);
    for (double& v : l) v = normal(rng);
    for (double& v : r) v = normal(rng);
    Eigen::MatrixXd full(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(n));
    for (size_t i = 0; i < m; ++i) {
      for (size_t j = 0; j < n; ++j) {
        double s = 0;
        for (size_t t = 0; t < k; ++t) s += l[i * k + t] * r[t * n + j];
        full(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = s;
      }
    }
    const Eigen::VectorXd want = Eigen::JacobiSVD<Eigen::MatrixXd>(full).singularValues();
    const std::vector<double> got = LowRankSingularValues(l, m, r, k, n);
    REQUIRE(got.size() == std::min({k, m, n}));
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i] == Approx(want(static_cast<Eigen::Index>(i))).epsilon(1e-10).margin(1e-12));
    }
  }
  // A rank-deficient product: B·A with two equal columns of B.
  std::vector<double> l = {1, 1, 2, 2, 3, 3}, r = {1, 0, 0, 0, 1, 0};  // 3×2 and 2×3
  const std::vector<double> sv = LowRankSingularValues(l, 3, r, 2, 3);
  REQUIRE(sv.size() == 2);
  CHECK(sv[0] == Approx(std::sqrt(28.0)));
  CHECK(sv[1] == Approx(0.0).margin(1e-12));
}

}  // namespace
}  // namespace alloy::kernels
