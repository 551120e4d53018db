// RowSketch (see sketch.h): the two product shapes of the passes run on the
// streamed float32 rows directly, in the float64 GEMM kernels of gemm.h.
#include "kernels/sketch.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <numbers>
#include <optional>
#include <string_view>
#include <vector>

#include <Eigen/Dense>

#include "kernels/gemm.h"
#include "kernels/parallel.h"
#include "kernels/philox_internal.h"
#include "kernels/random.h"

namespace alloy::kernels {
namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows of Ω (columns of A) per task when Ω is drawn.
constexpr size_t kOmegaChunkRows = 256;
// Rows per chunk of the triangular solves of CholeskyQR2 (fixed: the bits of
// an Eigen solve may depend on its size).
constexpr size_t kSolveChunkRows = 512;

// Ω's stream name, hashed into the generator's name_hash slot: it keeps Ω's
// draws apart from those a merge keys by tensor names (DARE masks).
constexpr std::string_view kOmegaName = "alloy.kernels.RowSketch.omega";

// Ω(c, j): a standard normal from Box–Muller on two 32-bit draws keyed by
// (seed, column j of Ω as the model slot, 2c and 2c + 1), i.e.
// StandardNormal(seed, name_hash, j, c) of kernels/random.h. It depends on
// nothing else (not l, rows or cols), so sketches of different shapes with the
// same seed share their leading Ω entries. u1 is in (0, 1), never 0, so the
// log is finite (|Ω| < 6.8).
double BoxMuller(uint32_t bits1, uint32_t bits2) noexcept {
  constexpr double kTwoPow32 = 4294967296.0;
  const double u1 = (static_cast<double>(bits1) + 0.5) / kTwoPow32;
  const double u2 = static_cast<double>(bits2) / kTwoPow32;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// Ω(2p, j) and Ω(2p + 1, j): draws 4p .. 4p + 3 of model j are the four words
// of one Philox block (random.h), so a pair of rows costs one block.
std::array<double, 2> OmegaPair(philox::StreamKey key, uint64_t p, uint32_t j) noexcept {
  const std::array<uint32_t, 4> w =
      philox::Block(static_cast<uint32_t>(p), static_cast<uint32_t>(p >> 32), j, 0, key.k0, key.k1);
  return {BoxMuller(w[0], w[1]), BoxMuller(w[2], w[3])};
}

// Replaces the n × l matrix `m` (n ≥ l) by an orthonormal basis of its column
// space: the thin Q of a Householder QR. Householder needs no division by a
// column norm: a zero (or rank-deficient) m yields reflectors with τ = 0, so Q
// falls back to columns of the identity and stays orthonormal, never NaN.
// Serial and single-threaded Eigen, hence deterministic.
void HouseholderOrthonormalize(RowMatrix& m) {
  const Eigen::Index n = m.rows();
  const Eigen::Index l = m.cols();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(m);
  // Applying the reflectors to the thin identity costs O(n·l²), not O(n²·l).
  m = qr.householderQ() * Eigen::MatrixXd::Identity(n, l);
}

// The Gram matrix MᵀM (l × l) of the n × l matrix m, in the GEMM kernels
// (exactly symmetric: both triangles are the same sums of the same products).
RowMatrix Gram(const RowMatrix& m) {
  const auto l = static_cast<size_t>(m.cols());
  RowMatrix g(m.cols(), m.cols());
  GemmTransposed(m.data(), l, m.data(), l, g.data(), l, l, l, static_cast<size_t>(m.rows()),
                 /*accumulate=*/false);
  return g;
}

// The Cholesky factor R (upper triangular, g = RᵀR) of the l × l Gram matrix
// g, or false when g is not numerically positive definite.
bool CholeskyFactor(const RowMatrix& g, Eigen::MatrixXd& r) {
  const Eigen::LLT<Eigen::MatrixXd> llt(g);
  if (llt.info() != Eigen::Success) return false;
  r = llt.matrixU();
  return r.allFinite();
}

// q = m·R⁻¹ by substitution, row by row (backward stable, unlike a product
// with an explicit inverse): Eigen's triangular solve on fixed chunks of
// rows, in parallel; each chunk's arithmetic is fixed, so q is the same at
// any thread count.
void SolveUpperOnTheRight(const Eigen::MatrixXd& r, const RowMatrix& m, RowMatrix& q) {
  q.resize(m.rows(), m.cols());
  ParallelForChunks(static_cast<size_t>(m.rows()), kSolveChunkRows,
                    [&](size_t, size_t begin, size_t end) {
                      const auto b = static_cast<Eigen::Index>(begin);
                      const auto n = static_cast<Eigen::Index>(end - begin);
                      q.middleRows(b, n) = r.triangularView<Eigen::Upper>()
                                               .solve<Eigen::OnTheRight>(m.middleRows(b, n));
                    });
}

// Largest deviation ‖G − I‖_F of the second Gram matrix from the identity for
// which the second CholeskyQR step runs: G's eigenvalues are then within 10%
// of 1, so Q₁ has condition ≤ 1.11 and the step leaves Q orthonormal to
// rounding.
constexpr double kMaxGramDeviation = 0.1;

// Orthonormalize by CholeskyQR2 (Fukaya, Nakatsukasa, Yanagisawa & Yamamoto
// 2014): Q₁ = m·R₁⁻¹ with R₁ the Cholesky factor of mᵀm, then the same step
// on Q₁, so m = Q·R with R = R₂·R₁ (returned in *r when r is not null). Two
// Gram matrices (in the GEMM kernels) and two triangular solves, all parallel
// and deterministic, instead of a serial Householder QR. The residual
// m − Q·R stays at rounding level, so range(Q) is range(m) and R has m's
// singular values as accurately as with Householder. It needs
// cond(m) ≲ 1/√u ≈ 10⁸: false (m unchanged) when the first Gram matrix is not
// positive definite or Q₁ is not close enough to orthonormal for the second
// step to finish the job. `work`: n × l scratch.
bool CholeskyQr2(RowMatrix& m, RowMatrix& work, Eigen::MatrixXd* r = nullptr) {
  Eigen::MatrixXd r1;
  if (!CholeskyFactor(Gram(m), r1)) return false;
  SolveUpperOnTheRight(r1, m, work);
  const RowMatrix g = Gram(work);
  const double deviation = (g - RowMatrix::Identity(g.rows(), g.cols())).norm();
  if (!(deviation <= kMaxGramDeviation)) return false;  // also when NaN
  Eigen::MatrixXd r2;
  if (!CholeskyFactor(g, r2)) return false;
  SolveUpperOnTheRight(r2, work, m);
  if (r != nullptr) *r = r2.triangularView<Eigen::Upper>() * r1;
  return true;
}

// Replaces the n × l matrix `m` (n ≥ l) by an orthonormal basis of its column
// space: CholeskyQR2 when m is well enough conditioned (the sketch's usual
// case), else Householder (rank-deficient m: a low-rank or zero matrix).
// Deterministic: every step is.
void Orthonormalize(RowMatrix& m, RowMatrix& work) {
  if (m.cols() == 0) return;
  if (!CholeskyQr2(m, work)) HouseholderOrthonormalize(m);
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
  RowMatrix work;   // scratch of Orthonormalize
  std::vector<double> sigma;
  SvdFactors factors;  // with `vectors`, after the last pass

  // left[first_row + i] = a[i]·right for the n_rows rows of `a`.
  void AddRowsTimesRight(uint64_t first_row, size_t n_rows, const float* a) {
    Gemm(a, static_cast<size_t>(cols), right.data(), l,
         left.data() + static_cast<size_t>(first_row) * l, l, n_rows, l,
         static_cast<size_t>(cols), /*accumulate=*/false);
  }

  // right += aᵀ·left[first_row, first_row + n_rows): continues every sum of
  // right in row order (gemm.h), so the bits do not depend on the row blocks.
  void AddRowsTransposedTimesLeft(uint64_t first_row, size_t n_rows, const float* a) {
    GemmTransposed(a, static_cast<size_t>(cols), left.data() + static_cast<size_t>(first_row) * l,
                   l, right.data(), l, static_cast<size_t>(cols), l, n_rows, /*accumulate=*/true);
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

  s.left.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(s.l));
  s.right.resize(static_cast<Eigen::Index>(cols), static_cast<Eigen::Index>(s.l));
  // Each entry is a pure function of (seed, c, j): any split gives the same Ω.
  // Chunks have an even number of rows, so the pairs of OmegaPair stay whole.
  static_assert(kOmegaChunkRows % 2 == 0);
  const philox::StreamKey key = philox::MakeKey(options.seed, HashName(kOmegaName));
  ParallelForChunks(static_cast<size_t>(cols), kOmegaChunkRows,
                    [&](size_t, size_t begin, size_t end) {
                      for (size_t c = begin; c < end; c += 2) {
                        double* row = s.right.data() + c * s.l;
                        const bool both = c + 1 < end;
                        for (size_t j = 0; j < s.l; ++j) {
                          const std::array<double, 2> w =
                              OmegaPair(key, c / 2, static_cast<uint32_t>(j));
                          row[j] = w[0];
                          if (both) row[s.l + j] = w[1];
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
    Orthonormalize(s.left, s.work);
    s.right.setZero();
    return;
  }
  if (s.pass < s.passes) {
    Orthonormalize(s.right, s.work);  // Z = orth(Aᵀ·Q), the next A·X pass's X
    return;
  }
  // right = Bᵀ (cols × l): B = Qᵀ·A has the singular values of the projection
  // of A on range(Q). Bᵀ = Q_r·R (CholeskyQR2, else Householder QR; R l × l
  // upper triangular), then a Jacobi SVD of R = U_r·S·V_rᵀ, so Bᵀ =
  // (Q_r·U_r)·S·V_rᵀ. (JacobiSVD on the tall Bᵀ would do the same with a
  // serial, unblocked column-pivoting QR, 5x slower than Householder.)
  // Values come out descending and ≥ 0, the same with or without vectors (the
  // rotations only depend on R).
  const auto l = static_cast<Eigen::Index>(s.l);
  Eigen::MatrixXd r;
  std::optional<Eigen::HouseholderQR<Eigen::MatrixXd>> householder;
  if (!CholeskyQr2(s.right, s.work, &r)) {  // else right = Q_r
    householder.emplace(s.right);
    r = householder->matrixQR().topRows(l).triangularView<Eigen::Upper>();
  }
  if (!s.vectors) {
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(r);
    const Eigen::VectorXd& values = svd.singularValues();
    s.sigma.assign(values.data(), values.data() + s.k_out);
  } else {
    // Bᵀ = U_b·S·V_bᵀ with U_b = Q_r·U_r, V_b = V_r: A ≈ Q·B = (Q·V_b)·S·U_bᵀ.
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(r, Eigen::ComputeFullU | Eigen::ComputeFullV);
    const Eigen::VectorXd& values = svd.singularValues();
    s.sigma.assign(values.data(), values.data() + s.k_out);
    const auto k = static_cast<Eigen::Index>(s.k_out);
    SvdFactors& f = s.factors;
    f.s = s.sigma;
    const RowMatrix vb = svd.matrixV().leftCols(k);  // l × k
    f.u.resize(static_cast<size_t>(s.rows) * s.k_out);
    Gemm(s.left.data(), s.l, vb.data(), s.k_out, f.u.data(), s.k_out, static_cast<size_t>(s.rows),
         s.k_out, s.l, /*accumulate=*/false);  // Q·V_b
    const RowMatrix ur = svd.matrixU().leftCols(k);  // l × k
    f.v.resize(static_cast<size_t>(s.cols) * s.k_out);
    if (householder) {
      Eigen::MatrixXd ub = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(s.cols), k);
      ub.topRows(l) = ur;
      ub.applyOnTheLeft(householder->householderQ());  // Q_r·U_r, thin: O(cols·l·k)
      Eigen::Map<RowMatrix>(f.v.data(), static_cast<Eigen::Index>(s.cols), k) = ub;
    } else {
      Gemm(s.right.data(), s.l, ur.data(), s.k_out, f.v.data(), s.k_out,
           static_cast<size_t>(s.cols), s.k_out, s.l, /*accumulate=*/false);  // Q_r·U_r
    }
    NormalizeSvdSigns(f);
  }
  // The sketch is no longer needed: release O((rows + cols)·l) memory now.
  s.left = RowMatrix();
  s.right = RowMatrix();
  s.work = RowMatrix();
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
