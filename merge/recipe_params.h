// Recipe parameter settings and their evaluation (mergekit-semantics.md
// §2.3–2.5).
//
// A setting is what a recipe writes for one parameter: a scalar, a gradient
// (a list of numbers interpolated across a slice's layers), or a conditional
// list of `{filter, value}` entries picked by substring match on a tensor
// name. Values are plain data (no yaml-cpp types). All functions are pure and
// thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace alloy::merge {

// A scalar (one value) or a gradient (two or more values, or a one-element
// list, which mergekit also treats as a gradient).
struct NumericSetting {
  bool is_gradient = false;
  std::vector<double> values;  // never empty
};

// One entry of a conditional list. `filter` is absent for the fallback entry
// (`- value: x`) and for `filter: null`.
struct FilteredSetting {
  std::optional<std::string> filter;
  NumericSetting value;
  int line = 0;  // 1-based recipe line of the entry
};

struct ParamSetting {
  enum class Kind : uint8_t { kScalar, kGradient, kConditional };
  Kind kind = Kind::kScalar;
  NumericSetting numeric;                // kScalar, kGradient
  std::vector<FilteredSetting> entries;  // kConditional, in recipe order
  int line = 0;                          // 1-based line of the parameter's key
  int column = 0;

  static ParamSetting Scalar(double v);
  static ParamSetting Gradient(std::vector<double> values);
};

// Parameter name → setting, as written under one `parameters:` mapping.
using ParamMap = std::map<std::string, ParamSetting, std::less<>>;

// §2.3/§2.5: mergekit's gradient interpolation. With m values,
// s = t·(m−1), i0 = floor(s), i1 = min(m−1, i0+1), f = s − i0, and the result
// is (1−f)·v[i0] + f·v[i1], in double precision.
// To match mergekit bit for bit the caller computes t = double(k) / double(L−1)
// for layer k of an L-layer output slice (t = 1 when L == 1, t = 0 for
// non-layer tensors; §2.5).
// REQUIRES: !values.empty(), 0 <= t <= 1.
double EvaluateGradient(const std::vector<double>& values, double t);

// §2.3: evaluates one setting for `tensor_name` at layer position t.
// A conditional list yields the value of the first entry whose filter is
// absent, "*", or a substring of `tensor_name` (case-sensitive; an empty
// tensor name matches only absent or "*" filters). Returns nullopt when no
// entry matches ("not set": fall through to the next precedence level).
std::optional<double> EvaluateSetting(const ParamSetting& setting, std::string_view tensor_name,
                                      double t);

// Where a parameter may be set for one (output tensor, model), from the most
// to the least specific (§2.3 precedence). Null pointers are skipped.
struct ParamScope {
  // Level 1: the `parameters` of every slice source (or `models:` entry) in
  // the output slice whose model is the queried model, in recipe order. Leave
  // empty for method-global parameters.
  std::vector<const ParamMap*> sources;
  const ParamMap* slice = nullptr;   // level 2: the output slice's `parameters`
  const ParamMap* module = nullptr;  // level 3: the module's `parameters`
  const ParamMap* global = nullptr;  // level 4: top-level `parameters`
};

// §2.3: resolves parameter `name` through the scope's levels; the first level
// whose setting evaluates to a value wins. Returns nullopt when no level has a
// value (the caller then applies the method default, or reports "Missing
// required parameter <name> for <model>.<tensor>").
// Which tensor name the filters see (§2.3, last paragraph; §9 item 2):
//   * method-global parameters (read once per output tensor, no model) are
//     evaluated against the OUTPUT tensor name, with `scope.sources` empty;
//   * per-model ("tensor") parameters are evaluated, at every level, against
//     that model's INPUT tensor name (they differ when slices renumber layers).
// The two wrappers below make that choice explicit.
std::optional<double> ResolveParameter(const ParamScope& scope, std::string_view name,
                                       std::string_view tensor_name, double t);
std::optional<double> ResolveGlobalParameter(const ParamScope& scope, std::string_view name,
                                             std::string_view output_tensor_name, double t);
std::optional<double> ResolveModelParameter(const ParamScope& scope, std::string_view name,
                                            std::string_view input_tensor_name, double t);

// True when `name` is a parameter some merge method reads (§1.A), e.g.
// "weight", "density", "t". Used to recognise misplaced parameters.
bool IsKnownParameterName(std::string_view name);

}  // namespace alloy::merge
