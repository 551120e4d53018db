// RowSketch (see sketch.h): the two product shapes of the passes run as Eigen
// GEMMs on float64 copies of fixed-size pieces of the streamed rows.
#include "kernels/sketch.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>
#include <string_view>
#include <vector>

#include <Eigen/Dense>

#include "kernels/parallel.h"
#include "kernels/random.h"

namespace alloy::kernels {
namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMap = Eigen::Map<const RowMatrix>;

// Doubles per worker for the float64 copy of a piece of A (2 MiB): big enough
// that every GEMM below has a long inner or outer dimension, small enough to
// stay in L2/L3 next to the sketch.
constexpr size_t kScratchElems = size_t{1} << 18;
// Columns of A per task in the Aᵀ·Q passes. Each task owns rows [c0, c1) of
// the cols × l accumulator, so no two tasks add into the same element and no
// per-task partials are needed; 128 gives 16 tasks for 2048 columns.
constexpr size_t kColChunk = 128;
// Rows of A per GEMM in the Aᵀ·Q passes (the GEMM's inner dimension).
constexpr size_t kColPassRows = kScratchElems / kColChunk;
// Rows of Ω (columns of A) per task when Ω is drawn.
constexpr size_t kOmegaChunkRows = 256;
// Rows of Q per task in the final U = Q·V_b product: each task is one GEMM
// of a fixed shape on fixed rows, so U does not depend on the thread count.
constexpr size_t kFactorChunkRows = 4096;

// Ω's stream name, hashed into the generator's name_hash slot: it keeps Ω's
// draws apart from those a merge keys by tensor names (DARE masks).
constexpr std::string_view kOmegaName = "alloy.kernels.RowSketch.omega";

// Ω(c, j): a standard normal from Box–Muller on two 32-bit draws keyed by
// (seed, column j of Ω as the model slot, 2c and 2c + 1). It depends on
// nothing else (not l, rows or cols), so sketches of different shapes with the
// same seed share their leading Ω entries. u1 is in (0, 1), never 0, so the
// log is finite (|Ω| < 6.8).
double OmegaEntry(uint64_t seed, uint64_t name_hash, uint64_t c, uint32_t j) noexcept {
  constexpr double kTwoPow32 = 4294967296.0;
  const double u1 = (static_cast<double>(RandomBits(seed, name_hash, j, 2 * c)) + 0.5) / kTwoPow32;
  const double u2 = static_cast<double>(RandomBits(seed, name_hash, j, 2 * c + 1)) / kTwoPow32;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// Replaces the n × l matrix `m` (n ≥ l) by an orthonormal basis of its column
// space: the thin Q of a Householder QR. Householder needs no division by a
// column norm: a zero (or rank-deficient) m yields reflectors with τ = 0, so Q
// falls back to columns of the identity and stays orthonormal, never NaN.
// Serial and single-threaded Eigen, hence deterministic.
void Orthonormalize(RowMatrix& m) {
  const Eigen::Index n = m.rows();
  const Eigen::Index l = m.cols();
  if (l == 0) return;
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(m);
  // Applying the reflectors to the thin identity costs O(n·l²), not O(n²·l).
  m = qr.householderQ() * Eigen::MatrixXd::Identity(n, l);
}

}  // namespace

struct RowSketch::Impl {
  uint64_t rows = 0;
  uint64_t cols = 0;
  size_t l = 0;      // sketch columns: min(k + p, rows, cols)
  size_t k_out = 0;  // values returned: min(k, rows, cols)
  int passes = 0;
  bool vectors = false;  // keep `factors` after the last pass

  int pass = 0;           // the pass being fed
  uint64_t next_row = 0;  // the first row AddRows expects next in `pass`

  // Passes alternate between two shapes of product (see sketch.h):
  //   even passes: left = A·right, row by row (each row of A gives one row of
  //                left; right is Ω in pass 0, then orth(Aᵀ·Q));
  //   odd passes:  right += Aᵀ·left[rows fed], with left = Q.
  // right doubles as Ω and the Aᵀ·Q accumulator since Ω is dead once pass 0
  // ends. Both are row-major so that a block of rows is contiguous.
  RowMatrix left;   // rows × l: Y = A·X, then Q = orth(Y)
  RowMatrix right;  // cols × l: Ω, then Z = Aᵀ·Q (the last is Bᵀ = Aᵀ·Q)
  std::vector<double> sigma;
  SvdFactors factors;  // with `vectors`, after the last pass

  // One float64 conversion buffer per worker (Eigen-aligned, so GEMMs see the
  // same alignment whatever thread runs a chunk).
  std::vector<Eigen::VectorXd> scratch;
  size_t scratch_elems = 0;

