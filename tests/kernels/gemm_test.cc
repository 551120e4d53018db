// Tests for kernels/gemm: both product shapes, with float32 and float64 A,
// bit for bit against the scalar loop of gemm.h (every sum in k order,
// products rounded then added), at odd sizes around the register tiles (4 or
// 3 rows by up to 5 vectors of 8, 4 or 2 doubles), the k panels (256), the
// task blocks (up to 64 or 128 rows of C, in multiples of 8) and B's padding
// (8 doubles), with row strides above the minimum, at one and two threads.
#include "kernels/gemm.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/parallel.h"
#include "tests/kernels/kernel_test_support.h"

namespace alloy::kernels {
namespace {

template <typename T>
std::vector<T> Normals(size_t n, std::mt19937& rng) {
  std::normal_distribution<T> normal;
  std::vector<T> v(n);
  for (T& x : v) x = normal(rng);
  return v;
}

bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint64_t>(a[i]) != std::bit_cast<uint64_t>(b[i])) return false;
  }
  return true;
}

// The sizes and strides of one product. A is m × k (Gemm) or k × m
// (GemmTransposed) with row stride lda; B is k × n (ldb); C is m × n (ldc).
struct Shape {
  size_t m, n, k;
  size_t pad;  // extra elements per row of A, B and C
};

// gemm.h's definition: c = c0; c = c + double(a)·b for k in order.
template <typename T>
void Reference(bool transposed, const std::vector<T>& a, size_t lda, const std::vector<double>& b,
               size_t ldb, std::vector<double>& c, size_t ldc, const Shape& s, bool accumulate) {
  for (size_t i = 0; i < s.m; ++i) {
    for (size_t j = 0; j < s.n; ++j) {
      double acc = accumulate ? c[i * ldc + j] : 0.0;
      for (size_t q = 0; q < s.k; ++q) {
        const T x = transposed ? a[q * lda + i] : a[i * lda + q];
        acc = acc + static_cast<double>(x) * b[q * ldb + j];
      }
      c[i * ldc + j] = acc;
    }
  }
}

template <typename T>
void Run(bool transposed, const std::vector<T>& a, size_t lda, const std::vector<double>& b,
         size_t ldb, std::vector<double>& c, size_t ldc, const Shape& s, bool accumulate) {
  if (transposed) {
    GemmTransposed(a.data(), lda, b.data(), ldb, c.data(), ldc, s.m, s.n, s.k, accumulate);
  } else {
    Gemm(a.data(), lda, b.data(), ldb, c.data(), ldc, s.m, s.n, s.k, accumulate);
  }
}

// Checks one shape both ways (overwrite and accumulate), at one and two
// threads, against Reference, bit for bit; C's padding must stay untouched.
template <typename T>
void CheckShape(bool transposed, const Shape& s, std::mt19937& rng) {
  const size_t lda = (transposed ? s.m : s.k) + s.pad;
  const size_t ldb = s.n + s.pad;
  const size_t ldc = s.n + s.pad;
  const std::vector<T> a = Normals<T>((transposed ? s.k : s.m) * lda + 1, rng);
  const std::vector<double> b = Normals<double>(s.k * ldb + 1, rng);
  const std::vector<double> c0 = Normals<double>(s.m * ldc + 1, rng);
  for (bool accumulate : {false, true}) {
    std::vector<double> want = c0;
    Reference(transposed, a, lda, b, ldb, want, ldc, s, accumulate);
    for (int threads : {1, 2}) {
      SetThreads(threads);
      std::vector<double> got = c0;
      Run(transposed, a, lda, b, ldb, got, ldc, s, accumulate);
      INFO("transposed " << transposed << " m " << s.m << " n " << s.n << " k " << s.k << " pad "
                         << s.pad << " accumulate " << accumulate << " threads " << threads);
      CHECK(SameBits(got, want));
    }
  }
}

TEST_CASE("Gemm and GemmTransposed equal the scalar loop bit for bit", "[kernels][gemm][sketch]") {
  ThreadsGuard guard;
  std::mt19937 rng(1);
  // Rows of C around the tiles and the task blocks, columns around the
  // vector widths, B's padding and the chunking of a row into tiles of up
  // to 5 vectors, k around the panel.
  const size_t ms[] = {1, 3, 4, 5, 63, 64, 65, 129};
  const size_t ns[] = {1, 2, 3, 5, 8, 9, 16, 17, 24, 40, 41, 47, 80, 83};
  const size_t ks[] = {1, 2, 255, 256, 257, 513};
  for (bool transposed : {false, true}) {
    for (size_t m : ms) {
      for (size_t n : ns) {
        const Shape s{m, n, ks[(m + n) % std::size(ks)], (m + n) % 3};
        if (n % 2 == 0) {
          CheckShape<float>(transposed, s, rng);
        } else {
          CheckShape<double>(transposed, s, rng);
        }
      }
    }
    for (size_t k : ks) {
      CheckShape<float>(transposed, Shape{37, 21, k, 1}, rng);
      CheckShape<double>(transposed, Shape{70, 80, k, 0}, rng);
    }
  }
}

