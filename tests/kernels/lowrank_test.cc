// Tests for kernels/lowrank: LowRankRow against the textbook dot product;
// LowRankSingularValues, LowRankSvd and DenseSvd against Eigen on the full
// matrix, by reconstruction, orthonormality, truncation error and signs.
#include "kernels/lowrank.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include <Eigen/Dense>
#include <catch2/catch.hpp>

#include "tests/kernels/svd_test_support.h"

namespace alloy::kernels {
namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Eigen::Index Idx(size_t i) { return static_cast<Eigen::Index>(i); }

std::vector<double> RandomVector(size_t n, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  std::vector<double> x(n);
  for (double& v : x) v = normal(rng);
  return x;
}

// L·R (m × k times k × n, row-major) in float64.
Eigen::MatrixXd Product(const std::vector<double>& l, size_t m, const std::vector<double>& r,
                        size_t k, size_t n) {
  return Eigen::Map<const RowMatrix>(l.data(), Idx(m), Idx(k)) *
         Eigen::Map<const RowMatrix>(r.data(), Idx(k), Idx(n));
}

using svd_test::FactorU;
using svd_test::FactorV;
using svd_test::OrthonormalityError;
using svd_test::Reconstruct;

// The shared invariants (svd_test_support.h).
void CheckShape(const SvdFactors& f, size_t rows, size_t cols, size_t rank) {
  svd_test::CheckSvdFactors(f, rows, cols, rank);
}

// sqrt(Σ_{i ≥ keep} s_i²), summed from the smallest.
double Tail(const std::vector<double>& s, size_t keep) {
  double sum_sq = 0;
  for (size_t i = s.size(); i-- > keep;) sum_sq += s[i] * s[i];
  return std::sqrt(sum_sq);
}

// n × r with orthonormal columns: the thin Q of a random Gaussian matrix.
Eigen::MatrixXd RandomOrthonormal(Eigen::Index n, Eigen::Index r, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  Eigen::MatrixXd g(n, r);
  for (Eigen::Index j = 0; j < r; ++j) {
    for (Eigen::Index i = 0; i < n; ++i) g(i, j) = normal(rng);
  }
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  return qr.householderQ() * Eigen::MatrixXd::Identity(n, r);
}

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

TEST_CASE("LowRankRows equals LowRankRow row by row bit for bit", "[kernels]") {
  std::mt19937 rng(9);
  std::normal_distribution<double> normal;
  // Row counts around the 4-row block and column counts around the 16-wide
  // tile, with R a segment of a wider matrix (stride > n).
  for (size_t rank : {size_t{1}, size_t{7}, size_t{32}}) {
    for (size_t rows : {size_t{1}, size_t{4}, size_t{9}}) {
      for (size_t n : {size_t{5}, size_t{16}, size_t{37}}) {
        const size_t stride = n + 3;
        std::vector<double> l(rows * rank), r(rank * stride);
        for (double& v : l) v = normal(rng);
        for (double& v : r) v = normal(rng);
        std::vector<double> got(rows * n + 1, 7.0);
        LowRankRows(l.data(), rows, rank, r.data() + 2, stride, n, got.data());
        CHECK(got.back() == 7.0);
        size_t bad = 0;
        for (size_t i = 0; i < rows; ++i) {
          std::vector<double> want(n);
          LowRankRow(std::span<const double>(l.data() + i * rank, rank), r.data() + 2, stride,
                     want);
          for (size_t j = 0; j < n; ++j) {
            bad += std::bit_cast<uint64_t>(got[i * n + j]) != std::bit_cast<uint64_t>(want[j]);
          }
        }
        CAPTURE(rank, rows, n);
        CHECK(bad == 0);
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

TEST_CASE("LowRankSvd reconstructs L times R with orthonormal factors", "[kernels][lowrank]") {
  std::mt19937 rng(21);
  constexpr size_t kAll = std::numeric_limits<size_t>::max();
  // Includes m or n smaller than k: then min(k, m, n) triplets.
  for (auto [m, k, n] : {std::tuple<size_t, size_t, size_t>{30, 4, 20}, {5, 8, 40}, {40, 8, 3},
                         {64, 16, 48}, {1, 1, 1}, {1, 3, 9}}) {
    const std::vector<double> l = RandomVector(m * k, rng), r = RandomVector(k * n, rng);
    const Eigen::MatrixXd full = Product(l, m, r, k, n);
    const std::vector<double> values = LowRankSingularValues(l, m, r, k, n);
    const size_t rank = std::min({k, m, n});
    for (size_t keep : {k, kAll}) {
      const SvdFactors f = LowRankSvd(l, m, r, k, n, keep);
      CheckShape(f, m, n, rank);
      CHECK((Reconstruct(f) - full).norm() <= 1e-10 * full.norm());
      CHECK(OrthonormalityError(FactorU(f)) <= 1e-12);
      CHECK(OrthonormalityError(FactorV(f)) <= 1e-12);
      // The same core and Jacobi rotations (they depend only on the matrix,
      // not on whether vectors accumulate): LowRankSingularValues' bits.
      for (size_t i = 0; i < rank; ++i) CHECK(f.s[i] == values[i]);
    }
  }
}

TEST_CASE("LowRankSvd truncation error is the norm of the discarded values",
          "[kernels][lowrank]") {
  // Eckart–Young: ‖LR − U_k·S_k·V_kᵀ‖_F = sqrt(Σ_{i ≥ keep} σ_i²).
  std::mt19937 rng(22);
  const size_t m = 50, k = 12, n = 40;
  const std::vector<double> l = RandomVector(m * k, rng), r = RandomVector(k * n, rng);
  const Eigen::MatrixXd full = Product(l, m, r, k, n);
  const std::vector<double> values = LowRankSingularValues(l, m, r, k, n);
  for (size_t keep : {size_t{1}, size_t{5}, size_t{11}}) {
    const SvdFactors f = LowRankSvd(l, m, r, k, n, keep);
    CheckShape(f, m, n, keep);
    const double want = Tail(values, keep);
    CHECK(std::abs((full - Reconstruct(f)).norm() - want) <= 1e-9 * want);
  }
  // keep = 0 keeps nothing.
  CheckShape(LowRankSvd(l, m, r, k, n, 0), m, n, 0);
}

TEST_CASE("LowRankSvd of a zero product gives zero values and orthonormal vectors",
          "[kernels][lowrank]") {
  std::mt19937 rng(23);
  const size_t m = 10, k = 4, n = 7;
  const std::vector<double> zl(m * k, 0.0), zr(k * n, 0.0);
  const std::vector<double> l = RandomVector(m * k, rng), r = RandomVector(k * n, rng);
  for (auto [lp, rp] : {std::pair{&zl, &r}, {&l, &zr}, {&zl, &zr}}) {
    const SvdFactors f = LowRankSvd(*lp, m, *rp, k, n, k);
    CheckShape(f, m, n, k);  // also: no NaN
    for (double x : f.s) CHECK(x == 0.0);
    CHECK(OrthonormalityError(FactorU(f)) <= 1e-15);
    CHECK(OrthonormalityError(FactorV(f)) <= 1e-15);
  }
  // Empty shapes: no triplets.
  CheckShape(LowRankSvd({}, 0, r, k, n, k), 0, n, 0);
  CheckShape(LowRankSvd(l, m, {}, k, 0, k), m, 0, 0);
  CheckShape(LowRankSvd({}, m, {}, 0, n, 3), m, n, 0);
}

TEST_CASE("LowRankSvd signs do not depend on the sign of the input", "[kernels][lowrank]") {
  // −L·R = U·S·(−V)ᵀ: with the sign convention on u, U is unchanged and V flips.
  std::mt19937 rng(24);
  const size_t m = 20, k = 5, n = 15;
  std::vector<double> l = RandomVector(m * k, rng);
  const std::vector<double> r = RandomVector(k * n, rng);
  const SvdFactors f = LowRankSvd(l, m, r, k, n, k);
  for (double& x : l) x = -x;
  const SvdFactors g = LowRankSvd(l, m, r, k, n, k);
  CHECK((FactorU(f) - FactorU(g)).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK((FactorV(f) + FactorV(g)).cwiseAbs().maxCoeff() <= 1e-12);
}

TEST_CASE("DenseSvd recovers a built spectrum for tall wide and square shapes",
          "[kernels][lowrank]") {
  // A = U·diag(σ)·Vᵀ with random orthonormal U, V and σ_i = 10·0.7^i, rounded
  // to float: the factors are compared with the float matrix itself (exact
  // up to float64 rounding) and the values with σ to the float rounding level.
  std::mt19937 rng(25);
  for (auto [rows, cols] : {std::pair<size_t, size_t>{60, 25}, {25, 60}, {30, 30}, {40, 1}}) {
    const size_t dim = std::min(rows, cols);
    Eigen::VectorXd sigma(Idx(dim));
    for (size_t i = 0; i < dim; ++i) sigma(Idx(i)) = 10.0 * std::pow(0.7, static_cast<double>(i));
    const Eigen::MatrixXd built = RandomOrthonormal(Idx(rows), Idx(dim), rng) * sigma.asDiagonal() *
                                  RandomOrthonormal(Idx(cols), Idx(dim), rng).transpose();
    std::vector<float> a(rows * cols);
    Eigen::MatrixXd full(Idx(rows), Idx(cols));  // the float matrix, in float64
    for (size_t i = 0; i < rows; ++i) {
      for (size_t j = 0; j < cols; ++j) {
        a[i * cols + j] = static_cast<float>(built(Idx(i), Idx(j)));
        full(Idx(i), Idx(j)) = a[i * cols + j];
      }
    }
    const Eigen::VectorXd want = Eigen::JacobiSVD<Eigen::MatrixXd>(full).singularValues();
    const std::vector<double> all(want.data(), want.data() + want.size());
    // keep larger than min(rows, cols): all triplets.
    for (size_t keep : {dim, dim + 7}) {
      const SvdFactors f = DenseSvd(a, rows, cols, keep);
      CheckShape(f, rows, cols, dim);
      CHECK((Reconstruct(f) - full).norm() <= 1e-12 * full.norm());
      CHECK(OrthonormalityError(FactorU(f)) <= 1e-12);
      CHECK(OrthonormalityError(FactorV(f)) <= 1e-12);
      for (size_t i = 0; i < dim; ++i) {
        CHECK(std::abs(f.s[i] - all[i]) <= 1e-13 * all[0]);
        CHECK(std::abs(f.s[i] - sigma(Idx(i))) <= 1e-6 * sigma(0));
      }
    }
    // Truncation: the error is the norm of the discarded values.
    for (size_t keep : {size_t{1}, dim / 2}) {
      const SvdFactors f = DenseSvd(a, rows, cols, keep);
      CheckShape(f, rows, cols, keep);
      const double tail = Tail(all, keep);
      CHECK(std::abs((full - Reconstruct(f)).norm() - tail) <= 1e-9 * tail + 1e-13 * all[0]);
    }
  }
}

TEST_CASE("DenseSvd of a zero or empty matrix", "[kernels][lowrank]") {
  for (auto [rows, cols] : {std::pair<size_t, size_t>{12, 5}, {5, 12}, {40, 30}}) {
    const std::vector<float> a(rows * cols, 0.0f);
    const size_t dim = std::min(rows, cols);
    const SvdFactors f = DenseSvd(a, rows, cols, dim);
    CheckShape(f, rows, cols, dim);  // also: no NaN
    for (double x : f.s) CHECK(x == 0.0);
    CHECK(OrthonormalityError(FactorU(f)) <= 1e-15);
    CHECK(OrthonormalityError(FactorV(f)) <= 1e-15);
  }
  CheckShape(DenseSvd({}, 0, 8, 3), 0, 8, 0);
  CheckShape(DenseSvd({}, 8, 0, 3), 8, 0, 0);
  const std::vector<float> one = {2.0f, -1.0f};
  CheckShape(DenseSvd(one, 1, 2, 0), 1, 2, 0);
}

}  // namespace
}  // namespace alloy::kernels
