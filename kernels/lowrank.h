// Rows of a low-rank product L·R (a LoRA delta B·A, or its transpose), one
// output row segment at a time, in float64.
//
// Every output element is Σ_k l[k]·R[k][j] summed in k order from +0, the
// same whatever segment or thread computes it, so a tensor assembled from
// arbitrary pieces is bit-identical to one computed whole.
#pragma once

#include <cstddef>
#include <span>

namespace alloy::kernels {

// out[j] = Σ_{k < l.size()} l[k] · r[k · stride + j], for j in [0, out.size()).
// `r` points at column 0 of the wanted segment in row 0 of R.
// REQUIRES: r holds l.size() rows of `stride` elements past the segment start.
void LowRankRow(std::span<const double> l, const double* r, size_t stride,
                std::span<double> out) noexcept;

}  // namespace alloy::kernels
