// slerp (mergekit-semantics.md §1.5): spherical interpolation of the whole
// flattened tensor from the base v0 (t = 0) to the other model v1 (t = 1).
//
// Streaming: one Scan gathers ‖v0‖², ‖v1‖² and v0·v1 per chunk (float64,
// kernels::ComputeDotSums), combined in chunk order, so the coefficients are
// the same at any thread count. Then one elementwise Emit writes
// s0·v0 + s1·v1: s0 = sin((1−t)θ)/sin θ, s1 = sin(tθ)/sin θ with
// cos θ = u0·u1, or the lerp (1−t, t) when |u0·u1| > 0.9995. A vector whose
// norm is at most 1e-8 is not normalized (mergekit's rule). The scalar chain
// is float64 (NumPy 1.x promotes it); the products with the inputs are
// float32 and their sum float64 (Decision a), rounded once.
#include <cmath>
#include <vector>

#include "kernels/blend.h"
#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

class Slerp final : public MergeMethod {
 public:
  formats::Status Merge(TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    if (pass.num_inputs() == 1) {  // a lone input is returned unchanged
      return EmitInput(pass, 0);
    }
    // The planner gives exactly the base and one other input (Decision (i):
    // the first source when the base is outside the slice).
    const size_t v0 = pass.base_input() >= 0 ? static_cast<size_t>(pass.base_input()) : 0;
    const size_t v1 = v0 == 0 ? 1 : 0;
    partials_.assign(pass.num_chunks(), kernels::DotSums{});
    ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
      partials_[c.index] = kernels::ComputeDotSums(std::span<const float>(c.inputs[v0], c.size),
                                                   std::span<const float>(c.inputs[v1], c.size));
    }));
    kernels::DotSums sums;
    for (const kernels::DotSums& p : partials_) {
      sums.aa += p.aa;
      sums.bb += p.bb;
      sums.ab += p.ab;
    }
    const double step = Param(t.params, "t");
    const double n0 = std::sqrt(sums.aa), n1 = std::sqrt(sums.bb);
    const double dot = sums.ab / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
    double s0 = 1.0 - step, s1 = step;  // the lerp
    if (!(std::fabs(dot) > 0.9995)) {
      const double theta0 = std::acos(dot);
      const double sin0 = std::sin(theta0);
      s0 = std::sin(theta0 - theta0 * step) / sin0;
      s1 = std::sin(theta0 * step) / sin0;
    }
    const float w0 = static_cast<float>(s0), w1 = static_cast<float>(s1);
    return pass.EmitElementwise([&](const Chunk& c, std::span<double> out) {
      const float* a = c.inputs[v0];
      const float* b = c.inputs[v1];
      for (size_t j = 0; j < c.size; ++j) {
        out[j] = static_cast<double>(w0 * a[j]) + static_cast<double>(w1 * b[j]);
      }
    });
  }

 private:
  std::vector<kernels::DotSums> partials_;  // per chunk, reused across tensors
};

}  // namespace

std::unique_ptr<MergeMethod> MakeSlerp() { return std::make_unique<Slerp>(); }

}  // namespace alloy::merge::methods