  double* Scratch() {
    Eigen::VectorXd& buf = scratch[static_cast<size_t>(ThreadIndex())];
    if (static_cast<size_t>(buf.size()) < scratch_elems) {
      buf.resize(static_cast<Eigen::Index>(scratch_elems));
    }
    return buf.data();
  }

  void PrepareScratch() {
    const size_t workers = static_cast<size_t>(std::max(1, Threads()));
    if (scratch.size() < workers) scratch.resize(workers);
  }

  // left[first_row + i] = a[i]·right for the n_rows rows of `a`. Rows are
  // independent, so chunks of chunk_rows rows (fixed by cols) run in parallel;
  // each chunk is one GEMM of fixed size, hence deterministic.
  void AddRowsTimesRight(uint64_t first_row, size_t n_rows, const float* a) {
    const size_t chunk_rows = std::max<size_t>(1, kScratchElems / cols);
    PrepareScratch();
    ParallelForChunks(n_rows, chunk_rows, [&](size_t, size_t begin, size_t end) {
      const size_t count = (end - begin) * cols;
      double* buf = Scratch();
      const float* src = a + begin * cols;
      for (size_t i = 0; i < count; ++i) buf[i] = static_cast<double>(src[i]);
      const RowMap block(buf, static_cast<Eigen::Index>(end - begin),
                         static_cast<Eigen::Index>(cols));
      left.middleRows(static_cast<Eigen::Index>(first_row + begin),
                      static_cast<Eigen::Index>(end - begin))
          .noalias() = block * right;
    });
  }

  // right += aᵀ·left[first_row, first_row + n_rows). Split by columns of a
  // (rows of right) at fixed kColChunk boundaries; each task walks the call's
  // rows in order in blocks of kColPassRows, so every element of right is
  // summed in the same order at any thread count.
  void AddRowsTransposedTimesLeft(uint64_t first_row, size_t n_rows, const float* a) {
    PrepareScratch();
    ParallelForChunks(cols, kColChunk, [&](size_t, size_t c0, size_t c1) {
      const size_t width = c1 - c0;
      double* buf = Scratch();
      for (size_t r0 = 0; r0 < n_rows; r0 += kColPassRows) {
        const size_t nr = std::min(kColPassRows, n_rows - r0);
        for (size_t i = 0; i < nr; ++i) {
          const float* src = a + (r0 + i) * cols + c0;
          double* dst = buf + i * width;
          for (size_t j = 0; j < width; ++j) dst[j] = static_cast<double>(src[j]);
        }
        const RowMap block(buf, static_cast<Eigen::Index>(nr), static_cast<Eigen::Index>(width));
        const auto q = left.middleRows(static_cast<Eigen::Index>(first_row + r0),
                                       static_cast<Eigen::Index>(nr));
        right.middleRows(static_cast<Eigen::Index>(c0), static_cast<Eigen::Index>(width))
            .noalias() += block.transpose() * q;
      }
    });
  }
};

RowSketch::RowSketch(uint64_t rows, uint64_t cols, const SketchOptions& options)
    : impl_(std::make_unique<Impl>()) {
  assert(options.power_iters >= 0);
  Impl& s = *impl_;
  s.rows = rows;
  s.cols = cols;
  const uint64_t min_dim = std::min(rows, cols);
  s.l = static_cast<size_t>(std::min<uint64_t>(options.rank + options.oversample, min_dim));
  s.k_out = static_cast<size_t>(std::min<uint64_t>(options.rank, min_dim));
  s.passes = 2 + 2 * std::max(0, options.power_iters);
  s.vectors = options.vectors;
  s.factors.rows = static_cast<size_t>(rows);
  s.factors.cols = static_cast<size_t>(cols);
  assert(s.l <= UINT32_MAX);  // Ω's column index is the generator's 32-bit model slot
  if (s.l == 0) return;

  s.scratch_elems =
      static_cast<size_t>(std::max<uint64_t>(cols, std::min<uint64_t>(kScratchElems, rows * cols)));
  s.left.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(s.l));
  s.right.resize(static_cast<Eigen::Index>(cols), static_cast<Eigen::Index>(s.l));
  // Each entry is a pure function of (seed, c, j): any split gives the same Ω.
  const uint64_t seed = options.seed;
  const uint64_t name_hash = HashName(kOmegaName);
  ParallelForChunks(static_cast<size_t>(cols), kOmegaChunkRows,
                    [&](size_t, size_t begin, size_t end) {
                      for (size_t c = begin; c < end; ++c) {
                        for (size_t j = 0; j < s.l; ++j) {
                          s.right(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(j)) =
                              OmegaEntry(seed, name_hash, c, static_cast<uint32_t>(j));
                        }
                      }
                    });
}

