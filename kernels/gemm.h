// Products of a float32 or float64 matrix A with a float64 matrix B, in
// float64: the two shapes of the passes of a randomized range finder
// (kernels/sketch.h), C = A·B and C = Aᵀ·B with A large (the streamed float32
// rows, or a tall float64 basis) and B thin (tens of columns).
//
// Every element of C is one sum in increasing k order, products rounded
// before they are added (no FMA):
//   c = c0;  for k = 0, 1, ..., K − 1:  c = c + double(a_ik) · b_kj
// with c0 = +0 (overwrite) or the element's previous value (accumulate). So
// the result is bit-identical to that scalar loop at any thread count, on any
// ISA (the vector lanes run over j, never over k), and an accumulating call
// on rows [0, K1) followed by one on rows [K1, K) gives the bits of one call
// on [0, K).
//
// Register-blocked kernels, vectorized for the running CPU (runtime ISA
// dispatch: AVX-512, AVX2 or SSE2 vectors of doubles). Each call runs in
// parallel over blocks of rows of C (kernels/parallel.h): call it from one
// thread at a time, outside ParallelForChunks.
#pragma once

#include <cstddef>

namespace alloy::kernels {

// The products allocate packing buffers: they throw std::bad_alloc when memory
// runs out (under --memory-limit), which unwinds to the command.
//
// C[i][j] (= or +=) Σ_k A[i][k] · B[k][j] for i < m, j < n, k < K.
// A: m × K float32 or float64, row i at a + i·lda; B: K × n float64, row k at
// b + k·ldb; C: m × n float64, row i at c + i·ldc. C must not overlap A or B.
// REQUIRES: lda ≥ K, ldb ≥ n, ldc ≥ n.
void Gemm(const float* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc, size_t m,
          size_t n, size_t k, bool accumulate);
void Gemm(const double* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc, size_t m,
          size_t n, size_t k, bool accumulate);

// C[i][j] (= or +=) Σ_k A[k][i] · B[k][j] for i < m, j < n, k < K: C = Aᵀ·B.
// A: K × m float32 or float64, row k at a + k·lda; B and C as in Gemm.
// REQUIRES: lda ≥ m, ldb ≥ n, ldc ≥ n.
void GemmTransposed(const float* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc,
                    size_t m, size_t n, size_t k, bool accumulate);
void GemmTransposed(const double* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc,
                    size_t m, size_t n, size_t k, bool accumulate);

}  // namespace alloy::kernels
