#include "kernels/lowrank.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

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

void LowRankRows(const double* l, size_t rows, size_t rank, const double* r, size_t stride,
                 size_t n, double* out) noexcept {
  // Four rows × 16 columns of accumulators, as GCC vectors so they stay in
  // registers (8 zmm with AVX-512); lanes are independent, so each element
  // is still +0 plus its k terms in k order, as in LowRankRow.
  typedef double V8 __attribute__((vector_size(64), aligned(8)));
  constexpr size_t kRows = 8;
  constexpr size_t kTile = 16;
  size_t i0 = 0;
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    for (; i0 + kRows <= rows; i0 += kRows) {
      const double* li = l + i0 * rank;
      size_t j0 = 0;
      for (; j0 + kTile <= n; j0 += kTile) {
        V8 a[kRows] = {}, b[kRows] = {};
        for (size_t k = 0; k < rank; ++k) {
          V8 x, y;
          std::memcpy(&x, r + k * stride + j0, sizeof(V8));
          std::memcpy(&y, r + k * stride + j0 + 8, sizeof(V8));
#pragma GCC unroll 8
          for (size_t i = 0; i < kRows; ++i) {
            const double lik = li[i * rank + k];
            a[i] += lik * x;
            b[i] += lik * y;
          }
        }
#pragma GCC unroll 8
        for (size_t i = 0; i < kRows; ++i) {
          std::memcpy(out + (i0 + i) * n + j0, &a[i], sizeof(V8));
          std::memcpy(out + (i0 + i) * n + j0 + 8, &b[i], sizeof(V8));
        }
      }
      if (j0 < n) {
        for (size_t i = 0; i < kRows; ++i) {
          LowRankRow(std::span<const double>(li + i * rank, rank), r + j0, stride,
                     std::span<double>(out + (i0 + i) * n + j0, n - j0));
        }
      }
    }
  });
  for (; i0 < rows; ++i0) {
    LowRankRow(std::span<const double>(l + i0 * rank, rank), r, stride,
               std::span<double>(out + i0 * n, n));
  }
}

void OrthonormalizeRows(std::span<double> m, size_t rows, size_t cols) {
  assert(rows <= cols && m.size() == rows * cols);
  if (rows == 0) return;
  const auto r = static_cast<Eigen::Index>(rows), c = static_cast<Eigen::Index>(cols);
  // mᵀ is cols × rows (column-major view of the row-major m).
  const Eigen::MatrixXd mt = Eigen::Map<const Eigen::MatrixXd>(m.data(), c, r);
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(mt);
  const Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(c, r);
  Eigen::Map<Eigen::MatrixXd>(m.data(), c, r) = q;
}

namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// L·R = Q_l·(R_l·R_rᵀ)·Q_rᵀ with orthonormal Q_l (m × kl) and Q_r (n × kr),
// kl = min(m, k), kr = min(n, k): the kl × kr core has the singular values of
// L·R, and its singular vectors map to those of L·R through Q_l and Q_r. When
// m or n < k the thin R factors are wider than tall. Householder QR needs no
// division by a column norm: a zero (or rank-deficient) L or R gives τ = 0
// reflectors, so Q falls back to columns of the identity, never NaN.
struct LowRankCore {
  Eigen::HouseholderQR<Eigen::MatrixXd> ql;
  Eigen::HouseholderQR<Eigen::MatrixXd> qr;
  Eigen::MatrixXd core;
};

// REQUIRES: m, k, n > 0, l.size() == m·k, r.size() == k·n.
LowRankCore FactorLowRank(std::span<const double> l, size_t m, std::span<const double> r,
                          size_t k, size_t n) {
  const auto em = static_cast<Eigen::Index>(m), ek = static_cast<Eigen::Index>(k),
             en = static_cast<Eigen::Index>(n);
  const Eigen::Map<const RowMatrix> lm(l.data(), em, ek);
  const Eigen::Map<const RowMatrix> rm(r.data(), ek, en);
  LowRankCore c{Eigen::HouseholderQR<Eigen::MatrixXd>(lm),
                Eigen::HouseholderQR<Eigen::MatrixXd>(rm.transpose()), Eigen::MatrixXd()};
  const Eigen::Index kl = std::min(em, ek), kr = std::min(en, ek);
  const Eigen::MatrixXd rl = c.ql.matrixQR().topRows(kl).template triangularView<Eigen::Upper>();
  const Eigen::MatrixXd rr = c.qr.matrixQR().topRows(kr).template triangularView<Eigen::Upper>();
  c.core = rl * rr.transpose();  // kl × kr
  return c;
}

