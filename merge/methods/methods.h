// Factories of the merge methods, one file each under merge/methods/
// (mergekit-semantics.md §1). merge/methods/registry.cc maps recipe names to
// them; see merge/executor.h for the MergeMethod contract. Not a public API.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <string_view>

#include "merge/executor.h"

namespace alloy::merge::methods {

// linear (§1.1).
std::unique_ptr<MergeMethod> MakeLinear();

// The generalized task-arithmetic family (§1.2, §1.3): task_arithmetic, ties,
// dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear.
// nullptr for other names.
std::unique_ptr<MergeMethod> MakeTaskArithmetic(std::string_view name);

// sce (§1.12).
std::unique_ptr<MergeMethod> MakeSce();

// ram and ramplus_tl (§1.13); nullptr for other names.
std::unique_ptr<MergeMethod> MakeRam(std::string_view name);

// slerp (§1.5), nearswap (§1.11), passthrough (§1.14).
std::unique_ptr<MergeMethod> MakeSlerp();
std::unique_ptr<MergeMethod> MakeNearswap();
std::unique_ptr<MergeMethod> MakePassthrough();

// nuslerp, multislerp, karcher, model_stock (§1.6–§1.9; gram.h).
std::unique_ptr<MergeMethod> MakeNuslerp();
std::unique_ptr<MergeMethod> MakeMultislerp();
std::unique_ptr<MergeMethod> MakeKarcher();
std::unique_ptr<MergeMethod> MakeModelStock();

// arcee_fusion (§1.10).
std::unique_ptr<MergeMethod> MakeArceeFusion();

// Helpers shared by the methods.

// The value of parameter `name` of a per-model or global parameter map;
// the planner has applied defaults, so a missing required one is a bug.
double Param(const ParamValues& params, std::string_view name);

// "model '<reference as written>'" for messages.
std::string ModelName(const MergePlan& plan, const PlannedInput& input);

// kInvalidArgument naming the tensor when no input of t is the base (for
// methods that need one), else OK.
formats::Status RequireBase(const PlannedTensor& t);

// The indices of the inputs that are not the base, in recipe order.
std::vector<size_t> NonBaseInputs(const TensorPass& pass);

// Emits input `index` unchanged (a lone input a method returns as it is).
formats::Status EmitInput(TensorPass& pass, size_t index);

}  // namespace alloy::merge::methods
