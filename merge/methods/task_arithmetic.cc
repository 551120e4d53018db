// The generalized task-arithmetic family (mergekit-semantics.md §1.2, §1.3):
// task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs,
// breadcrumbs_ties, della, della_linear. One class, parameterised by the
// consensus (none or sum election) and the sparsifier of the §1.2 table.
//
// Per output tensor, with δ_i = x_i − base in float32 for every non-base
// input (recipe order, Decision (c); inputs the planner dropped are absent):
//   S_i = sparsify(δ_i) · rescale_i,  W_i = w_i · S_i (float32 products),
//   mixed = Σ W_i·M_i / (normalize ? Σ w_i·M_i : 1)   (consensus), or
//   mixed = Σ W_i / (normalize ? Σ w_i : 1)           (none; |Σw| < 1e-8 → 1),
//   out = base + λ · mixed, in float64, rounded once by the executor (Decision a).
//
// Streaming (never more than a chunk per input in memory):
// * ties / breadcrumbs(_ties): one StreamSelector pass (plus a rare
//   refinement) finds each model's magnitude threshold(s) exactly; the emit
//   pass keeps ties by lowest flat index (Decision (f)) from per-chunk tie
//   counts: recorded by the select pass when it could (bf16 checkpoints,
//   usually), else counted by an ordered emit (EmitOrdered). With `rescale`,
//   one more plain Scan sums the kept magnitudes (the kept ties all have the
//   threshold's magnitude, so they add count · magnitude).
// * dare_* / della*: masks are pure functions of (seed, tensor, model,
//   element) (Decision (b)), so with `rescale` one Scan gathers the L1 sums
//   and the emit pass draws the same masks again.
// Float partials are kept per chunk and added in chunk order, so output is
// bit-identical at any thread count.
//
// Quirks kept (Decision (d)): density ≥ 1 returns δ unchanged without
// rescale; breadcrumbs zeroes δ when top == 0 (gamma·N < 1); DELLA with
// density ≤ 0 gives zeros. Conditions mergekit crashes on are errors instead:
// TIES keeping 0 elements, DELLA's epsilon range, DELLA rows of length 1.
// Differences from mergekit beyond Decision (a): the DARE/DELLA density and
// DELLA's ranks are used exactly (mergekit rounds them to bf16 for bf16
// tensors), the L1 rescale factor stays float32 (mergekit: the working
// dtype), and DELLA ranks along the last dimension of tensors with more than
// two dimensions (mergekit: along dim 1).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/blend.h"
#include "kernels/select.h"
#include "kernels/sign.h"
#include "kernels/sparsify.h"
#include "merge/methods/methods.h"
#include "merge/methods/stream_select.h"
#include "merge/scratch.h"

