#include "merge/moe_recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "formats/file_util.h"
#include "merge/recipe_yaml.h"

namespace alloy::merge {
namespace {

using formats::Result;
using formats::Status;
using recipe_internal::DocContext;
using recipe_internal::ErrorAt;
using recipe_internal::LineOf;
using recipe_internal::NodeKindName;
using recipe_internal::Quote;
using recipe_internal::WarnAt;

Status ParsePrompts(const DocContext& ctx, const YAML::Node& key, const YAML::Node& value,
                    std::vector<std::string>* out) {
  if (value.IsNull()) return Status::OK();
  if (!value.IsSequence()) {
    return ErrorAt(ctx, key,
                   Quote(key.Scalar()) + " must be a list of strings, got " +
                       std::string(NodeKindName(value)));
  }
  for (const YAML::Node& prompt : value) {
    if (!prompt.IsScalar()) {
      return ErrorAt(ctx, key, Quote(key.Scalar()) + " must hold strings only");
    }
    out->push_back(prompt.Scalar());
  }
  return Status::OK();
}

Result<MoeExpert> ParseExpert(const DocContext& ctx, const YAML::Node& node) {
  MoeExpert expert;
  expert.line = LineOf(ctx, node);
  if (!node.IsMap()) {
    return ErrorAt(
        ctx, node,
        "an expert must be a mapping with `source_model:`, got " + std::string(NodeKindName(node)));
  }
  bool has_model = false;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "source_model") {
      ALLOY_ASSIGN_OR_RETURN(expert.source_model,
                             recipe_internal::ParseModelRefNode(ctx, it->first, it->second));
      has_model = true;
    } else if (key == "positive_prompts") {
      ALLOY_RETURN_IF_ERROR(ParsePrompts(ctx, it->first, it->second, &expert.positive_prompts));
    } else if (key == "negative_prompts") {
      ALLOY_RETURN_IF_ERROR(ParsePrompts(ctx, it->first, it->second, &expert.negative_prompts));
    } else if (key == "noise_scale" || key == "residual_scale") {
      if (it->second.IsNull()) continue;
      ALLOY_ASSIGN_OR_RETURN(double v, recipe_internal::ParseNumber(ctx, it->second, Quote(key)));
      (key == "noise_scale" ? expert.noise_scale : expert.residual_scale) = v;
    } else {
      WarnAt(ctx, it->first, "unknown key " + Quote(key) + " in an expert is ignored");
    }
  }
  if (!has_model) return ErrorAt(ctx, node, "an expert needs `source_model:`");
  return expert;
}

Status ParseExperts(const DocContext& ctx, const YAML::Node& key, const YAML::Node& value,
                    std::vector<MoeExpert>* out) {
  if (value.IsNull()) return Status::OK();
  if (!value.IsSequence()) {
    return ErrorAt(ctx, key,
                   Quote(key.Scalar()) + " must be a list of `- source_model:` entries, got " +
                       std::string(NodeKindName(value)));
  }
  for (const YAML::Node& element : value) {
    ALLOY_ASSIGN_OR_RETURN(MoeExpert expert, ParseExpert(ctx, element));
    out->push_back(std::move(expert));
  }
  return Status::OK();
}