RowSketch::~RowSketch() = default;

int RowSketch::num_passes() const { return impl_->passes; }

void RowSketch::AddRows(int pass, uint64_t first_row, size_t n_rows, std::span<const float> rows) {
  Impl& s = *impl_;
  assert(pass == s.pass && pass < s.passes);
  assert(first_row == s.next_row && first_row + n_rows <= s.rows);
  assert(rows.size() == n_rows * s.cols);
  s.next_row = first_row + n_rows;
  if (s.l == 0 || n_rows == 0) return;
  if (pass % 2 == 0) {
    s.AddRowsTimesRight(first_row, n_rows, rows.data());
  } else {
    s.AddRowsTransposedTimesLeft(first_row, n_rows, rows.data());
  }
}

void RowSketch::FinishPass(int pass) {
  Impl& s = *impl_;
  assert(pass == s.pass && pass < s.passes && s.next_row == s.rows);
  s.pass = pass + 1;
  s.next_row = 0;
  if (s.l == 0) {
    if (s.pass == s.passes) s.sigma.assign(s.k_out, 0.0);
    return;
  }
  if (pass % 2 == 0) {
    // Q = orth(Y); the next pass accumulates Aᵀ·Q into `right` from zero.
    Orthonormalize(s.left);
    s.right.setZero();
    return;
  }
  if (s.pass < s.passes) {
    Orthonormalize(s.right);  // Z = orth(Aᵀ·Q), the next A·X pass's X
    return;
  }
  // right = Bᵀ (cols × l): B = Qᵀ·A has the singular values of the projection
  // of A on range(Q). JacobiSVD QR-preconditions the tall Bᵀ, then works on an
  // l × l triangle; values come out descending and ≥ 0 (the same values with
  // or without vectors: the rotations only depend on the matrix).
  if (!s.vectors) {
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(s.right);
    const Eigen::VectorXd& values = svd.singularValues();
    s.sigma.assign(values.data(), values.data() + s.k_out);
  } else {
    // Bᵀ = U_b·S·V_bᵀ: A ≈ Q·B = (Q·V_b)·S·U_bᵀ.
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(s.right,
                                                Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::VectorXd& values = svd.singularValues();
    s.sigma.assign(values.data(), values.data() + s.k_out);
    const auto k = static_cast<Eigen::Index>(s.k_out);
    const Eigen::MatrixXd vb = svd.matrixV().leftCols(k);  // l × k
    SvdFactors& f = s.factors;
    f.s = s.sigma;
    f.u.resize(static_cast<size_t>(s.rows) * s.k_out);
    Eigen::Map<RowMatrix> u(f.u.data(), static_cast<Eigen::Index>(s.rows), k);
    ParallelForChunks(static_cast<size_t>(s.rows), kFactorChunkRows,
                      [&](size_t, size_t begin, size_t end) {
                        const auto b = static_cast<Eigen::Index>(begin);
                        const auto n = static_cast<Eigen::Index>(end - begin);
                        u.middleRows(b, n).noalias() = s.left.middleRows(b, n) * vb;
                      });
    f.v.resize(static_cast<size_t>(s.cols) * s.k_out);
    Eigen::Map<RowMatrix>(f.v.data(), static_cast<Eigen::Index>(s.cols), k) =
        svd.matrixU().leftCols(k);
    NormalizeSvdSigns(f);
  }
  // The sketch is no longer needed: release O((rows + cols)·l) memory now.
  s.left = RowMatrix();
  s.right = RowMatrix();
  s.scratch = std::vector<Eigen::VectorXd>();
}

std::vector<double> RowSketch::SingularValues() const {
  assert(impl_->pass == impl_->passes);
  return impl_->sigma;
}

SvdFactors RowSketch::Factors() const {
  assert(impl_->pass == impl_->passes && impl_->vectors);
  return impl_->factors;
}

SvdFactors SketchSvd(std::span<const float> a, size_t rows, size_t cols,
                     const SketchOptions& options) {
  assert(a.size() == rows * cols);
  SketchOptions with_vectors = options;
  with_vectors.vectors = true;
  RowSketch sketch(rows, cols, with_vectors);
  for (int pass = 0; pass < sketch.num_passes(); ++pass) {
    sketch.AddRows(pass, 0, rows, a);
    sketch.FinishPass(pass);
  }
  return sketch.Factors();
}

}  // namespace alloy::kernels