namespace alloy::merge::methods {
namespace {

using formats::Status;

enum class Consensus : uint8_t { kNone, kSum };
enum class Sparsifier : uint8_t { kNone, kMagnitude, kRandom, kOutliers, kDella };

struct Family {
  std::string_view name;
  Consensus consensus;
  Sparsifier sparsifier;
};

constexpr Family kFamilies[] = {
    {"task_arithmetic", Consensus::kNone, Sparsifier::kNone},
    {"ties", Consensus::kSum, Sparsifier::kMagnitude},
    {"dare_ties", Consensus::kSum, Sparsifier::kRandom},
    {"dare_linear", Consensus::kNone, Sparsifier::kRandom},
    {"breadcrumbs", Consensus::kNone, Sparsifier::kOutliers},
    {"breadcrumbs_ties", Consensus::kSum, Sparsifier::kOutliers},
    {"della", Consensus::kSum, Sparsifier::kDella},
    {"della_linear", Consensus::kNone, Sparsifier::kDella},
    // Not a recipe method (mergekit has no such YAML name): PEFT's
    // magnitude_prune, TIES's top-k without the sign election. `alloy lora
    // combine` plans it as `ties` (same parameters) and runs it under this name.
    {"magnitude_prune", Consensus::kNone, Sparsifier::kMagnitude},
};

// What S_i is for one model in one tensor.
enum class Mode : uint8_t {
  kDense,   // δ unchanged
  kZero,    // all dropped: contributes nothing
  kWindow,  // magnitude window (TIES top-k, breadcrumbs)
  kRandom,  // DARE Bernoulli mask
  kDella,   // DELLA rank-weighted Bernoulli mask
};

constexpr int kNoCounter = -1;

struct ModelPlan {
  size_t input = 0;    // into PlannedTensor::inputs / Chunk::inputs
  uint32_t model = 0;  // model_index: the random-number key
  float weight = 0.0f;
  float density = 1.0f;
  float epsilon = 0.0f;
  Mode mode = Mode::kDense;
  bool rescale = false;  // L1 rescale applies
  float scale = 1.0f;
  // kWindow: kept iff lo_key < key < hi_key, plus the kept ties at each end.
  uint32_t lo_key = 0;
  uint32_t hi_key = UINT32_MAX;
  bool lo_keeps_first = false;  // TIES: lo ties with ordinal < lo_quota; breadcrumbs: ≥ lo_quota
  uint64_t lo_quota = 0;
  uint64_t hi_quota = 0;  // hi ties with ordinal < hi_quota are kept
  int lo_counter = kNoCounter;  // ordered counter of lo ties, when only some are kept
  int hi_counter = kNoCounter;
  uint64_t lo_ties_kept = 0;  // for the masked L1 sum
  uint64_t hi_ties_kept = 0;
  size_t stream = 0;  // its StreamSelector stream
};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

class GeneralizedTaskArithmetic final : public MergeMethod {
 public:
  explicit GeneralizedTaskArithmetic(const Family& family) : family_(family) {}

  // The settings mergekit crashes on or silently zeroes, from the parameters
  // and the tensor's shape alone.
  Status Check(const MergePlan& plan, const PlannedTensor& t) const override {
    ALLOY_RETURN_IF_ERROR(RequireBase(t));
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    const uint64_t row = t.shape.empty() ? 1 : static_cast<uint64_t>(t.shape.back());
    for (const PlannedInput& in : t.inputs) {
      if (in.is_base) continue;
      const double density = Param(in.params, "density");
      if (family_.sparsifier == Sparsifier::kNone || density >= 1.0) continue;
      const std::string where = "tensor '" + t.output_name + "' of " + ModelName(plan, in);
      if (family_.sparsifier == Sparsifier::kMagnitude && kernels::TopKCount(n, density) == 0) {
        return Status::InvalidArgument(t.method + ": density " + Num(density) + " keeps 0 of " +
                                       std::to_string(n) + " elements of " + where +
                                       "; raise density");
      }
      if (family_.sparsifier != Sparsifier::kDella || !(density > 0.0)) continue;
      const double epsilon = Param(in.params, "epsilon");
      if (!(density - epsilon > 0.0 && density + epsilon < 1.0)) {
        return Status::InvalidArgument(
            t.method + ": epsilon must be chosen such that density +/- epsilon is in (0, 1); "
                       "density " + Num(density) + ", epsilon " + Num(epsilon) + " for " + where);
      }
      if (row < 2) {
        return Status::InvalidArgument(t.method + ": " + where +
                                       " has rows of 1 element, so DELLA's ranks are 0/0 "
                                       "(mergekit fails here too); leave this tensor out or set "
                                       "density 1 for it");
      }
    }
    return Status::OK();
  }

  Status Merge(TensorPass& pass) override {
    base_ = static_cast<size_t>(pass.base_input());
    ALLOY_RETURN_IF_ERROR(PlanModels(pass));
    PrepareScratch(pass);
    if (n_windows_ > 0) ALLOY_RETURN_IF_ERROR(SelectThresholds(pass));
    ALLOY_RETURN_IF_ERROR(ComputeRescale(pass));
    return EmitMerged(pass);
  }

