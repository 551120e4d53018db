// RowSketch: the top singular values of a rows × cols matrix that is streamed
// by rows, several times, with a randomized range finder (Halko, Martinsson &
// Tropp 2011, algorithm 4.4: subspace iteration with re-orthonormalization).
//
// Passes (num_passes() = 2 + 2·power_iters), each feeding every row once, in
// increasing row order:
//   pass 0:            Y = A·Ω        (Ω: cols × l Gaussian, l = k + oversample,
//                                      drawn from the counter-based generator)
//                      Q = orth(Y)
//   per power iter:    Z = Aᵀ·Q, Z = orth(Z);  Y = A·Z, Q = orth(Y)
//   last pass:         B = Qᵀ·A       (l × cols), σ = singular values of B
// With SketchOptions::vectors, the last pass also keeps singular vectors:
// the pass accumulates Bᵀ = Aᵀ·Q; with Bᵀ = U_b·S·V_bᵀ, A ≈ Q·B =
// (Q·V_b)·S·U_bᵀ, so the left singular vectors are Q·V_b and the right ones U_b.
// Memory: O((rows + cols) · l) float64, independent of how rows are fed
// (after the last pass, O((rows + cols) · k) for the vectors, else O(k)).
//
// Arithmetic: the products with A run in the float64 GEMM kernels of
// kernels/gemm.h (A's float32 values converted exactly, every sum in row or
// column order, no FMA); orth() is CholeskyQR2 (parallel), or a Householder
// QR when the matrix is too ill-conditioned for it (a rank-deficient sketch:
// A of rank < l); the last SVD is a Householder QR of Bᵀ and a Jacobi SVD of
// its l × l triangle.
//
// Determinism: the result is bit-identical at any thread count and for any
// row blocking of the AddRows calls: each element of A·X and Aᵀ·Q is one sum
// in a fixed order whatever the split (the same bits on every ISA level), and
// the other steps work on whole matrices or fixed chunks of rows (Eigen, whose
// blocking may follow the machine's cache sizes).
//
// Thread safety: one thread calls a RowSketch at a time; it parallelizes
// internally through kernels/parallel.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/lowrank.h"

namespace alloy::kernels {

struct SketchOptions {
  size_t rank = 16;        // k: singular values wanted
  size_t oversample = 8;   // p: extra sketch columns (l = k + p, capped at min(rows, cols))
  int power_iters = 1;     // q
  uint64_t seed = 0;       // key of Ω
  bool vectors = false;    // also keep the top singular vectors (RowSketch::Factors)
};

class RowSketch {
 public:
  RowSketch(uint64_t rows, uint64_t cols, const SketchOptions& options);
  ~RowSketch();
  RowSketch(const RowSketch&) = delete;
  RowSketch& operator=(const RowSketch&) = delete;

  int num_passes() const;
  // Feeds rows [first_row, first_row + n_rows) for `pass` (row-major,
  // n_rows × cols). REQUIRES: passes in order 0, 1, ...; within a pass, rows
  // in increasing order without gaps, each exactly once.
  void AddRows(int pass, uint64_t first_row, size_t n_rows, std::span<const float> rows);
  // Ends `pass` (orthonormalizes, or computes the singular values after the last).
  void FinishPass(int pass);
  // After the last FinishPass: the min(k, rows, cols) largest singular values,
  // descending.
  std::vector<double> SingularValues() const;
  // After the last FinishPass, with options.vectors: the top min(k, rows,
  // cols) triplets, values equal to SingularValues() and vectors orthonormal,
  // signs as in SvdFactors (lowrank.h). Bit-identical at any thread count and
  // for any row blocking.
  SvdFactors Factors() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Randomized truncated SVD of an in-memory rows × cols row-major matrix: a
// RowSketch with vectors = true (whatever options.vectors says) fed the whole
// matrix in one AddRows call per pass (so the same bits as any row blocking).
// Deterministic at any thread count. Returns min(options.rank, rows, cols)
// triplets.
// REQUIRES: a.size() == rows·cols.
SvdFactors SketchSvd(std::span<const float> a, size_t rows, size_t cols,
                     const SketchOptions& options);

}  // namespace alloy::kernels
