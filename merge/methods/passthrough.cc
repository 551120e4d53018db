// passthrough (mergekit-semantics.md §1.14): the one input, times `scale`
// when the model's parameters give one (usually through filters: "o_proj at
// 0.5"). Without a scale, a tensor whose dtype is the output dtype is copied
// byte for byte (MergeMethod::CopiesInput); otherwise it is converted.
#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

// The input's scale, if its parameters set one.
const double* ScaleOf(const PlannedTensor& t) {
  auto it = t.inputs[0].params.find("scale");
  return it == t.inputs[0].params.end() ? nullptr : &it->second;
}

class Passthrough final : public MergeMethod {
 public:
  bool CopiesInput(const PlannedTensor& t) const override {
    return ScaleOf(t) == nullptr && t.inputs[0].input_dtype == t.out_dtype &&
           t.inputs[0].input_shape == t.shape;
  }

  formats::Status Merge(TensorPass& pass) override {
    const double* scale = ScaleOf(pass.tensor());
    // Decision (a): the product of a parameter and an input is float32.
    const float s = scale != nullptr ? static_cast<float>(*scale) : 1.0f;
    const bool scaled = scale != nullptr;
    return pass.EmitElementwise([&](const Chunk& c, std::span<double> out) {
      const float* x = c.inputs[0];
      for (size_t j = 0; j < c.size; ++j) {
        out[j] = static_cast<double>(scaled ? s * x[j] : x[j]);
      }
    });
  }
};

}  // namespace

std::unique_ptr<MergeMethod> MakePassthrough() { return std::make_unique<Passthrough>(); }

}  // namespace alloy::merge::methods