TEST_CASE("Gemm of large shapes equals the scalar loop at one and two threads",
          "[kernels][gemm][sketch]") {
  // Several task blocks and panels in both shapes (transposed: blocks of 128
  // columns of A).
  ThreadsGuard guard;
  std::mt19937 rng(2);
  CheckShape<float>(false, Shape{300, 40, 700, 0}, rng);
  CheckShape<float>(true, Shape{300, 40, 700, 0}, rng);
  CheckShape<float>(true, Shape{1000, 19, 300, 2}, rng);
  CheckShape<double>(true, Shape{80, 80, 1100, 0}, rng);  // a Gram matrix's shape
}

TEST_CASE("Gemm with k = 0 zeroes or keeps C", "[kernels][gemm][sketch]") {
  std::mt19937 rng(3);
  const Shape s{5, 7, 0, 2};
  const size_t ldc = s.n + s.pad;
  const std::vector<float> a(1);
  const std::vector<double> b(1);
  const std::vector<double> c0 = Normals<double>(s.m * ldc, rng);
  for (bool transposed : {false, true}) {
    std::vector<double> kept = c0;
    Run(transposed, a, s.m, b, s.n, kept, ldc, s, /*accumulate=*/true);
    CHECK(SameBits(kept, c0));
    std::vector<double> zeroed = c0;
    Run(transposed, a, s.m, b, s.n, zeroed, ldc, s, /*accumulate=*/false);
    for (size_t i = 0; i < s.m; ++i) {
      for (size_t j = 0; j < ldc; ++j) {
        const double want = j < s.n ? 0.0 : c0[i * ldc + j];
        CHECK(std::bit_cast<uint64_t>(zeroed[i * ldc + j]) == std::bit_cast<uint64_t>(want));
      }
    }
  }
}

TEST_CASE("GemmTransposed accumulated over row blocks equals one call", "[kernels][gemm][sketch]") {
  // The streamed passes of RowSketch: C += A[r0, r1)ᵀ·B[r0, r1) block by block.
  std::mt19937 rng(4);
  const size_t k = 600, m = 150, n = 24;
  const std::vector<float> a = Normals<float>(k * m, rng);
  const std::vector<double> b = Normals<double>(k * n, rng);
  std::vector<double> whole(m * n, 0.0);
  GemmTransposed(a.data(), m, b.data(), n, whole.data(), n, m, n, k, false);
  for (size_t block : {size_t{7}, size_t{256}, size_t{333}}) {
    std::vector<double> blocked(m * n, 0.0);
    for (size_t r = 0; r < k; r += block) {
      const size_t nr = std::min(block, k - r);
      GemmTransposed(a.data() + r * m, m, b.data() + r * n, n, blocked.data(), n, m, n, nr, true);
    }
    CHECK(SameBits(blocked, whole));
  }
}

TEST_CASE("Gemm keeps signed zeros, infinities and NaN as the scalar loop does",
          "[kernels][gemm][sketch]") {
  // −0 products summed from +0 give +0; an infinite or NaN entry of A
  // reaches exactly the elements whose sums it enters.
  const Shape s{6, 9, 5, 0};
  std::vector<float> a(s.m * s.k, -0.0f);
  std::vector<double> b(s.k * s.n, 1.0);
  a[2 * s.k + 1] = std::numeric_limits<float>::infinity();
  a[4 * s.k + 3] = std::numeric_limits<float>::quiet_NaN();
  b[3 * s.n + 5] = -2.0;
  for (bool accumulate : {false, true}) {
    std::vector<double> want(s.m * s.n, -0.0);
    std::vector<double> got = want;
    Reference(false, a, s.k, b, s.n, want, s.n, s, accumulate);
    Run(false, a, s.k, b, s.n, got, s.n, s, accumulate);
    CHECK(SameBits(got, want));
  }
}

}  // namespace
}  // namespace alloy::kernels
