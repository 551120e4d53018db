// Gemm and GemmTransposed (see gemm.h): a packed, register-blocked GEMM in
// the GotoBLAS style, specialized for a thin float64 B.
//
// Per call: unless n is a multiple of 8, B is copied once into a zero-padded
// row-major panel, so that the kernels load whole vectors at any n. The
// rows of C are cut into blocks, one task each; a task walks k in panels of
// kPanelK, converts its piece of A to float64 in the micro-panel layout (kMr
// values of A per k, contiguous), then runs the micro-kernel on every
// kMr × (nv·W) tile of C: the tile's accumulators stay in registers for the
// whole panel, each step multiplies one vector of B's row k by one broadcast
// value of A and adds the product to the accumulator. Loading the tile from C
// at the start of a panel and storing it at the end continues each element's
// sum in k order, so panels, tiles and tasks change nothing in the bits
// (gemm.h).
#include "kernels/gemm.h"

#include <algorithm>
#include <cassert>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/isa_dispatch.h"
#include "kernels/parallel.h"

namespace alloy::kernels {
namespace {

// Values of k per panel: a task's packed piece of A (kPanelK · block doubles)
// stays in L2, and one tile's slice of B (kPanelK · nv·W doubles) in L1/L2.
constexpr size_t kPanelK = 256;
// Rows of C per task for C = A·B (rows of A) and C = Aᵀ·B (columns of A: wide
// enough that each row of A read per k is a few cache lines).
constexpr size_t kRowBlock = 64;
constexpr size_t kColBlock = 128;
// B's padded row stride is a multiple of the widest vector (AVX-512: 8 doubles).
constexpr size_t kMaxLanes = 8;
// Doubles between packed groups of A beyond their size (one cache line).
constexpr size_t kGroupPad = 8;
// Bytes per cache line (the prefetch stride).
constexpr size_t kLineBytes = 64;
// Rows of B per packing task.
constexpr size_t kPackRows = 512;

// GCC vectors of W doubles: one register of the ISA the kernel is compiled
// for. `type` for values, `unaligned` (may_alias, 8-byte aligned) to load and
// store them at any double's address.
template <int W>
struct VecOf;
template <>
struct VecOf<2> {
  typedef double type __attribute__((vector_size(16)));
  typedef double unaligned __attribute__((vector_size(16), aligned(8), may_alias));
};
template <>
struct VecOf<4> {
  typedef double type __attribute__((vector_size(32)));
  typedef double unaligned __attribute__((vector_size(32), aligned(8), may_alias));
};
template <>
struct VecOf<8> {
  typedef double type __attribute__((vector_size(64)));
  typedef double unaligned __attribute__((vector_size(64), aligned(8), may_alias));
};

// The register tile per ISA: kTileRows<W> rows of C by up to kTileVectors<W>
// vectors of W doubles. Accumulators, one row of B and the product
// temporaries fit the register file: 4 × 5 zmm (of 32) with AVX-512, 3 × 3
// ymm or xmm (of 16) otherwise.
template <int W>
constexpr size_t kTileRows = W == 8 ? 4 : 3;
template <int W>
constexpr int kTileVectors = W == 8 ? 5 : 3;

// Runtime ISA dispatch like isa::Dispatch, passing the vector width in
// doubles (so each clone picks its own register tile).
#ifdef ALLOY_ISA_DISPATCH
template <typename Fn>
__attribute__((target("arch=x86-64-v4"))) void RunLanes8(const Fn& fn) noexcept {
  fn(std::integral_constant<int, 8>{});
}
template <typename Fn>
__attribute__((target("arch=x86-64-v3"))) void RunLanes4(const Fn& fn) noexcept {
  fn(std::integral_constant<int, 4>{});
}
template <typename Fn>
void RunLanes2(const Fn& fn) noexcept {
  fn(std::integral_constant<int, 2>{});
}
template <typename Fn>
ALLOY_INLINE void DispatchLanes(const Fn& fn) noexcept {
  switch (isa::CurrentIsa()) {
    case isa::kIsaAvx512:
      RunLanes8(fn);
      break;
    case isa::kIsaAvx2:
      RunLanes4(fn);
      break;
    default:
      RunLanes2(fn);
      break;
  }
}
#else
template <typename Fn>
ALLOY_INLINE void DispatchLanes(const Fn& fn) noexcept {
#if defined(__AVX512F__)
  fn(std::integral_constant<int, 8>{});
#elif defined(__AVX2__)
  fn(std::integral_constant<int, 4>{});
#else
  fn(std::integral_constant<int, 2>{});
#endif
}
#endif

// t[i][v·W + w] (+)= Σ_{k < kk} pa[k·kMr + i] · pb[k·ldb + v·W + w] for the
// kMr × NV·W tile at t (row stride ldt): from +0 (load false) or t's values.
template <int W, int NV>
ALLOY_INLINE void MicroKernel(const double* __restrict pa, const double* __restrict pb, size_t ldb,
                              size_t kk, double* __restrict t, size_t ldt, bool load) noexcept {
  using V = typename VecOf<W>::type;
  using U = typename VecOf<W>::unaligned;
  constexpr size_t kMr = kTileRows<W>;
  // Fully unrolled, so that every accumulator is a register of its own.
  V acc[kMr][NV];
#pragma GCC unroll 16
  for (size_t i = 0; i < kMr; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      acc[i][v] =
          load ? V(*reinterpret_cast<const U*>(t + i * ldt + static_cast<size_t>(v * W))) : V{};
    }
  }
  for (size_t k = 0; k < kk; ++k) {
    V b[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      b[v] = *reinterpret_cast<const U*>(pb + k * ldb + static_cast<size_t>(v * W));
    }
#pragma GCC unroll 16
    for (size_t i = 0; i < kMr; ++i) {
      const double s = pa[k * kMr + i];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] = acc[i][v] + b[v] * s;
    }
  }
#pragma GCC unroll 16
  for (size_t i = 0; i < kMr; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      *reinterpret_cast<U*>(t + i * ldt + static_cast<size_t>(v * W)) = acc[i][v];
    }
  }
}

