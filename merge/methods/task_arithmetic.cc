// The generalized task-arithmetic family (mergekit-semantics.md §1.2, §1.3).
#include <cmath>
#include <vector>

#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

class TaskArithmetic final : public MergeMethod {
 public:
  formats::Status Merge(TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    const int base = pass.base_input();
    const size_t n = pass.num_inputs();
    others_.clear();
    weights_.clear();
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<int>(i) == base) continue;
      others_.push_back(i);
      weights_.push_back(static_cast<float>(Param(t.inputs[i].params, "weight")));
    }
    const bool normalize = Param(t.params, "normalize") != 0;
    const double lambda = Param(t.params, "lambda");
    double div = 0;
    for (float w : weights_) div += w;
    if (std::fabs(div) < 1e-8) div = 1;
    const double scale = (normalize ? 1.0 / div : 1.0);
    return pass.Emit([&](const Chunk& c, std::span<double> out) {
      const float* b = c.inputs[static_cast<size_t>(base)];
      for (size_t j = 0; j < c.size; ++j) out[j] = 0;
      for (size_t k = 0; k < others_.size(); ++k) {
        const float w = weights_[k];
        const float* x = c.inputs[others_[k]];
        for (size_t j = 0; j < c.size; ++j) out[j] += static_cast<double>(w * (x[j] - b[j]));
      }
      for (size_t j = 0; j < c.size; ++j) {
        double mixed = normalize ? out[j] / div : out[j];
        out[j] = static_cast<double>(b[j]) + lambda * mixed;
      }
      (void)scale;
    });
  }

 private:
  std::vector<size_t> others_;
  std::vector<float> weights_;
};

}  // namespace

std::unique_ptr<MergeMethod> MakeTaskArithmetic(std::string_view name) {
  if (name == "task_arithmetic") return std::make_unique<TaskArithmetic>();
  return nullptr;
}

}  // namespace alloy::merge::methods
