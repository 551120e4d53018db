#include "kernels/lowrank.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cassert>

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {

void LowRankRow(std::span<const double> l, const double* r, size_t stride,
                std::span<double> out) noexcept {
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    double* __restrict o = out.data();
    const size_t n = out.size();
    for (size_t j = 0; j < n; ++j) o[j] = 0.0;
    for (size_t k = 0; k < l.size(); ++k) {
      const double lk = l[k];
      const double* __restrict rk = r + k * stride;
      for (size_t j = 0; j < n; ++j) o[j] += lk * rk[j];
    }
  });
}

std::vector<double> LowRankSingularValues(std::span<const double> l, size_t m,
                                          std::span<const double> r, size_t k, size_t n) {
  assert(l.size() == m * k && r.size() == k * n);
  using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const auto em = static_cast<Eigen::Index>(m), ek = static_cast<Eigen::Index>(k),
             en = static_cast<Eigen::Index>(n);
  if (m == 0 || k == 0 || n == 0) return {};
  const Eigen::Map<const RowMatrix> lm(l.data(), em, ek);
  const Eigen::Map<const RowMatrix> rm(r.data(), ek, en);
  // L·R = Q_l·(R_l·R_rᵀ)·Q_rᵀ with orthonormal Q_l, Q_r: the core has the same
  // singular values. When m or n < k the thin R factors are taller than wide.
  const Eigen::HouseholderQR<Eigen::MatrixXd> ql(lm);
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(rm.transpose());
  const Eigen::Index kl = std::min(em, ek), kr = std::min(en, ek);
  const Eigen::MatrixXd rl = ql.matrixQR().topRows(kl).template triangularView<Eigen::Upper>();
  const Eigen::MatrixXd rr = qr.matrixQR().topRows(kr).template triangularView<Eigen::Upper>();
  const Eigen::MatrixXd core = rl * rr.transpose();  // kl × kr
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(core);
  const Eigen::VectorXd sv = svd.singularValues();
  std::vector<double> out(sv.data(), sv.data() + sv.size());
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace alloy::kernels