 private:
  // Fills models_ (one per non-base input) with each one's mode (Check has
  // accepted the settings).
  Status PlanModels(TensorPass& pass) {
    const PlannedTensor& t = pass.tensor();
    const uint64_t n = pass.numel();
    const bool rescale = Param(t.params, "rescale") != 0;
    normalize_ = Param(t.params, "normalize") != 0;
    lambda_ = Param(t.params, "lambda");
    models_.clear();
    bool any_della = false;
    for (size_t i = 0; i < t.inputs.size(); ++i) {
      if (i == base_) continue;
      const PlannedInput& in = t.inputs[i];
      ModelPlan m;
      m.input = i;
      m.model = static_cast<uint32_t>(in.model_index);
      m.weight = static_cast<float>(Param(in.params, "weight"));
      const double density = Param(in.params, "density");
      m.density = static_cast<float>(density);
      if (family_.sparsifier == Sparsifier::kNone || density >= 1.0) {
        m.mode = Mode::kDense;
      } else if (family_.sparsifier == Sparsifier::kMagnitude) {
        const uint64_t k = kernels::TopKCount(n, density);  // ≥ 1: Check
        m.mode = Mode::kWindow;
        m.lo_keeps_first = true;
        m.lo_quota = k;  // turned into the tie quota once the threshold is known
      } else if (family_.sparsifier == Sparsifier::kOutliers) {
        const kernels::RankWindow w =
            kernels::BreadcrumbsWindow(n, density, Param(in.params, "gamma"), true);
        if (w.lo >= w.hi) {
          m.mode = Mode::kZero;
        } else if (w.lo == 0 && w.hi >= n) {
          m.mode = Mode::kDense;  // keeps all: the rescale factor would be exactly 1
        } else {
          m.mode = Mode::kWindow;
          m.lo_quota = w.lo;  // window bounds until the keys are known
          m.hi_quota = w.hi;
        }
      } else if (!(density > 0.0)) {
        m.mode = Mode::kZero;  // DARE keeps nothing; DELLA returns zeros
      } else if (family_.sparsifier == Sparsifier::kRandom) {
        m.mode = Mode::kRandom;
      } else {
        m.mode = Mode::kDella;  // epsilon and row length: Check
        m.epsilon = static_cast<float>(Param(in.params, "epsilon"));
        any_della = true;
      }
      m.rescale = rescale && (m.mode == Mode::kWindow || m.mode == Mode::kRandom ||
                              m.mode == Mode::kDella);
      models_.push_back(m);
    }
    if (any_della) pass.AlignChunksToRows();
    n_counters_ = 0;
    n_windows_ = 0;
    for (const ModelPlan& m : models_) n_windows_ += m.mode == Mode::kWindow;
    return Status::OK();
  }

  void PrepareScratch(const TensorPass& pass) {
    const size_t slots = pass.num_slots();
    chunk_ = pass.chunk_elems();
    delta_stride_ = models_.size() * chunk_;
    Grow(delta_, slots * delta_stride_);
    Grow(keep_, slots * chunk_);
    Grow(spans_, slots * models_.size());
    ranks_stride_ = 0;
    for (const ModelPlan& m : models_) {
      if (m.mode == Mode::kDella) {
        const size_t row = static_cast<size_t>(pass.row_len());
        ranks_stride_ = kernels::MagnitudeRanksScratchSize(row) + row;
        break;
      }
    }
    Grow(ranks_, slots * ranks_stride_);
  }

  float* Delta(size_t slot, size_t model_idx) {
    return delta_.data() + slot * delta_stride_ + model_idx * chunk_;
  }

  // δ of model `model_idx` for chunk c, in the slot's scratch.
  std::span<float> ComputeDelta(const Chunk& c, size_t model_idx) {
    const std::span<float> d(Delta(c.slot, model_idx), c.size);
    kernels::Subtract(std::span<const float>(c.inputs[models_[model_idx].input], c.size),
                      std::span<const float>(c.inputs[base_], c.size), d);
    return d;
  }

