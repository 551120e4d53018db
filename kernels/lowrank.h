// Rows of a low-rank product L·R (a LoRA delta B·A, or its transpose), one
// output row segment at a time, in float64.
//
// Every output element is Σ_k l[k]·R[k][j] summed in k order from +0, the
// same whatever segment or thread computes it, so a tensor assembled from
// arbitrary pieces is bit-identical to one computed whole.
//
// Also the SVD of such a product (values only, or truncated factors) without
// forming it, and the truncated SVD of a small dense matrix.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace alloy::kernels {

// out[j] = Σ_{k < l.size()} l[k] · r[k · stride + j], for j in [0, out.size()).
// `r` points at column 0 of the wanted segment in row 0 of R.
// REQUIRES: r holds l.size() rows of `stride` elements past the segment start.
void LowRankRow(std::span<const double> l, const double* r, size_t stride,
                std::span<double> out) noexcept;

// LowRankRow for `rows` consecutive rows of L (row-major, `rank` columns):
// out[i·n + j] = Σ_k l[i·rank + k] · r[k·stride + j], bit-identical to one
// LowRankRow call per row, but several rows at a time share each load of R
// (the `lora apply` hot loop).
void LowRankRows(const double* l, size_t rows, size_t rank, const double* r, size_t stride,
                 size_t n, double* out) noexcept;

// A truncated SVD M ≈ U·diag(s)·Vᵀ of a rows × cols matrix.
//
// Sign convention: singular vectors are defined up to the sign of each pair
// (u_j, v_j); every function returning SvdFactors flips pairs so that the
// largest-|.| entry of u_j (the first one on ties) is positive, so results do
// not depend on the SVD routine's choices. A zero u_j is left as it is.
struct SvdFactors {
  size_t rows = 0;
  size_t cols = 0;
  std::vector<double> s;  // descending, >= 0; s.size() is the rank kept
  std::vector<double> u;  // rows × rank, row-major: column j is the j-th left singular vector
  std::vector<double> v;  // cols × rank, row-major: column j is the j-th right singular vector
  size_t rank() const { return s.size(); }
};

// Applies the sign convention above to every pair of `f` in place (negation
// is exact, so the product U·diag(s)·Vᵀ is unchanged bit for bit).
// REQUIRES: f.u.size() == f.rows·f.rank(), f.v.size() == f.cols·f.rank().
void NormalizeSvdSigns(SvdFactors& f) noexcept;

// Top-`keep` SVD of the product L·R (L m × k, R k × n, row-major, float64),
// exact up to rounding, in O((m + n)·k²) whatever m and n are: thin QR
// factorizations L = Q_l·R_l and Rᵀ = Q_r·R_r, SVD R_l·R_rᵀ = U_c·S·V_cᵀ of
// the (at most) k × k core, U = Q_l·U_c, V = Q_r·V_c. Returns
// min(keep, k, m, n) triplets; their vectors are orthonormal even where s is 0
// (a zero L or R gives zero values and columns of Q's identity fallback).
// Serial, single-threaded Eigen: deterministic.
// REQUIRES: l.size() == m·k, r.size() == k·n.
SvdFactors LowRankSvd(std::span<const double> l, size_t m, std::span<const double> r, size_t k,
                      size_t n, size_t keep);

// Top-`keep` SVD of a dense rows × cols row-major float32 matrix, exact up to
// float64 rounding: a float64 copy and Eigen's BDCSVD with thin U and V
// (O(rows·cols·min(rows, cols)) time, O(rows·cols) memory), so meant for small
// matrices; the caller picks when. Returns min(keep, rows, cols) triplets.
// Serial, single-threaded Eigen: deterministic.
// REQUIRES: a.size() == rows·cols.
SvdFactors DenseSvd(std::span<const float> a, size_t rows, size_t cols, size_t keep);

// The singular values of the product L·R, descending, where L is m × k and
// R is k × n (row-major, float64): exact up to rounding, from thin QR
// factorizations L = Q_l·R_l and Rᵀ = Q_r·R_r and the SVD of the k × k core
// R_l·R_rᵀ, so the cost is O((m + n)·k²) whatever m and n are. Returns
// Replaces the rows of the rows × cols row-major matrix `m` (rows ≤ cols)
// by an orthonormal basis of their span, in order (Householder QR of mᵀ: row
// i becomes the i-th column of Q). Rank-deficient input still gives
// orthonormal rows. Serial, deterministic.
void OrthonormalizeRows(std::span<double> m, size_t rows, size_t cols);

// min(k, m, n) values (fewer than k when m or n is smaller). The same
// factorization as LowRankSvd, without forming vectors.
// REQUIRES: l.size() == m·k, r.size() == k·n.
std::vector<double> LowRankSingularValues(std::span<const double> l, size_t m,
                                          std::span<const double> r, size_t k, size_t n);

}  // namespace alloy::kernels