Result<MoeRecipe> ParseMoeDocument(const DocContext& ctx, const YAML::Node& doc) {
  MoeRecipe recipe;
  if (!doc.IsMap()) {
    return ErrorAt(ctx, doc, "a mergekit-moe recipe must be a mapping of keys");
  }
  ALLOY_RETURN_IF_ERROR(recipe_internal::CheckDuplicateKeys(ctx, doc));
  bool has_base = false;
  int experts_line = LineOf(ctx, doc);
  int experts_per_token_line = experts_line;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    const std::string k = key.Scalar();
    if (k == "base_model") {
      ALLOY_ASSIGN_OR_RETURN(recipe.base_model,
                             recipe_internal::ParseModelRefNode(ctx, key, value));
      has_base = true;
    } else if (k == "gate_mode") {
      static const std::vector<std::string_view> kModes = {
          "hidden",     "cheap_embed", "random",     "uniform_random",
          "hidden_avg", "hidden_last", "orthogonal"};  // orthogonal: alloy's
      const std::string mode = recipe_internal::ScalarOrEmpty(value);
      if (std::find(kModes.begin(), kModes.end(), mode) == kModes.end()) {
        return ErrorAt(ctx, key,
                       "unknown `gate_mode` '" + mode +
                           "'; use hidden, cheap_embed, random, uniform_random, hidden_avg, "
                           "hidden_last or orthogonal");
      }
      recipe.gate_mode = mode;
    } else if (k == "dtype") {
      if (value.IsNull()) continue;
      const std::string name = recipe_internal::ScalarOrEmpty(value);
      std::optional<formats::DType> dtype = formats::ParseUserDType(name);
      if (!dtype || !formats::IsConvertibleFloat(*dtype)) {
        return ErrorAt(ctx, key,
                       "unknown `dtype` '" + name + "'; use a float type (bfloat16, float16, float32, ...)");
      }
      recipe.dtype = dtype;
    } else if (k == "experts_per_token") {
      ALLOY_ASSIGN_OR_RETURN(double v,
                             recipe_internal::ParseNumber(ctx, value, "`experts_per_token`"));
      if (!recipe_internal::IsSmallInteger(v)) {
        return ErrorAt(ctx, value, "`experts_per_token` must be a non-negative integer");
      }
      recipe.experts_per_token = static_cast<int64_t>(v);
      experts_per_token_line = LineOf(ctx, key);
    } else if (k == "architecture") {
      if (value.IsScalar()) recipe.architecture = value.Scalar();
    } else if (k == "experts") {
      experts_line = LineOf(ctx, key);
      ALLOY_RETURN_IF_ERROR(ParseExperts(ctx, key, value, &recipe.experts));
    } else if (k == "shared_experts") {
      ALLOY_RETURN_IF_ERROR(ParseExperts(ctx, key, value, &recipe.shared_experts));
    } else {
      WarnAt(ctx, key, "unknown top-level key " + Quote(k) + " is ignored");
    }
  }
  if (!has_base) return ErrorAt(ctx, doc, "a mergekit-moe recipe needs `base_model:`");
  // §4.1, is_bad_config.
  if (recipe.experts_per_token < 1) {
    return ErrorAt(ctx, experts_per_token_line, 1, "`experts_per_token` must be at least 1");
  }
  if (static_cast<int64_t>(recipe.experts.size()) < recipe.experts_per_token) {
    return ErrorAt(ctx, experts_line, 1,
                   "the recipe has " + std::to_string(recipe.experts.size()) +
                       " experts but `experts_per_token` is " +
                       std::to_string(recipe.experts_per_token) + "; list more experts");
  }
  if (!IsRandomGateMode(recipe.gate_mode)) {
    for (const MoeExpert& expert : recipe.experts) {
      if (expert.positive_prompts.empty()) {
        return ErrorAt(ctx, expert.line, 1,
                       "expert " + Quote(expert.source_model.text) +
                           " has no `positive_prompts`; gate_mode " + Quote(recipe.gate_mode) +
                           " needs them (or use `gate_mode: random`)");
      }
    }
    const bool all_same_prompts =
        recipe.experts.size() > 1 &&
        std::all_of(recipe.experts.begin(), recipe.experts.end(), [&](const MoeExpert& e) {
          return e.positive_prompts == recipe.experts.front().positive_prompts &&
                 e.negative_prompts == recipe.experts.front().negative_prompts;
        });
    if (all_same_prompts) {
      return ErrorAt(ctx, experts_line, 1,
                     "every expert has the same prompts, so the gates cannot tell them apart; "
                     "give each expert its own `positive_prompts` (or use `gate_mode: random`)");
    }
  }
  return recipe;
}

Status CheckAllSame(const DocContext& ctx, const MoeRecipe& recipe,
                    const MoeParseOptions& options) {
  if (options.allow_all_same_experts || recipe.experts.size() < 2) return Status::OK();
  const std::string first = ModelKey(recipe.experts.front().source_model);
  const bool all_same =
      std::all_of(recipe.experts.begin(), recipe.experts.end(),
                  [&](const MoeExpert& e) { return ModelKey(e.source_model) == first; });
  if (!all_same) return Status::OK();
  return ErrorAt(ctx, recipe.experts.front().line, 1,
                 "every expert is the same model " +
                     Quote(recipe.experts.front().source_model.text) +
                     "; such a mixture is not useful without training (mergekit's "
                     "--i-understand-this-is-not-useful-without-training allows it)");
}

}  // namespace

bool IsRandomGateMode(std::string_view mode) {
  return mode == "random" || mode == "uniform_random" || mode == "orthogonal";
}

Result<MoeRecipe> ParseMoeRecipeText(std::string_view text, std::string_view display_name,
                                     const MoeParseOptions& options) {
  std::vector<Warning> warnings;
  DocContext ctx{std::string(display_name), 0, &warnings};
  ALLOY_ASSIGN_OR_RETURN(std::vector<YAML::Node> nodes,
                         LoadYamlDocuments(ctx, std::string(text), 16));
  if (nodes.size() != 1) {
    return ErrorAt(ctx, 1, 1,
                   nodes.empty() ? "the recipe is empty"
                                 : "a mergekit-moe recipe is one YAML document, found " +
                                       std::to_string(nodes.size()) +
                                       " (check the indentation of the top-level keys)");
  }
  ALLOY_ASSIGN_OR_RETURN(MoeRecipe recipe, ParseMoeDocument(ctx, nodes.front()));
  ALLOY_RETURN_IF_ERROR(CheckAllSame(ctx, recipe, options));
  recipe.raw_text = std::string(text);
  recipe.warnings = std::move(warnings);
  return recipe;
}

Result<MoeRecipe> ParseMoeRecipeFile(const std::string& path, const MoeParseOptions& options) {
  ALLOY_ASSIGN_OR_RETURN(std::string text,
                         formats::ReadSmallFile(path, recipe_internal::kMaxRecipeBytes));
  return ParseMoeRecipeText(text, path, options);
}

}  // namespace alloy::merge