  // One StreamSelector pass (plus a rare refinement) for every window model;
  // turns the answers into keys, tie quotas and ordered counters.
  Status SelectThresholds(TensorPass& pass) {
    const uint64_t n = pass.numel();
    stream_inputs_.clear();
    queries_.clear();
    struct Asked {
      int lo = -1;
      int hi = -1;
    };
    std::vector<Asked> asked(models_.size());
    for (size_t idx = 0; idx < models_.size(); ++idx) {
      ModelPlan& m = models_[idx];
      if (m.mode != Mode::kWindow) continue;
      const size_t stream = stream_inputs_.size();
      m.stream = stream;
      stream_inputs_.push_back(m.input);
      if (m.lo_keeps_first) {  // TIES: the k-th largest is at ascending rank n − k
        asked[idx].lo = static_cast<int>(queries_.size());
        queries_.push_back({stream, n - m.lo_quota});
        continue;
      }
      if (m.lo_quota > 0) {
        asked[idx].lo = static_cast<int>(queries_.size());
        queries_.push_back({stream, m.lo_quota});
      }
      if (m.hi_quota < n) {
        asked[idx].hi = static_cast<int>(queries_.size());
        queries_.push_back({stream, m.hi_quota - 1});
      }
    }
    const size_t base = base_;
    ALLOY_ASSIGN_OR_RETURN(
        std::vector<KeyAnswer> answers,
        selector_.Select(pass, stream_inputs_.size(), queries_,
                         [&](const Chunk& c, size_t stream, std::span<uint32_t> keys) {
                           kernels::DifferenceMagnitudeKeys(
                               std::span<const float>(c.inputs[stream_inputs_[stream]], c.size),
                               std::span<const float>(c.inputs[base], c.size), keys);
                         }));
    n_counters_ = 0;
    for (size_t idx = 0; idx < models_.size(); ++idx) {
      ModelPlan& m = models_[idx];
      if (m.mode != Mode::kWindow) continue;
      if (m.lo_keeps_first) {
        // Keep keys above t, and the first `quota` ties at t in flat order.
        const KeyAnswer& a = answers[static_cast<size_t>(asked[idx].lo)];
        const uint64_t n_above = n - a.n_below - a.n_equal;
        m.lo_key = a.key;
        m.lo_quota = m.lo_quota - n_above;
        m.lo_ties_kept = m.lo_quota;
        if (m.lo_quota < a.n_equal) m.lo_counter = static_cast<int>(n_counters_++);
        continue;
      }
      // Breadcrumbs: ascending positions [lo, hi) of the (key, index) order.
      const uint64_t lo = m.lo_quota, hi = m.hi_quota;
      m.lo_key = 0;
      m.lo_quota = 0;
      m.hi_key = UINT32_MAX;
      m.hi_quota = 0;
      if (asked[idx].lo >= 0) {
        const KeyAnswer& a = answers[static_cast<size_t>(asked[idx].lo)];
        m.lo_key = a.key;
        m.lo_quota = lo - a.n_below;  // the lo ties from this ordinal on are kept
        m.lo_ties_kept = a.n_equal - m.lo_quota;
        if (m.lo_quota > 0) m.lo_counter = static_cast<int>(n_counters_++);
      }
      if (asked[idx].hi >= 0) {
        const KeyAnswer& b = answers[static_cast<size_t>(asked[idx].hi)];
        m.hi_key = b.key;
        m.hi_quota = hi - b.n_below;  // the hi ties before this ordinal are kept
        m.hi_ties_kept = m.hi_quota;
        if (m.hi_quota < b.n_equal) {
          // Both ends in one run of equal keys count the same ties.
          const bool shared = asked[idx].lo >= 0 && m.lo_key == m.hi_key;
          m.hi_counter = shared && m.lo_counter != kNoCounter ? m.lo_counter
                                                              : static_cast<int>(n_counters_++);
        }
      }
      if (asked[idx].lo >= 0 && asked[idx].hi >= 0 && m.lo_key == m.hi_key) {
        m.lo_ties_kept = hi - lo;  // the whole window is one run of equal keys
        m.hi_ties_kept = 0;
      }
    }
    return Status::OK();
  }

