// MoeRecipe: a parsed mergekit-moe recipe (mergekit-semantics.md §4.1).
//
// mergekit-moe builds a mixture-of-experts model from a base and several
// dense "expert" models; its YAML schema differs from mergekit-yaml's, so
// ParseRecipeFile refuses these files and `alloy moe` (merge/moe.h)
// will read them with ParseMoeRecipeFile. Plain values; pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/dtype.h"
#include "formats/status.h"
#include "merge/recipe.h"
#include "merge/recipe_model_ref.h"

namespace alloy::merge {

struct MoeExpert {
  ModelRef source_model;
  std::vector<std::string> positive_prompts;
  std::vector<std::string> negative_prompts;
  std::optional<double> noise_scale;
  std::optional<double> residual_scale;
  int line = 0;
};

struct MoeRecipe {
  ModelRef base_model;
  // hidden (default), cheap_embed, random, uniform_random, hidden_avg, hidden_last;
  // orthogonal (alloy's: orthonormal random rows).
  std::string gate_mode = "hidden";
  std::optional<formats::DType> dtype;
  int64_t experts_per_token = 2;
  std::string architecture;  // empty: chosen from the models (§4.2)
  std::vector<MoeExpert> experts;
  std::vector<MoeExpert> shared_experts;
  std::string raw_text;
  std::vector<Warning> warnings;  // unknown keys, with their lines
};

// True for the gate modes that draw routers at random and read no prompts:
// random, uniform_random and orthogonal. (mergekit exempts only `random`
// from needing prompts; alloy exempts all three, which accepts more recipes
// and refuses none that mergekit accepts.)
bool IsRandomGateMode(std::string_view mode);

struct MoeParseOptions {
  // mergekit's --i-understand-this-is-not-useful-without-training.
  bool allow_all_same_experts = false;
};

// Parses and validates (mergekit's is_bad_config, §4.1): experts_per_token
// >= 1 and <= the number of experts; unless gate_mode is random, every expert
// has positive prompts and not all experts have identical prompts; not every
// expert is the same model unless allowed. Errors (kInvalidArgument) start
// with "<file>:<line>:<column>: ".
formats::Result<MoeRecipe> ParseMoeRecipeText(std::string_view text, std::string_view display_name,
                                              const MoeParseOptions& options = {});
formats::Result<MoeRecipe> ParseMoeRecipeFile(const std::string& path,
                                              const MoeParseOptions& options = {});

}  // namespace alloy::merge
