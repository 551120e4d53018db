// Static recipe checks: everything that can be decided without opening a
// model (mergekit-semantics.md §1.A, §2.1, §2.3, §2.6, §2.7, §2.8).
#include <algorithm>
#include <array>
#include <set>

#include "merge/recipe.h"
#include "merge/recipe_yaml.h"

namespace alloy::merge {
namespace {

using formats::Status;
using recipe_internal::DocContext;
using recipe_internal::DocFacts;
using recipe_internal::ErrorAt;
using recipe_internal::Quote;

// §1.A, per method: is a base required, is `weight` required per model (and
// for the base too), which global parameters are required, and which
// parameters it reads at all.
struct MethodRules {
  std::string_view name;
  bool needs_base = false;
  bool needs_weight = false;
  bool base_needs_weight = false;
  std::string_view required_global;  // empty when none
  std::string_view required_global_hint;
  std::string_view params;  // every parameter it reads, space-separated
};

constexpr std::string_view kTaskArithmeticParams =
    "normalize rescale lambda int8_mask weight density";
constexpr std::string_view kBreadcrumbsParams =
    "normalize rescale lambda int8_mask weight density gamma";
constexpr std::string_view kDellaParams =
    "normalize rescale lambda int8_mask weight density epsilon";

constexpr std::array<MethodRules, 20> kMethods = {{
    {"linear", false, true, true, "", "", "normalize weight"},
    {"slerp", true, false, false, "t", "0 gives the base model, 1 the other one", "t"},
    {"nuslerp", false, true, false, "", "", "nuslerp_flatten nuslerp_row_wise weight"},
    {"passthrough", false, false, false, "", "", "scale"},
    {"model_stock", true, false, false, "", "", "filter_wise"},
    {"arcee_fusion", true, false, false, "", "", ""},
    {"karcher", false, false, false, "", "", "max_iter tol"},
    {"task_arithmetic", true, true, false, "", "", kTaskArithmeticParams},
    {"ties", true, true, false, "", "", kTaskArithmeticParams},
    {"dare_ties", true, true, false, "", "", kTaskArithmeticParams},
    {"dare_linear", true, true, false, "", "", kTaskArithmeticParams},
    {"breadcrumbs", true, true, false, "", "", kBreadcrumbsParams},
    {"breadcrumbs_ties", true, true, false, "", "", kBreadcrumbsParams},
    {"della", true, true, false, "", "", kDellaParams},
    {"della_linear", true, true, false, "", "", kDellaParams},
    {"multislerp", false, true, false, "", "", "normalize_weights eps weight"},
    {"nearswap", true, false, false, "t", "the similarity threshold, e.g. 0.001", "t"},
    {"ram", true, false, false, "", "", "epsilon"},
    {"ramplus_tl", true, false, false, "", "", "r alpha epsilon"},
    {"sce", true, false, false, "", "", "select_topk int8_mask"},
}};

const MethodRules* FindMethod(std::string_view name) {
  for (const MethodRules& rules : kMethods) {
    if (rules.name == name) return &rules;
  }
  return nullptr;
}

std::string MethodList() {
  std::string out;
  for (const MethodRules& rules : kMethods)
    out += (out.empty() ? "" : ", ") + std::string(rules.name);
  return out;
}

const DocFacts::StrayKey* FindStray(const DocFacts& facts, std::string_view name) {
  for (const DocFacts::StrayKey& stray : facts.stray_parameters) {
    if (stray.name == name) return &stray;
  }
  return nullptr;
}

bool Has(const ParamMap& params, std::string_view name) { return params.count(name) != 0; }

// The layer count of every source of a slice must agree (§2.6).
Status CheckSlice(const DocContext& ctx, const Slice& slice, bool passthrough) {
  const SliceSource& first = slice.sources.front();
  const int64_t n_layers = first.layer_end - first.layer_begin;
  for (const SliceSource& source : slice.sources) {
    const int64_t n = source.layer_end - source.layer_begin;
    if (n != n_layers) {
      return ErrorAt(ctx, source.line, 1,
                     "all sources of a slice must have the same number of layers: " +
                         Quote(first.model.text) + " has " + std::to_string(n_layers) + ", " +
                         Quote(source.model.text) + " has " + std::to_string(n));
    }
  }
  if (passthrough && slice.sources.size() != 1) {
    return ErrorAt(ctx, slice.line, 1,
                   "passthrough takes exactly one source per slice, got " +
                       std::to_string(slice.sources.size()) +
                       "; split them into separate `- sources:` slices");
  }
  return Status::OK();
}

// A required method-global parameter (§2.3 precedence 2–4; the source level
// does not apply to global parameters).
Status CheckRequiredGlobal(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe,
                           const MethodRules& rules) {
  const std::string_view name = rules.required_global;
  if (name.empty() || Has(recipe.parameters, name)) return Status::OK();
  auto slices_have = [&](const std::vector<Slice>& slices, const ParamMap* module) {
    if (module != nullptr && Has(*module, name)) return true;
    return !slices.empty() && std::all_of(slices.begin(), slices.end(),
                                          [&](const Slice& s) { return Has(s.parameters, name); });
  };
  bool found = false;
  if (!recipe.slices.empty()) found = slices_have(recipe.slices, nullptr);
  if (!recipe.modules.empty()) {
    found = std::all_of(recipe.modules.begin(), recipe.modules.end(),
                        [&](const Module& m) { return slices_have(m.slices, &m.parameters); });
  }
  if (found) return Status::OK();
  std::string message = Quote(recipe.merge_method) + " needs parameter " + Quote(name) + " (" +
                        std::string(rules.required_global_hint) + ")";
  if (const DocFacts::StrayKey* stray = FindStray(facts, name)) {
    return ErrorAt(ctx, stray->line, stray->column,
                   message + "; this " + Quote(std::string(name) + ":") +
                       " is at the top level, where mergekit ignores it — indent it under "
                       "`parameters:`");
  }
  return ErrorAt(ctx, facts.method_line, facts.method_column,
                 message + "; add it under a top-level `parameters:`");
}

// `weight` must resolve for every model that needs one (§1.A, §2.3): at the
// source, the slice, the module or the top level.
Status CheckWeight(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe,
                   const MethodRules& rules, const std::optional<ModelRef>& base,
                   const ModelRef& model, int line, std::initializer_list<const ParamMap*> levels) {
  if (!rules.needs_weight) return Status::OK();
  for (const ParamMap* params : levels) {
    if (params != nullptr && Has(*params, "weight")) return Status::OK();
  }
  // mergekit reads per-model parameters with required = (required and not
  // is_base); only linear still fails without a base weight (§1.1).
  if (!rules.base_needs_weight && base && ModelKey(*base) == ModelKey(model)) {
    return Status::OK();
  }
  std::string message = "model " + Quote(model.text) + " has no `weight`; " +
                        Quote(recipe.merge_method) +
                        " needs one per model — add `parameters:` with `weight: ...` under it, "
                        "or a `weight:` under the top-level `parameters:`";
  if (const DocFacts::StrayKey* stray = FindStray(facts, "weight")) {
    message += " (the `weight:` at line " + std::to_string(stray->line) +
               " is at the top level, where mergekit ignores it)";
  }
  return ErrorAt(ctx, line, 1, message);
}

Status CheckModelsAndSlices(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe,
                            const MethodRules& rules, const std::vector<ModelEntry>& models,
                            const std::vector<Slice>& slices, const ParamMap* module_params) {
  const bool passthrough = rules.name == "passthrough";
  if (passthrough && !models.empty() && models.size() != 1) {
    return ErrorAt(ctx, models[1].line, 1,
                   "passthrough takes exactly one model; to stack layers of several models use "
                   "`slices:` with one source per slice");
  }
  for (const ModelEntry& entry : models) {
    ALLOY_RETURN_IF_ERROR(CheckWeight(ctx, facts, recipe, rules, recipe.base_model, entry.model,
                                      entry.line,
                                      {&entry.parameters, module_params, &recipe.parameters}));
  }
  for (const Slice& slice : slices) {
    ALLOY_RETURN_IF_ERROR(CheckSlice(ctx, slice, passthrough));
    for (const SliceSource& source : slice.sources) {
      ALLOY_RETURN_IF_ERROR(CheckWeight(
          ctx, facts, recipe, rules, slice.base_model ? slice.base_model : recipe.base_model,
          source.model, source.line,
          {&source.parameters, &slice.parameters, module_params, &recipe.parameters}));
    }
  }
  return Status::OK();
}

bool ReadsParameter(const MethodRules& rules, std::string_view name) {
  std::string_view rest = rules.params;
  while (!rest.empty()) {
    const size_t space = rest.find(' ');
    if (rest.substr(0, space) == name) return true;
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }
  return false;
}

// Decision (e) in spirit: mergekit silently ignores parameters a method does
// not read (e.g. `density` for linear, `weight` for karcher); warn instead.
void WarnUnusedParameters(const DocContext& ctx, const Recipe& recipe, const MethodRules& rules) {
  if (ctx.warnings == nullptr) return;
  auto check = [&](const ParamMap& params) {
    for (const auto& [name, setting] : params) {
      // Names no method reads were already reported while parsing.
      if (!IsKnownParameterName(name) || ReadsParameter(rules, name)) continue;
      ctx.warnings->push_back(Warning{
          setting.line, setting.column,
          "parameter " + Quote(name) + " is not used by " + Quote(rules.name) + " (it reads: " +
              (rules.params.empty() ? std::string("nothing") : std::string(rules.params)) +
              "); it is ignored"});
    }
  };
  auto check_slices = [&](const std::vector<Slice>& slices) {
    for (const Slice& slice : slices) {
      check(slice.parameters);
      for (const SliceSource& source : slice.sources) check(source.parameters);
    }
  };
  check(recipe.parameters);
  for (const ModelEntry& entry : recipe.models) check(entry.parameters);
  check_slices(recipe.slices);
  for (const Module& module : recipe.modules) {
    check(module.parameters);
    for (const ModelEntry& entry : module.models) check(entry.parameters);
    check_slices(module.slices);
  }
}

// Decision (i): a slerp base that is not one of the inputs is replaced by the
// first input, with a warning.
void WarnSlerpBase(const DocContext& ctx, const Recipe& recipe) {
  if (recipe.merge_method != "slerp" || ctx.warnings == nullptr) return;
  auto warn = [&](const ModelRef& base, const std::vector<std::string>& keys,
                  const std::string& first) {
    if (std::find(keys.begin(), keys.end(), ModelKey(base)) != keys.end()) return;
    ctx.warnings->push_back(
        Warning{base.line, base.column,
                "slerp base_model " + Quote(base.text) +
                    " is not one of the merged models; alloy uses the first one, " + Quote(first) +
                    ", as the base (t = 0 gives it), like the mergekit releases these recipes were "
                    "made with"});
  };
  if (!recipe.models.empty() && recipe.base_model) {
    std::vector<std::string> keys;
    for (const ModelEntry& entry : recipe.models) keys.push_back(ModelKey(entry.model));
    warn(*recipe.base_model, keys, recipe.models.front().model.text);
  }
  for (const Slice& slice : recipe.slices) {
    const std::optional<ModelRef>& base = slice.base_model ? slice.base_model : recipe.base_model;
    if (!base) continue;
    std::vector<std::string> keys;
    for (const SliceSource& source : slice.sources) keys.push_back(ModelKey(source.model));
    warn(*base, keys, slice.sources.front().model.text);
  }
}

Status CheckBase(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe,
                 const MethodRules& rules) {
  if (!rules.needs_base || recipe.base_model) return Status::OK();
  auto all_slices_have_base = [](const std::vector<Slice>& slices) {
    return !slices.empty() && std::all_of(slices.begin(), slices.end(),
                                          [](const Slice& s) { return s.base_model.has_value(); });
  };
  bool ok = all_slices_have_base(recipe.slices);
  if (!recipe.modules.empty()) {
    ok = std::all_of(recipe.modules.begin(), recipe.modules.end(),
                     [&](const Module& m) { return all_slices_have_base(m.slices); });
  }
  if (ok) return Status::OK();
  return ErrorAt(ctx, facts.method_line, facts.method_column,
                 Quote(recipe.merge_method) +
                     " needs a `base_model:` (the model the others are "
                     "merged relative to); add `base_model: <path or org/name>` at the top level");
}

Status CheckChatTemplate(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe) {
  if (!recipe.chat_template) return Status::OK();
  // §2.8: a built-in name, "auto", or a literal Jinja template (>= 20
  // characters and containing `{`); anything else fails in mergekit.
  static const std::set<std::string, std::less<>> kBuiltIn = {"alpaca",  "chatml", "llama3",
                                                              "mistral", "exaone", "auto"};
  const std::string& s = *recipe.chat_template;
  if (kBuiltIn.count(s) != 0 || (s.size() >= 20 && s.find('{') != std::string::npos)) {
    return Status::OK();
  }
  return ErrorAt(ctx, facts.doc_line, 1,
                 "invalid `chat_template` '" + s +
                     "'; use auto, alpaca, chatml, llama3, "
                     "mistral, exaone, or a Jinja template string");
}

}  // namespace

const std::vector<std::string_view>& KnownMergeMethods() {
  static const std::vector<std::string_view> kNames = [] {
    std::vector<std::string_view> names;
    for (const MethodRules& rules : kMethods) names.push_back(rules.name);
    return names;
  }();
  return kNames;
}

namespace recipe_internal {

Status ValidateRecipe(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe) {
  // §2.1: merge_method is required and must be registered (§1.0).
  if (recipe.merge_method.empty()) {
    return ErrorAt(ctx, facts.doc_line, 1,
                   "the recipe has no `merge_method:`; add one of: " + MethodList());
  }
  const MethodRules* rules = FindMethod(recipe.merge_method);
  if (rules == nullptr) {
    return ErrorAt(ctx, facts.method_line, facts.method_column,
                   "unknown merge_method " + Quote(recipe.merge_method) +
                       "; mergekit 0.1.4 knows: " + MethodList());
  }
  // §2.1: exactly one of models / slices / modules.
  const int n_forms = (recipe.models.empty() ? 0 : 1) + (recipe.slices.empty() ? 0 : 1) +
                      (recipe.modules.empty() ? 0 : 1);
  if (n_forms == 0) {
    return ErrorAt(ctx, facts.doc_line, 1,
                   "the recipe lists no models; add `models:` (a list of `- model: ...`) or "
                   "`slices:`");
  }
  if (n_forms > 1) {
    const int line =
        !recipe.slices.empty() ? recipe.slices.front().line : recipe.modules.front().line;
    return ErrorAt(ctx, line, 1,
                   "give exactly one of `models:`, `slices:` or `modules:` (mergekit refuses "
                   "a recipe with more than one)");
  }
  ALLOY_RETURN_IF_ERROR(CheckBase(ctx, facts, recipe, *rules));
  ALLOY_RETURN_IF_ERROR(CheckRequiredGlobal(ctx, facts, recipe, *rules));
  ALLOY_RETURN_IF_ERROR(
      CheckModelsAndSlices(ctx, facts, recipe, *rules, recipe.models, recipe.slices, nullptr));
  for (const Module& module : recipe.modules) {
    ALLOY_RETURN_IF_ERROR(CheckModelsAndSlices(ctx, facts, recipe, *rules, module.models,
                                               module.slices, &module.parameters));
  }
  ALLOY_RETURN_IF_ERROR(CheckChatTemplate(ctx, facts, recipe));
  WarnUnusedParameters(ctx, recipe, *rules);
  WarnSlerpBase(ctx, recipe);
  // Features alloy does not implement yet come last, so a recipe that is
  // also wrong reports the mistake the user can fix first.
  if (recipe.tokenizer.source == TokenizerSpec::Source::kUnion) {
    return Status::Unsupported(ctx.file + ":" + std::to_string(recipe.tokenizer.line) +
                               ":1: tokenizer source `union` is not supported "
                               "yet (a later alloy release adds it); "
                               "use `tokenizer_source: base` or the name of "
                               "one model to take its tokenizer");
  }
  if (recipe.tokenizer.has_tokens) {
    return Status::Unsupported(ctx.file + ":" + std::to_string(recipe.tokenizer.line) +
                               ":1: `tokenizer: tokens:` overrides are not supported yet");
  }
  return Status::OK();
}

}  // namespace recipe_internal
}  // namespace alloy::merge