// MicroKernel<W, nv> for a runtime nv in [1, NV].
template <int W, int NV>
ALLOY_INLINE void MicroKernelN(int nv, const double* pa, const double* pb, size_t ldb, size_t kk,
                               double* t, size_t ldt, bool load) noexcept {
  if constexpr (NV > 0) {
    if (nv == NV) {
      MicroKernel<W, NV>(pa, pb, ldb, kk, t, ldt, load);
    } else {
      MicroKernelN<W, NV - 1>(nv, pa, pb, ldb, kk, t, ldt, load);
    }
  }
}

// Packs A(i0 + g·kMr + r, k0 + q) for q < kk at pa[g·stride + q·kMr + r], as
// float64, zeros for the rows of the last group past `rows`.
template <size_t kMr, typename T>
ALLOY_INLINE void PackRows(const T* a, size_t lda, size_t i0, size_t rows, size_t k0, size_t kk,
                           size_t k, size_t stride, double* __restrict pa) noexcept {
  const size_t groups = (rows + kMr - 1) / kMr;
  for (size_t g = 0; g < groups; ++g) {
    double* __restrict dst = pa + g * stride;
    const size_t valid = std::min(kMr, rows - g * kMr);
    const T* src[kMr];
    for (size_t r = 0; r < kMr; ++r) {
      src[r] = a + (i0 + g * kMr + std::min(r, valid - 1)) * lda + k0;  // rows ≥ valid: zeroed
    }
    for (size_t q = 0; q < kk; ++q) {
      for (size_t r = 0; r < kMr; ++r) dst[q * kMr + r] = static_cast<double>(src[r][q]);
    }
    for (size_t r = valid; r < kMr; ++r) {
      for (size_t q = 0; q < kk; ++q) dst[q * kMr + r] = 0.0;
    }
    // The same rows of the next panel, so that they arrive while this one computes.
    if (k0 + kk < k) {
      const size_t next = std::min(kPanelK, k - k0 - kk);
      for (size_t r = 0; r < valid; ++r) {
        for (size_t q = 0; q < next; q += kLineBytes / sizeof(T)) {
          __builtin_prefetch(src[r] + kk + q);
        }
      }
    }
  }
}

