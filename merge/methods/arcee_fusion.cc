// arcee_fusion (mergekit-semantics.md §1.10): keep the other model's values
// where they matter most. Per row r (last dimension), with B the base and F
// the other model,
//   kl_r = Σ P·log(P/Q),  P = softmax(F_r) + 1e-8,  Q = softmax(B_r) + 1e-8,
//   imp  = |F − B| · kl_r  (float32),
// then thr = Q0.5 + 1.5·(Q0.75 − Q0.25) over all of imp, with the quantiles
// taken exactly (sorted[floor(q·(n−1))]; mergekit samples 1,000,000 values
// of larger tensors at random), and the result is B + (F − B)·[imp ≥ thr].
//
// Streaming, with chunks of whole rows: one Scan for kl per row (float64;
// the softmax needs the whole row), one StreamSelector pass for the three
// quantiles, one elementwise-per-row Emit.
#include <cmath>
#include <vector>

#include "kernels/select.h"
#include "merge/methods/methods.h"
#include "merge/methods/stream_select.h"

namespace alloy::merge::methods {
namespace {

using formats::Status;

// KL(P‖Q) of the softmaxes of f and b over one row, float64.
double RowKl(const float* f, const float* b, size_t len) {
  double fmax = -INFINITY, bmax = -INFINITY;
  for (size_t j = 0; j < len; ++j) {
    fmax = std::max(fmax, static_cast<double>(f[j]));
    bmax = std::max(bmax, static_cast<double>(b[j]));
  }
  double fsum = 0, bsum = 0;
  for (size_t j = 0; j < len; ++j) {
    fsum += std::exp(static_cast<double>(f[j]) - fmax);
    bsum += std::exp(static_cast<double>(b[j]) - bmax);
  }
  double kl = 0;
  for (size_t j = 0; j < len; ++j) {
    const double p = std::exp(static_cast<double>(f[j]) - fmax) / fsum + 1e-8;
    const double q = std::exp(static_cast<double>(b[j]) - bmax) / bsum + 1e-8;
    kl += p * std::log(p / q);
  }
  return kl;
}

class ArceeFusion final : public MergeMethod {
 public:
  Status Check(const MergePlan&, const PlannedTensor& t) const override {
    return RequireBase(t);
  }

  Status Merge(TensorPass& pass) override {
    const size_t base = static_cast<size_t>(pass.base_input());
    if (pass.num_inputs() == 1) {  // only the base
      return EmitInput(pass, 0);
    }
    const size_t other = base == 0 ? 1 : 0;
    pass.AlignChunksToRows();
    const size_t row = static_cast<size_t>(pass.row_len());
    kl_.assign(static_cast<size_t>(pass.numel() / row), 0.0);
    ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
      for (size_t begin = 0; begin < c.size; begin += row) {
        kl_[(c.begin + begin) / row] = RowKl(c.inputs[other] + begin, c.inputs[base] + begin, row);
      }
    }));
    // imp as float32, exactly as the emitting pass computes it.
    const auto importance = [&](const Chunk& c, size_t j) {
      const float diff = std::fabs(c.inputs[other][j] - c.inputs[base][j]);
      return diff * static_cast<float>(kl_[(c.begin + j) / row]);
    };
    const uint64_t n = pass.numel();
    const KeyQuery queries[] = {{0, (n - 1) / 4}, {0, (n - 1) / 2}, {0, 3 * (n - 1) / 4}};
    ALLOY_ASSIGN_OR_RETURN(
        std::vector<KeyAnswer> q,
        selector_.Select(pass, 1, queries, [&](const Chunk& c, size_t, std::span<uint32_t> keys) {
          for (size_t j = 0; j < c.size; ++j) keys[j] = kernels::MagnitudeKey(importance(c, j));
        }));
    const float q25 = kernels::KeyMagnitude(q[0].key);
    const float q50 = kernels::KeyMagnitude(q[1].key);
    const float q75 = kernels::KeyMagnitude(q[2].key);
    const float threshold = q50 + 1.5f * (q75 - q25);
    return pass.Emit([&](const Chunk& c, std::span<double> out) {
      const float* b = c.inputs[base];
      const float* f = c.inputs[other];
      for (size_t j = 0; j < c.size; ++j) {
        const float keep = importance(c, j) >= threshold ? 1.0f : 0.0f;
        out[j] = static_cast<double>(b[j] + (f[j] - b[j]) * keep);
      }
    });
  }

 private:
  std::vector<double> kl_;  // per row of the current tensor
  StreamSelector selector_;
};

}  // namespace

std::unique_ptr<MergeMethod> MakeArceeFusion() { return std::make_unique<ArceeFusion>(); }

}  // namespace alloy::merge::methods
