// ram and ramplus_tl (mergekit-semantics.md §1.13). Per element, with the
// task vectors τ_i = X_i − B (float32) of the non-base inputs in recipe order
// (Decision c): nz_i = |τ_i| > ε, c = Σ_i nz_i, τ'_i = τ_i·nz_i,
//   Δ = Σ_i τ'_i·[c == 1]·λ_i + (Σ_i τ'_i·[c > 1]) / max(c, 1),   out = B + Δ,
// with λ_i = 1 for ram. ramplus_tl first counts, over the whole tensor, the
// shared (S_i) and unique (U_i) positions of each model in one Scan, then
// λ_i = 1 + r·clamp(S_i / max(U_i, ε), 0, alpha). ram is a single Emit.
//
// The 0/1 masks are multiplied in, as mergekit does, so a NaN or inf delta
// poisons its element (inf·0 = NaN), and a NaN λ_i (ε = 0 and a model with
// no delta in the tensor: S_i/max(U_i, ε) = 0/0) poisons the whole tensor —
// mergekit's behaviour, kept (Decision d).
// ε is compared as a float32, as torch compares a float32 tensor with a
// Python float. Sums over models in float64, one rounding at the end.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

// Elements per block: the per-block arrays stay in L1 while each model's
// chunk is read sequentially, one model at a time.
constexpr size_t kBlock = 512;

class Ram final : public MergeMethod {
 public:
  explicit Ram(bool plus) : plus_(plus) {}

  formats::Status Check(const MergePlan&, const PlannedTensor& t) const override {
    return RequireBase(t);
  }

  formats::Status Merge(TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    base_ = static_cast<size_t>(pass.base_input());
    others_ = NonBaseInputs(pass);
    eps_ = static_cast<float>(Param(t.params, "epsilon"));
    lambda_.assign(others_.size(), 1.0);
    if (plus_ && !others_.empty()) ALLOY_RETURN_IF_ERROR(ComputeLambdas(pass));
    return pass.Emit([&](const Chunk& c, std::span<double> out) { EmitChunk(c, out); });
  }

 private:
  // cnt[j] = #{models : |τ_i| > ε} at elements [begin, begin + len) of c.
  void Count(const Chunk& c, size_t begin, size_t len, int32_t* cnt) const {
    const float* b = c.inputs[base_] + begin;
    const float eps = eps_;
    for (size_t j = 0; j < len; ++j) cnt[j] = 0;
    for (size_t i : others_) {
      const float* x = c.inputs[i] + begin;
      for (size_t j = 0; j < len; ++j) cnt[j] += std::fabs(x[j] - b[j]) > eps;
    }
  }

  // ramplus_tl: S_i and U_i over the whole tensor (integer counts, so the
  // per-slot totals may be added in any order), then λ_i.
  formats::Status ComputeLambdas(TensorPass& pass) {
    const size_t n = others_.size();
    counts_.assign(pass.num_slots() * n * 2, 0);
    ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
      uint64_t* slot_counts = &counts_[c.slot * n * 2];
      std::array<int32_t, kBlock> cnt;
      const float eps = eps_;
      for (size_t begin = 0; begin < c.size; begin += kBlock) {
        const size_t len = std::min(kBlock, c.size - begin);
        Count(c, begin, len, cnt.data());
        const float* b = c.inputs[base_] + begin;
        for (size_t k = 0; k < n; ++k) {
          const float* x = c.inputs[others_[k]] + begin;
          int32_t shared = 0, unique = 0;
          for (size_t j = 0; j < len; ++j) {
            const int32_t nz = std::fabs(x[j] - b[j]) > eps;
            shared += nz & (cnt[j] > 1);
            unique += nz & (cnt[j] == 1);
          }
          slot_counts[2 * k] += static_cast<uint64_t>(shared);
          slot_counts[2 * k + 1] += static_cast<uint64_t>(unique);
        }
      }
    }));
    const double r = Param(pass.tensor().params, "r");
    const double alpha = Param(pass.tensor().params, "alpha");
    const double eps = Param(pass.tensor().params, "epsilon");
    for (size_t k = 0; k < n; ++k) {
      uint64_t shared = 0, unique = 0;
      for (size_t slot = 0; slot < pass.num_slots(); ++slot) {
        shared += counts_[(slot * n + k) * 2];
        unique += counts_[(slot * n + k) * 2 + 1];
      }
      const double rho = static_cast<double>(shared) / std::max(static_cast<double>(unique), eps);
      // torch.clamp(ρ, 0, alpha): max first, then min, so alpha < 0 gives
      // alpha and a NaN ρ stays NaN.
      lambda_[k] = 1.0 + r * std::min(std::max(rho, 0.0), alpha);
    }
    return formats::Status::OK();
  }

  void EmitChunk(const Chunk& c, std::span<double> out) const {
    std::array<int32_t, kBlock> cnt;
    std::array<float, kBlock> unique_f, shared_f, kept;
    std::array<double, kBlock> acc_unique, acc_shared;
    const float eps = eps_;
    for (size_t begin = 0; begin < c.size; begin += kBlock) {
      const size_t len = std::min(kBlock, c.size - begin);
      const float* b = c.inputs[base_] + begin;
      Count(c, begin, len, cnt.data());
      for (size_t j = 0; j < len; ++j) {
        unique_f[j] = cnt[j] == 1 ? 1.0f : 0.0f;
        shared_f[j] = cnt[j] > 1 ? 1.0f : 0.0f;
        acc_unique[j] = 0;
        acc_shared[j] = 0;
      }
      for (size_t k = 0; k < others_.size(); ++k) {
        const float* x = c.inputs[others_[k]] + begin;
        // τ' = τ·nz: τ where |τ| > ε, 0 where |τ| ≤ ε, and NaN stays NaN
        // (NaN·0). Written as a select, and the float64 sums in a second
        // loop, because GCC 12 vectorises neither a bool→float product nor a
        // select feeding a widening conversion.
        for (size_t j = 0; j < len; ++j) {
          const float tau = x[j] - b[j];
          kept[j] = std::fabs(tau) <= eps ? 0.0f : tau;
        }
        const double lambda = lambda_[k];
        for (size_t j = 0; j < len; ++j) {
          acc_unique[j] += static_cast<double>(kept[j] * unique_f[j]) * lambda;
          acc_shared[j] += static_cast<double>(kept[j] * shared_f[j]);
        }
      }
      double* o = out.data() + begin;
      for (size_t j = 0; j < len; ++j) {
        const double divisor = static_cast<double>(std::max(cnt[j], int32_t{1}));
        o[j] = static_cast<double>(b[j]) + (acc_unique[j] + acc_shared[j] / divisor);
      }
    }
  }

  bool plus_;
  size_t base_ = 0;
  float eps_ = 0;
  std::vector<size_t> others_;
  std::vector<double> lambda_;    // per non-base input
  std::vector<uint64_t> counts_;  // [slot][model][shared, unique]
};

}  // namespace

std::unique_ptr<MergeMethod> MakeRam(std::string_view name) {
  if (name == "ram") return std::make_unique<Ram>(false);
  if (name == "ramplus_tl") return std::make_unique<Ram>(true);
  return nullptr;
}

}  // namespace alloy::merge::methods
