// linear (mergekit-semantics.md §1.1): R = Σ_i w_i·X_i, divided by Σ_i w_i
// when `normalize` (default true). Every input is a normal input (the base
// too, when listed). Products in float32 widened to float64, sums in model
// order in float64, one rounding at the end (Decision a).
//
// Difference from mergekit: with normalize and Σw = 0 mergekit writes inf/NaN
// tensors; alloy refuses the tensor with a message instead.
#include <vector>

#include "kernels/blend.h"
#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

class Linear final : public MergeMethod {
 public:
  formats::Status Check(const MergePlan&, const PlannedTensor& t) const override {
    double sum = 0;
    for (const PlannedInput& in : t.inputs) sum += static_cast<float>(Param(in.params, "weight"));
    if (Param(t.params, "normalize") != 0 && sum == 0) {
      return formats::Status::InvalidArgument(
          "linear: the weights of tensor '" + t.output_name +
          "' sum to 0, and normalize divides by that sum; change the weights or set "
          "`normalize: false`");
    }
    return formats::Status::OK();
  }

  formats::Status Merge(TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    const size_t n = pass.num_inputs();
    weights_.resize(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      weights_[i] = static_cast<float>(Param(t.inputs[i].params, "weight"));
      sum += weights_[i];
    }
    const bool normalize = Param(t.params, "normalize") != 0;  // Σw ≠ 0: Check
    if (inputs_.size() < pass.num_slots() * n) inputs_.resize(pass.num_slots() * n);
    return pass.EmitElementwise([&](const Chunk& c, std::span<double> out) {
      const std::span<std::span<const float>> xs(inputs_.data() + c.slot * n, n);
      for (size_t i = 0; i < n; ++i) xs[i] = std::span<const float>(c.inputs[i], c.size);
      kernels::WeightedSum(xs, weights_, normalize ? sum : 1.0, out);
    });
  }

 private:
  std::vector<float> weights_;
  std::vector<std::span<const float>> inputs_;  // slot × input, rebuilt per chunk
};

}  // namespace

std::unique_ptr<MergeMethod> MakeLinear() { return std::make_unique<Linear>(); }

}  // namespace alloy::merge::methods
