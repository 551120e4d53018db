// nearswap (mergekit-semantics.md §1.11): w = clamp(t / max(|B − X|, 1e-6),
// 0, 1) per element, result w·X + (1 − w)·B. Elementwise in float32 (the
// weight and the two products), the sum in float64, rounded once.
#include <algorithm>
#include <cmath>

#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

class Nearswap final : public MergeMethod {
 public:
  formats::Status Check(const MergePlan&, const PlannedTensor& t) const override {
    return RequireBase(t);
  }

  formats::Status Merge(TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    const size_t base = static_cast<size_t>(pass.base_input());
    const float step = static_cast<float>(Param(t.params, "t"));
    if (pass.num_inputs() == 1) {  // only the base: itself
      return EmitInput(pass, 0);
    }
    const size_t other = base == 0 ? 1 : 0;
    return pass.EmitElementwise([&](const Chunk& c, std::span<double> out) {
      const float* b = c.inputs[base];
      const float* x = c.inputs[other];
      for (size_t j = 0; j < c.size; ++j) {
        const float w = std::clamp(step / std::max(std::fabs(b[j] - x[j]), 1e-6f), 0.0f, 1.0f);
        out[j] = static_cast<double>(w * x[j]) + static_cast<double>((1.0f - w) * b[j]);
      }
    });
  }
};

}  // namespace

std::unique_ptr<MergeMethod> MakeNearswap() { return std::make_unique<Nearswap>(); }

}  // namespace alloy::merge::methods