// dst (rows × cols, row-major) = src.
void StoreRowMajor(const Eigen::MatrixXd& src, std::vector<double>& dst) {
  dst.resize(static_cast<size_t>(src.rows() * src.cols()));
  Eigen::Map<RowMatrix>(dst.data(), src.rows(), src.cols()) = src;
}

}  // namespace

void NormalizeSvdSigns(SvdFactors& f) noexcept {
  const size_t rank = f.rank();
  assert(f.u.size() == f.rows * rank && f.v.size() == f.cols * rank);
  for (size_t j = 0; j < rank; ++j) {
    // |x| is exact and sign-blind, so the pivot does not depend on the sign
    // the SVD routine happened to give the pair.
    size_t pivot = 0;
    double best = 0.0;
    for (size_t i = 0; i < f.rows; ++i) {
      const double a = std::abs(f.u[i * rank + j]);
      if (a > best) {
        best = a;
        pivot = i;
      }
    }
    if (best == 0.0 || f.u[pivot * rank + j] > 0.0) continue;
    for (size_t i = 0; i < f.rows; ++i) f.u[i * rank + j] = -f.u[i * rank + j];
    for (size_t i = 0; i < f.cols; ++i) f.v[i * rank + j] = -f.v[i * rank + j];
  }
}

SvdFactors LowRankSvd(std::span<const double> l, size_t m, std::span<const double> r, size_t k,
                      size_t n, size_t keep) {
  assert(l.size() == m * k && r.size() == k * n);
  SvdFactors out;
  out.rows = m;
  out.cols = n;
  if (m == 0 || k == 0 || n == 0 || keep == 0) return out;
  const LowRankCore c = FactorLowRank(l, m, r, k, n);
  // JacobiSVD QR-preconditions a non-square core; values come out descending
  // and ≥ 0, vectors in the same order.
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(c.core, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd& values = svd.singularValues();
  const auto rank =
      static_cast<Eigen::Index>(std::min(keep, static_cast<size_t>(values.size())));
  out.s.assign(values.data(), values.data() + rank);
  // U = Q_l·U_c: the reflectors applied to U_c padded with zero rows to m rows
  // (O(m·k·rank), Q_l is never formed); likewise V = Q_r·V_c.
  const auto em = static_cast<Eigen::Index>(m), en = static_cast<Eigen::Index>(n);
  Eigen::MatrixXd u = Eigen::MatrixXd::Zero(em, rank);
  u.topRows(c.core.rows()) = svd.matrixU().leftCols(rank);
  u.applyOnTheLeft(c.ql.householderQ());
  Eigen::MatrixXd v = Eigen::MatrixXd::Zero(en, rank);
  v.topRows(c.core.cols()) = svd.matrixV().leftCols(rank);
  v.applyOnTheLeft(c.qr.householderQ());
  StoreRowMajor(u, out.u);
  StoreRowMajor(v, out.v);
  NormalizeSvdSigns(out);
  return out;
}

SvdFactors DenseSvd(std::span<const float> a, size_t rows, size_t cols, size_t keep) {
  assert(a.size() == rows * cols);
  SvdFactors out;
  out.rows = rows;
  out.cols = cols;
  if (rows == 0 || cols == 0 || keep == 0) return out;
  using FloatRowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::MatrixXd m =
      Eigen::Map<const FloatRowMatrix>(a.data(), static_cast<Eigen::Index>(rows),
                                       static_cast<Eigen::Index>(cols))
          .cast<double>();
  // BDCSVD (divide and conquer; Jacobi below 16 columns) handles a wide matrix
  // through its transpose; values descending and ≥ 0, a zero matrix gives
  // zero values and identity columns.
  const Eigen::BDCSVD<Eigen::MatrixXd> svd(m, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd& values = svd.singularValues();
  const auto rank =
      static_cast<Eigen::Index>(std::min(keep, static_cast<size_t>(values.size())));
  out.s.assign(values.data(), values.data() + rank);
  StoreRowMajor(svd.matrixU().leftCols(rank), out.u);
  StoreRowMajor(svd.matrixV().leftCols(rank), out.v);
  NormalizeSvdSigns(out);
  return out;
}

std::vector<double> LowRankSingularValues(std::span<const double> l, size_t m,
                                          std::span<const double> r, size_t k, size_t n) {
  assert(l.size() == m * k && r.size() == k * n);
  if (m == 0 || k == 0 || n == 0) return {};
  const LowRankCore c = FactorLowRank(l, m, r, k, n);
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(c.core);
  const Eigen::VectorXd& sv = svd.singularValues();
  std::vector<double> out(sv.data(), sv.data() + sv.size());
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace alloy::kernels