// PackRows' layout for A(i, k) = a[k·lda + i] (C = Aᵀ·B): each row k0 + q of
// `a` is read once, contiguously, and spread over the groups.
template <size_t kMr, typename T>
ALLOY_INLINE void PackColumns(const T* a, size_t lda, size_t i0, size_t rows, size_t k0, size_t kk,
                              size_t k, size_t stride, double* __restrict pa) noexcept {
  const size_t full_groups = rows / kMr;
  const size_t groups = (rows + kMr - 1) / kMr;
  for (size_t q = 0; q < kk; ++q) {
    const T* __restrict src = a + (k0 + q) * lda + i0;
    for (size_t g = 0; g < full_groups; ++g) {
      double* __restrict dst = pa + g * stride + q * kMr;
      for (size_t r = 0; r < kMr; ++r) dst[r] = static_cast<double>(src[g * kMr + r]);
    }
    for (size_t g = full_groups; g < groups; ++g) {
      double* __restrict dst = pa + g * stride + q * kMr;
      for (size_t r = 0; r < kMr; ++r) {
        const size_t i = g * kMr + r;
        dst[r] = i < rows ? static_cast<double>(src[i]) : 0.0;
      }
    }
    // The same row of the next panel, so that it arrives while this one computes.
    if (k0 + kk + q < k) {
      const T* next = src + kk * lda;
      for (size_t i = 0; i < rows; i += kLineBytes / sizeof(T)) __builtin_prefetch(next + i);
    }
  }
}

// Rows [i0, i1) of C, for the whole of k. kTransposed: A(i, k) is
// a[k·lda + i] (C = Aᵀ·B), else a[i·lda + k]. pb: B with row stride ldb,
// each row readable up to n rounded up to a multiple of kMaxLanes (the extra
// columns only reach columns of C that are not stored). pa:
// PackedElems(i1 − i0) doubles of scratch.
template <int W, bool kTransposed, typename T>
ALLOY_INLINE void RowBlock(const T* a, size_t lda, const double* pb, size_t ldb, double* c,
                           size_t ldc, size_t i0, size_t i1, size_t n, size_t k, bool accumulate,
                           double* __restrict pa) noexcept {
  constexpr size_t kMr = kTileRows<W>;
  constexpr int kMaxNv = kTileVectors<W>;
  constexpr size_t kW = static_cast<size_t>(W);
  const size_t rows = i1 - i0;
  const size_t groups = (rows + kMr - 1) / kMr;
  // Vectors per row of C, cut into chunks of at most kMaxNv, as even as possible.
  const size_t nvec = (n + kW - 1) / kW;
  const size_t chunks = (nvec + kMaxNv - 1) / static_cast<size_t>(kMaxNv);
  double edge[kMr * kMaxNv * kW];
  for (size_t k0 = 0; k0 < k; k0 += kPanelK) {
    const size_t kk = std::min(kPanelK, k - k0);
    // Groups a cache line further apart than their size: at a power-of-two
    // stride, PackColumns' stores would all hit the same L1 set.
    const size_t stride = kk * kMr + kGroupPad;
    if constexpr (kTransposed) {
      PackColumns<kMr>(a, lda, i0, rows, k0, kk, k, stride, pa);
    } else {
      PackRows<kMr>(a, lda, i0, rows, k0, kk, k, stride, pa);
    }
    const bool load = accumulate || k0 > 0;
    size_t v0 = 0;
    for (size_t ch = 0; ch < chunks; ++ch) {
      const size_t nv = nvec / chunks + (ch < nvec % chunks ? 1 : 0);
      const size_t j0 = v0 * kW;
      v0 += nv;
      const size_t width = nv * kW;
      const size_t valid_cols = std::min(width, n - j0);
      const int nvi = static_cast<int>(nv);
      const double* panel_b = pb + k0 * ldb + j0;
      for (size_t g = 0; g < groups; ++g) {
        const size_t valid_rows = std::min(kMr, rows - g * kMr);
        double* dst = c + (i0 + g * kMr) * ldc + j0;
        const double* panel_a = pa + g * stride;
        if (valid_rows == kMr && valid_cols == width) {
          MicroKernelN<W, kMaxNv>(nvi, panel_a, panel_b, ldb, kk, dst, ldc, load);
          continue;
        }
        // An edge tile: through a full-size copy, only its valid part stored.
        for (size_t r = 0; r < kMr; ++r) {
          for (size_t j = 0; j < width; ++j) {
            edge[r * width + j] = load && r < valid_rows && j < valid_cols ? dst[r * ldc + j] : 0.0;
          }
        }
        MicroKernelN<W, kMaxNv>(nvi, panel_a, panel_b, ldb, kk, edge, width, load);
        for (size_t r = 0; r < valid_rows; ++r) {
          for (size_t j = 0; j < valid_cols; ++j) dst[r * ldc + j] = edge[r * width + j];
        }
      }
    }
  }
}

