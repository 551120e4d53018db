#include "merge/recipe_params.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "formats/status.h"

namespace alloy::merge {

ParamSetting ParamSetting::Scalar(double v) {
  ParamSetting s;
  s.kind = Kind::kScalar;
  s.numeric.values = {v};
  return s;
}

ParamSetting ParamSetting::Gradient(std::vector<double> values) {
  ParamSetting s;
  s.kind = Kind::kGradient;
  s.numeric.is_gradient = true;
  s.numeric.values = std::move(values);
  return s;
}

double EvaluateGradient(const std::vector<double>& values, double t) {
  ALLOY_CHECK(!values.empty());
  // Same operations, in the same order and precision, as mergekit's
  // evaluate_setting (Python floats are IEEE doubles), so a gradient gives
  // bit-identical values for the same t.
  const auto last = static_cast<int64_t>(values.size()) - 1;
  const double scaled = t * static_cast<double>(last);
  auto i0 = static_cast<int64_t>(std::floor(scaled));
  i0 = std::clamp<int64_t>(i0, 0, last);  // guards t slightly outside [0, 1]
  const int64_t i1 = std::min(last, i0 + 1);
  const double frac = scaled - static_cast<double>(i0);
  return (1 - frac) * values[static_cast<size_t>(i0)] + frac * values[static_cast<size_t>(i1)];
}

namespace {

double EvaluateNumeric(const NumericSetting& n, double t) {
  // §2.3: a scalar evaluates to itself; a list of numbers is a gradient.
  if (!n.is_gradient) return n.values.front();
  return EvaluateGradient(n.values, t);
}

// §2.3/§2.4: null and "*" match everything; otherwise a case-sensitive
// substring test, and an empty tensor name matches no other filter.
bool FilterMatches(const std::optional<std::string>& filter, std::string_view tensor_name) {
  if (!filter.has_value() || *filter == "*") return true;
  return !tensor_name.empty() && tensor_name.find(*filter) != std::string_view::npos;
}

std::optional<double> EvaluateAt(const ParamMap* params, std::string_view name,
                                 std::string_view tensor_name, double t) {
  if (params == nullptr) return std::nullopt;
  auto it = params->find(name);
  if (it == params->end()) return std::nullopt;
  return EvaluateSetting(it->second, tensor_name, t);
}

}  // namespace

std::optional<double> EvaluateSetting(const ParamSetting& setting, std::string_view tensor_name,
                                      double t) {
  switch (setting.kind) {
    case ParamSetting::Kind::kScalar:
    case ParamSetting::Kind::kGradient:
      return EvaluateNumeric(setting.numeric, t);
    case ParamSetting::Kind::kConditional:
      // §2.3: the first matching entry wins, evaluated with the same t.
      for (const FilteredSetting& entry : setting.entries) {
        if (FilterMatches(entry.filter, tensor_name)) return EvaluateNumeric(entry.value, t);
      }
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<double> ResolveParameter(const ParamScope& scope, std::string_view name,
                                       std::string_view tensor_name, double t) {
  // §2.3 precedence 1: every source entry of the queried model, in order;
  // mergekit keeps looking at later entries of the same model when an earlier
  // one does not set the parameter or its filters do not match.
  for (const ParamMap* source : scope.sources) {
    if (auto v = EvaluateAt(source, name, tensor_name, t)) return v;
  }
  // Precedence 2–4: slice, module, top level.
  for (const ParamMap* level : {scope.slice, scope.module, scope.global}) {
    if (auto v = EvaluateAt(level, name, tensor_name, t)) return v;
  }
  return std::nullopt;
}

std::optional<double> ResolveGlobalParameter(const ParamScope& scope, std::string_view name,
                                             std::string_view output_tensor_name, double t) {
  // Method-global parameters are read with model=None, so mergekit never
  // consults the source level for them (§1.0 "Parameters", §2.3).
  ParamScope without_sources = scope;
  without_sources.sources.clear();
  return ResolveParameter(without_sources, name, output_tensor_name, t);
}

std::optional<double> ResolveModelParameter(const ParamScope& scope, std::string_view name,
                                            std::string_view input_tensor_name, double t) {
  return ResolveParameter(scope, name, input_tensor_name, t);
}

bool IsKnownParameterName(std::string_view name) {
  // Every global and per-model parameter of §1.A.
  static constexpr std::array<std::string_view, 20> kNames = {
      "weight", "density",  "normalize", "rescale",         "lambda",           "int8_mask",
      "gamma",  "epsilon",  "t",         "nuslerp_flatten", "nuslerp_row_wise", "normalize_weights",
      "eps",    "max_iter", "tol",       "filter_wise",     "select_topk",      "r",
      "alpha",  "scale",
  };
  return std::find(kNames.begin(), kNames.end(), name) != kNames.end();
}

}  // namespace alloy::merge
