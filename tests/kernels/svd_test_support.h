// Shared checks of the SVD kernel tests (lowrank_test.cc, sketch_test.cc):
// SvdFactors as Eigen matrices, their reconstruction, and the invariants
// every factorization must meet.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/lowrank.h"

namespace alloy::kernels::svd_test {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline Eigen::MatrixXd FactorU(const SvdFactors& f) {
  return Eigen::Map<const RowMatrix>(f.u.data(), static_cast<Eigen::Index>(f.rows),
                                     static_cast<Eigen::Index>(f.rank()));
}
inline Eigen::MatrixXd FactorV(const SvdFactors& f) {
  return Eigen::Map<const RowMatrix>(f.v.data(), static_cast<Eigen::Index>(f.cols),
                                     static_cast<Eigen::Index>(f.rank()));
}

// U·diag(s)·Vᵀ.
inline Eigen::MatrixXd Reconstruct(const SvdFactors& f) {
  const Eigen::VectorXd s =
      Eigen::Map<const Eigen::VectorXd>(f.s.data(), static_cast<Eigen::Index>(f.rank()));
  return FactorU(f) * s.asDiagonal() * FactorV(f).transpose();
}

// max |MᵀM − I|: 0 for orthonormal columns.
inline double OrthonormalityError(const Eigen::MatrixXd& m) {
  return (m.transpose() * m - Eigen::MatrixXd::Identity(m.cols(), m.cols())).cwiseAbs().maxCoeff();
}

// Shape, finiteness, order, orthonormality and the sign convention (the
// first largest-|.| entry of each u column is > 0) of `rank` triplets.
inline void CheckSvdFactors(const SvdFactors& f, uint64_t rows, uint64_t cols, size_t rank) {
  REQUIRE(f.rows == rows);
  REQUIRE(f.cols == cols);
  REQUIRE(f.rank() == rank);
  REQUIRE(f.u.size() == rows * rank);
  REQUIRE(f.v.size() == cols * rank);
  auto finite = [](double x) { return std::isfinite(x); };
  REQUIRE(std::all_of(f.u.begin(), f.u.end(), finite));
  REQUIRE(std::all_of(f.v.begin(), f.v.end(), finite));
  if (rank == 0) return;
  CHECK(OrthonormalityError(FactorU(f)) <= 1e-12);
  CHECK(OrthonormalityError(FactorV(f)) <= 1e-12);
  for (size_t j = 0; j < rank; ++j) {
    CHECK(f.s[j] >= 0.0);
    if (j > 0) CHECK(f.s[j] <= f.s[j - 1]);
    size_t pivot = 0;
    for (size_t i = 1; i < rows; ++i) {
      if (std::abs(f.u[i * rank + j]) > std::abs(f.u[pivot * rank + j])) pivot = i;
    }
    CHECK(f.u[pivot * rank + j] > 0.0);
  }
}

}  // namespace alloy::kernels::svd_test