// Doubles of packed A for a block of `rows` rows of C: at most `rows` groups
// (kMr ≥ 1) of kPanelK·kMr + kGroupPad doubles, kMr ≤ kMaxLanes.
constexpr size_t PackedElems(size_t rows) {
  return kPanelK * (rows + kMaxLanes) + kGroupPad * rows;
}

template <bool kTransposed, typename T>
void GemmImpl(const T* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc, size_t m,
              size_t n, size_t k, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) {
      for (size_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0);
    }
    return;
  }
  // The kernels load whole vectors of B's rows: B as it is when n is a
  // multiple of every vector width, else a zero-padded copy.
  const double* pb = b;
  size_t ldp = ldb;
  std::unique_ptr<double[]> padded;
  if (n % kMaxLanes != 0) {
    ldp = (n + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
    padded.reset(new double[k * ldp]);
    ParallelForChunks(k, kPackRows, [&](size_t, size_t begin, size_t end) {
      for (size_t r = begin; r < end; ++r) {
        std::copy(b + r * ldb, b + r * ldb + n, padded.get() + r * ldp);
        std::fill(padded.get() + r * ldp + n, padded.get() + (r + 1) * ldp, 0.0);
      }
    });
    pb = padded.get();
  }
  // Rows of C per task: at most kRowBlock or kColBlock, fewer when C has few
  // rows (a streamed block of rows, a Gram matrix) so that every thread gets
  // some. The bits do not depend on it: each element is one sum over k.
  const size_t threads = static_cast<size_t>(std::max(1, Threads()));
  const size_t per_thread = (m + threads - 1) / threads;
  const size_t block = std::clamp((per_thread + kMaxLanes - 1) / kMaxLanes * kMaxLanes, kMaxLanes,
                                  kTransposed ? kColBlock : kRowBlock);
  std::vector<std::unique_ptr<double[]>> scratch(threads);
  ParallelForChunks(m, block, [&](size_t, size_t i0, size_t i1) {
    const size_t worker = static_cast<size_t>(ThreadIndex());
    assert(worker < scratch.size());
    std::unique_ptr<double[]>& pa = scratch[worker];
    if (!pa) pa.reset(new double[PackedElems(block)]);
    DispatchLanes([&](auto lanes) ALLOY_LAMBDA_INLINE {
      RowBlock<decltype(lanes)::value, kTransposed>(a, lda, pb, ldp, c, ldc, i0, i1, n, k,
                                                    accumulate, pa.get());
    });
  });
}

}  // namespace

void Gemm(const float* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc, size_t m,
          size_t n, size_t k, bool accumulate) {
  GemmImpl<false>(a, lda, b, ldb, c, ldc, m, n, k, accumulate);
}

void Gemm(const double* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc, size_t m,
          size_t n, size_t k, bool accumulate) {
  GemmImpl<false>(a, lda, b, ldb, c, ldc, m, n, k, accumulate);
}

void GemmTransposed(const float* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc,
                    size_t m, size_t n, size_t k, bool accumulate) {
  GemmImpl<true>(a, lda, b, ldb, c, ldc, m, n, k, accumulate);
}

void GemmTransposed(const double* a, size_t lda, const double* b, size_t ldb, double* c, size_t ldc,
                    size_t m, size_t n, size_t k, bool accumulate) {
  GemmImpl<true>(a, lda, b, ldb, c, ldc, m, n, k, accumulate);
}

}  // namespace alloy::kernels