  // The window of model m restricted to chunk c: its share of the tie quotas
  // from the counts of earlier chunks. x and base are the chunk's inputs.
  kernels::MagnitudeWindow LocalWindow(const ModelPlan& m, std::span<const float> x,
                                       std::span<const float> base,
                                       std::span<const uint64_t> prefix) const {
    kernels::MagnitudeWindow w;
    w.lo_key = m.lo_key;
    w.hi_key = m.hi_key;
    // Local index of the tie whose global ordinal is `ordinal`, or x.size().
    auto cut = [&](uint32_t key, int counter, uint64_t ordinal) -> uint32_t {
      const uint64_t seen = prefix[static_cast<size_t>(counter)];
      if (ordinal <= seen) return 0;
      return static_cast<uint32_t>(
          kernels::FindDifferenceMagnitudeKey(x, base, key, ordinal - seen));
    };
    if (m.lo_counter != kNoCounter) {
      const uint32_t at = cut(m.lo_key, m.lo_counter, m.lo_quota);
      if (m.lo_keeps_first) {
        w.lo_tie_end = at;
      } else {
        w.lo_tie_begin = at;
      }
    }
    if (m.hi_counter != kNoCounter) w.hi_tie_end = cut(m.hi_key, m.hi_counter, m.hi_quota);
    return w;
  }

  // The random masks of model `model_idx` for chunk c, into the slot's keep
  // scratch. REQUIRES (DELLA): d is the model's δ for c; DARE ignores it.
  std::span<const uint8_t> RandomMask(const TensorPass& pass, const Chunk& c, size_t model_idx,
                                      std::span<const float> d) {
    const ModelPlan& m = models_[model_idx];
    const std::span<uint8_t> keep(keep_.data() + c.slot * chunk_, c.size);
    if (m.mode == Mode::kRandom) {
      kernels::DareKeepMask(pass.seed(), pass.name_hash(), m.model, c.begin, m.density, keep);
    } else {
      kernels::DellaKeepMask(d, static_cast<size_t>(pass.row_len()), pass.seed(), pass.name_hash(),
                             m.model, c.begin, m.density, m.epsilon,
                             std::span<uint32_t>(ranks_.data() + c.slot * ranks_stride_,
                                                 ranks_stride_),
                             keep);
    }
    return keep;
  }

