// Rows of a low-rank product L·R (a LoRA delta B·A, or its transpose), one
// output row segment at a time, in float64.
//
// Every output element is Σ_k l[k]·R[k][j] summed in k order from +0, the
// same whatever segment or thread computes it, so a tensor assembled from
// arbitrary pieces is bit-identical to one computed whole.
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

// The singular values of the product L·R, descending, where L is m × k and
// R is k × n (row-major, float64): exact up to rounding, from thin QR
// factorizations L = Q_l·R_l and Rᵀ = Q_r·R_r and the SVD of the k × k core
// R_l·R_rᵀ, so the cost is O((m + n)·k²) whatever m and n are. Returns
// min(k, m, n) values (fewer than k when m or n is smaller).
// REQUIRES: l.size() == m·k, r.size() == k·n.
std::vector<double> LowRankSingularValues(std::span<const double> l, size_t m,
                                          std::span<const double> r, size_t k, size_t n);

}  // namespace alloy::kernels
