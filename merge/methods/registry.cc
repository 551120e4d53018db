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

}  // namespace methods

formats::Result<std::unique_ptr<MergeMethod>> MakeMergeMethod(std::string_view name) {
  std::unique_ptr<MergeMethod> method;
  if (name == "linear") {
    method = methods::MakeLinear();
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
        "dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear, sce, ram, ramplus_tl)");
  }
  return method;
}

bool HasMergeMethod(std::string_view name) { return MakeMergeMethod(name).ok(); }

}  // namespace alloy::merge