  // The L1 rescale factor of every model with `rescale`: a Scan gathers
  // per-chunk partials (Σ|δ| and Σ|kept δ|), added in chunk order.
  Status ComputeRescale(TensorPass& pass) {
    bool any = false;
    for (const ModelPlan& m : models_) any |= m.rescale;
    if (!any) return Status::OK();
    const size_t n_models = models_.size();
    const size_t n_chunks = pass.num_chunks();
    Grow(partials_, n_chunks * n_models);
    ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
      for (size_t idx = 0; idx < n_models; ++idx) {
        const ModelPlan& m = models_[idx];
        if (!m.rescale) continue;
        const std::span<float> d = ComputeDelta(c, idx);
        kernels::L1Norms& out = partials_[c.index * n_models + idx];
        if (m.mode == Mode::kWindow) {
          out = kernels::ChunkL1NormsBetween(d, m.lo_key, m.hi_key);
        } else {
          out = kernels::ChunkMaskedL1Norms(d, RandomMask(pass, c, idx, d));
        }
      }
    }));
    for (size_t idx = 0; idx < n_models; ++idx) {
      ModelPlan& m = models_[idx];
      if (!m.rescale) continue;
      kernels::L1Norms sum;
      for (size_t chunk_idx = 0; chunk_idx < n_chunks; ++chunk_idx) {
        sum.unmasked += partials_[chunk_idx * n_models + idx].unmasked;
        sum.masked += partials_[chunk_idx * n_models + idx].masked;
      }
      if (m.mode == Mode::kWindow) {
        // Ties at either end all have that end's magnitude. (An end without
        // kept ties may be the sentinel UINT32_MAX, whose magnitude is NaN.)
        if (m.lo_ties_kept > 0) {
          sum.masked += static_cast<double>(m.lo_ties_kept) *
                        static_cast<double>(kernels::KeyMagnitude(m.lo_key));
        }
        if (m.hi_ties_kept > 0) {
          sum.masked += static_cast<double>(m.hi_ties_kept) *
                        static_cast<double>(kernels::KeyMagnitude(m.hi_key));
        }
      }
      m.scale = kernels::L1RescaleFactor(sum);
    }
    return Status::OK();
  }

  // S_i for chunk c of every model that is not all zero, into the slot's δ
  // scratch (δ = x − base is fused into the masking kernels); fills the
  // slot's span list and returns it.
  std::span<const std::span<const float>> Sparsify(const TensorPass& pass, const Chunk& c,
                                                   std::span<const uint64_t> prefix) {
    std::span<const float>* spans = spans_.data() + c.slot * models_.size();
    const std::span<const float> base(c.inputs[base_], c.size);
    size_t n_active = 0;
    for (size_t idx = 0; idx < models_.size(); ++idx) {
      const ModelPlan& m = models_[idx];
      if (m.mode == Mode::kZero) continue;
      const std::span<const float> x(c.inputs[m.input], c.size);
      const std::span<float> d(Delta(c.slot, idx), c.size);
      switch (m.mode) {
        case Mode::kWindow:
          kernels::ApplyMagnitudeWindowToDifference(x, base, LocalWindow(m, x, base, prefix),
                                                    m.scale, d);
          break;
        case Mode::kRandom:
          kernels::ApplyMaskToDifference(x, base, RandomMask(pass, c, idx, {}), m.scale, d);
          break;
        case Mode::kDella:
          kernels::Subtract(x, base, d);
          kernels::ApplyMask(d, RandomMask(pass, c, idx, d), m.scale, d);
          break;
        default:
          kernels::Subtract(x, base, d);
          break;
      }
      spans[n_active++] = d;
    }
    return std::span<const std::span<const float>>(spans, n_active);
  }

  void Combine(const Chunk& c, std::span<const std::span<const float>> s, std::span<double> out) {
    const std::span<const float> base(c.inputs[base_], c.size);
    if (family_.consensus == Consensus::kSum) {
      kernels::TiesConsensus(s, active_weights_, kernels::SignElection::kSum, normalize_, out);
      kernels::AddBaseScaled(base, lambda_, out);
    } else {
      kernels::WeightedSumOnBase(s, active_weights_, normalize_ ? divisor_ : 1.0, base, lambda_,
                                 out);
    }
  }

  // Fills prefix_ (chunk × counter: ties in earlier chunks) from the
  // selector's per-chunk counts; false when any counter lacks them.
  bool PrefixFromSelector(const TensorPass& pass) {
    const size_t n_chunks = pass.num_chunks();
    Grow(chunk_ties_, n_chunks);
    Grow(prefix_, n_chunks * n_counters_);
    const std::span<uint64_t> ties(chunk_ties_.data(), n_chunks);
    auto fill = [&](size_t stream, uint32_t key, int counter) {
      if (!selector_.EqualCountsPerChunk(stream, key, ties)) return false;
      uint64_t running = 0;
      for (size_t chunk = 0; chunk < n_chunks; ++chunk) {
        prefix_[chunk * n_counters_ + static_cast<size_t>(counter)] = running;
        running += ties[chunk];
      }
      return true;
    };
    for (const ModelPlan& m : models_) {
      if (m.lo_counter != kNoCounter && !fill(m.stream, m.lo_key, m.lo_counter)) return false;
      if (m.hi_counter != kNoCounter && m.hi_counter != m.lo_counter &&
          !fill(m.stream, m.hi_key, m.hi_counter)) {
        return false;
      }
    }
    return true;
  }

  Status EmitMerged(TensorPass& pass) {
    active_weights_.clear();
    double sum_w = 0;
    for (const ModelPlan& m : models_) {
      sum_w += static_cast<double>(m.weight);
      if (m.mode != Mode::kZero) active_weights_.push_back(m.weight);
    }
    divisor_ = std::fabs(sum_w) < 1e-8 ? 1.0 : sum_w;
    const bool all_dense = std::all_of(models_.begin(), models_.end(),
                                       [](const ModelPlan& m) { return m.mode == Mode::kDense; });
    if (family_.consensus == Consensus::kNone && all_dense) {
      // Plain task arithmetic: the deltas are formed inside the blend.
      return pass.EmitElementwise([&](const Chunk& c, std::span<double> out) {
        std::span<const float>* xs = spans_.data() + c.slot * models_.size();
        for (size_t k = 0; k < models_.size(); ++k) {
          xs[k] = std::span<const float>(c.inputs[models_[k].input], c.size);
        }
        kernels::WeightedDeltaSumOnBase(
            std::span<const std::span<const float>>(xs, models_.size()), active_weights_,
            normalize_ ? divisor_ : 1.0, std::span<const float>(c.inputs[base_], c.size), lambda_,
            out);
      });
    }
    if (n_counters_ == 0 || n_windows_ == 0) {
      const auto emit = [&](const Chunk& c, std::span<double> out) {
        Combine(c, Sparsify(pass, c, {}), out);
      };
      // DELLA ranks whole rows; every other mode here is elementwise.
      const bool rows = std::any_of(models_.begin(), models_.end(),
                                    [](const ModelPlan& m) { return m.mode == Mode::kDella; });
      return rows ? pass.Emit(emit) : pass.EmitElementwise(emit);
    }
    // Tie counts per chunk from the select pass when it recorded them (the
    // usual case for bf16 checkpoints): a plain Emit, no counting pass.
    // Whether it could may depend on which chunks each thread got first;
    // both ways give the same bytes.
    if (PrefixFromSelector(pass)) {
      return pass.Emit([&](const Chunk& c, std::span<double> out) {
        const std::span<const uint64_t> prefix(prefix_.data() + c.index * n_counters_,
                                               n_counters_);
        Combine(c, Sparsify(pass, c, prefix), out);
      });
    }
    return pass.EmitOrdered(
        n_counters_,
        [&](const Chunk& c, std::span<uint64_t> counters) {
          const std::span<const float> base(c.inputs[base_], c.size);
          for (const ModelPlan& m : models_) {
            const std::span<const float> x(c.inputs[m.input], c.size);
            if (m.lo_counter != kNoCounter) {
              counters[static_cast<size_t>(m.lo_counter)] =
                  kernels::CountDifferenceMagnitudeKey(x, base, m.lo_key);
            }
            if (m.hi_counter != kNoCounter && m.hi_counter != m.lo_counter) {
              counters[static_cast<size_t>(m.hi_counter)] =
                  kernels::CountDifferenceMagnitudeKey(x, base, m.hi_key);
            }
          }
        },
        [&](const Chunk& c, std::span<const uint64_t> prefix, std::span<double> out) {
          Combine(c, Sparsify(pass, c, prefix), out);
        });
  }

  const Family family_;
  size_t base_ = 0;
  bool normalize_ = false;
  double lambda_ = 1.0;
  double divisor_ = 1.0;
  std::vector<ModelPlan> models_;
  size_t n_windows_ = 0;
  size_t n_counters_ = 0;
  StreamSelector selector_;
  std::vector<size_t> stream_inputs_;  // per select stream: the input it reads
  std::vector<KeyQuery> queries_;
  std::vector<float> active_weights_;  // weights of the models that are not all zero
  // Scratch reused across tensors (grow-only: fresh pages are slow).
  size_t chunk_ = 0;
  size_t delta_stride_ = 0;
  size_t ranks_stride_ = 0;
  std::vector<float> delta_;                      // slot × model × chunk
  std::vector<uint8_t> keep_;                     // slot × chunk
  std::vector<uint32_t> ranks_;                   // slot × DELLA rank scratch
  std::vector<std::span<const float>> spans_;     // slot × model
  std::vector<kernels::L1Norms> partials_;        // chunk × model
  std::vector<uint64_t> chunk_ties_;              // chunk: ties of one counter
  std::vector<uint64_t> prefix_;                  // chunk × counter: ties before it
};

}  // namespace

std::unique_ptr<MergeMethod> MakeTaskArithmetic(std::string_view name) {
  for (const Family& family : kFamilies) {
    if (family.name == name) return std::make_unique<GeneralizedTaskArithmetic>(family);
  }
  return nullptr;
}

}  // namespace alloy::merge::methods
