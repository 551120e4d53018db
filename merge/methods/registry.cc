#include "formats/status.h"
#include "merge/executor.h"
#include "merge/methods/methods.h"

namespace alloy::merge {
namespace methods {

double Param(const ParamValues& params, std::string_view name) {
  auto it = params.find(name);
  ALLOY_CHECK(it != params.end() && "the planner resolves every parameter a method reads");
  return it->second;
}

std::string ModelName(const MergePlan& plan, const PlannedInput& input) {
  const ModelRef& ref = plan.models[input.model_index].ref;
  std::string name = "model '" + ref.text + "'";
  if (ref.line > 0) name += " (recipe line " + std::to_string(ref.line) + ")";
  return name;
}

formats::Status RequireBase(const PlannedTensor& t) {
  for (const PlannedInput& in : t.inputs) {
    if (in.is_base) return formats::Status::OK();
  }
  return formats::Status::InvalidArgument(t.method + ": tensor '" + t.output_name +
                                          "' is missing from the base model, which " + t.method +
                                          " requires");
}

std::vector<size_t> NonBaseInputs(const TensorPass& pass) {
  std::vector<size_t> out;
  for (size_t i = 0; i < pass.num_inputs(); ++i) {
    if (static_cast<int>(i) != pass.base_input()) out.push_back(i);
  }
  return out;
}

formats::Status EmitInput(TensorPass& pass, size_t index) {
  return pass.EmitElementwise([index](const Chunk& c, std::span<double> out) {
    const float* x = c.inputs[index];
    for (size_t j = 0; j < c.size; ++j) out[j] = static_cast<double>(x[j]);
  });
}

}  // namespace methods

formats::Result<std::unique_ptr<MergeMethod>> MakeMergeMethod(std::string_view name) {
  std::unique_ptr<MergeMethod> method;
  if (name == "linear") {
    method = methods::MakeLinear();
  } else if (name == "slerp") {
    method = methods::MakeSlerp();
  } else if (name == "nearswap") {
    method = methods::MakeNearswap();
  } else if (name == "passthrough") {
    method = methods::MakePassthrough();
  } else if (name == "nuslerp") {
    method = methods::MakeNuslerp();
  } else if (name == "multislerp") {
    method = methods::MakeMultislerp();
  } else if (name == "karcher") {
    method = methods::MakeKarcher();
  } else if (name == "model_stock") {
    method = methods::MakeModelStock();
  } else if (name == "arcee_fusion") {
    method = methods::MakeArceeFusion();
  } else if (name == "sce") {
    method = methods::MakeSce();
  } else if (auto ta = methods::MakeTaskArithmetic(name)) {
    method = std::move(ta);
  } else if (auto ram = methods::MakeRam(name)) {
    method = std::move(ram);
  }
  if (!method) {
    return formats::Status::Unsupported(
        "merge method '" + std::string(name) +
        "' is not implemented in alloy yet (available: linear, task_arithmetic, ties, dare_ties, "
        "dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear, sce, ram, ramplus_tl, "
        "slerp, nearswap, passthrough, nuslerp, multislerp, karcher, model_stock, arcee_fusion)");
  }
  return method;
}

bool HasMergeMethod(std::string_view name) { return MakeMergeMethod(name).ok(); }

formats::Status MergeMethod::Check(const MergePlan&, const PlannedTensor&) const {
  return formats::Status::OK();
}

bool MergeMethod::CopiesInput(const PlannedTensor&) const { return false; }

formats::Status CheckPlan(const MergePlan& plan) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<MergeMethod> method, MakeMergeMethod(plan.method));
  for (const PlannedTensor& t : plan.tensors) {
    if (t.copy_only || t.nbytes == 0) continue;
    ALLOY_RETURN_IF_ERROR(method->Check(plan, t));
  }
  return formats::Status::OK();
}

}  // namespace alloy::merge
