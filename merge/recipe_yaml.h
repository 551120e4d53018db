// Internal to merge/recipe*.cc: yaml-cpp node helpers shared by the recipe
// parser. Not for the planner (it includes yaml-cpp); see merge/recipe.h.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>

#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"
#include "merge/recipe.h"
#include "merge/recipe_params.h"

namespace alloy::merge::recipe_internal {

// Where the current document sits in the file, and where warnings go.
struct DocContext {
  std::string file;     // display name
  int line_offset = 0;  // file line of the parsed text's first line, minus 1
  std::vector<Warning>* warnings = nullptr;
};

// Caps on what a recipe's YAML may hold (hostile input, docs/RELIABILITY.md).
// kMaxYamlTextNodes counts the nodes the text writes (yaml-cpp needs seconds
// and hundreds of MB to build a million); kMaxYamlNodes counts every visit of
// a walk with aliases expanded, so a "billion laughs" recipe (anchors nested
// 10 deep, each aliased 10 times) stops at the cap instead of expanding to
// 10^10 nodes; depth counts mappings and lists. Real recipes hold a few
// thousand nodes, nest fewer than 10 levels and are a few kilobytes.
inline constexpr size_t kMaxRecipeBytes = size_t{1} << 20;
inline constexpr size_t kMaxYamlTextNodes = 100'000;
inline constexpr size_t kMaxYamlNodes = 1'000'000;
inline constexpr size_t kMaxYamlDepth = 64;

// The YAML documents of `text`, whose first line is file line
// ctx.line_offset + 1. A syntax error is kInvalidArgument at yaml-cpp's
// position. yaml-cpp 0.7's LoadAll never returns on some malformed input
// (",\n": the parser starts empty documents forever without consuming the
// comma, allocating each time; jbeder/yaml-cpp#1040, found by
// tests/fuzz/recipe_fuzz), so the documents are first counted with a parser
// that builds nothing, and more than `max_documents` is refused as malformed.
// Text longer than kMaxRecipeBytes is refused unread; the first pass also
// refuses text nesting deeper than kMaxYamlDepth or writing more than
// kMaxYamlTextNodes nodes; after loading, a walk with aliases
// expanded refuses more than kMaxYamlNodes visits or kMaxYamlDepth levels
// (kInvalidArgument, at the node where the cap was reached).
formats::Result<std::vector<YAML::Node>> LoadYamlDocuments(const DocContext& ctx,
                                                           const std::string& text,
                                                           size_t max_documents);

// 1-based file positions of a node (yaml-cpp marks are 0-based).
int LineOf(const DocContext& ctx, const YAML::Node& node);
int ColumnOf(const YAML::Node& node);

// kInvalidArgument "<file>:<line>:<column>: <message>".
formats::Status ErrorAt(const DocContext& ctx, int line, int column, std::string_view message);
formats::Status ErrorAt(const DocContext& ctx, const YAML::Node& node, std::string_view message);
void WarnAt(const DocContext& ctx, const YAML::Node& node, std::string message);

// "`s`", for names and keys in messages.
std::string Quote(std::string_view s);

// Integer-valued, non-negative and exactly representable (≤ 2^53): the
// integers a recipe may write as `16` or `16.0`.
bool IsSmallInteger(double v);

// The node's text when it is a scalar, else "".
std::string ScalarOrEmpty(const YAML::Node& node);

// "a mapping", "a list", "a scalar", "empty (null)".
std::string_view NodeKindName(const YAML::Node& node);

// Refuses a mapping anywhere under `node` that has the same key twice, naming
// both lines (§2.1 parser notes: yaml-cpp keeps duplicates silently).
formats::Status CheckDuplicateKeys(const DocContext& ctx, const YAML::Node& node);

// A number as mergekit reads one (§2.3): plain `.5`, `1`, `1e-3`, `0x10`,
// booleans true/false (and YAML 1.1 yes/no/on/off) as 1/0, and numeric quoted
// strings. `what` names the value in messages. Refuses null, other strings
// and non-finite values.
formats::Result<double> ParseNumber(const DocContext& ctx, const YAML::Node& node,
                                    std::string_view what);

// One parameter setting (§2.3): scalar, gradient, or conditional list.
// `key` is the parameter's key node (for its name and position).
formats::Result<ParamSetting> ParseSetting(const DocContext& ctx, const YAML::Node& key,
                                           const YAML::Node& value);

// A `parameters:` mapping; null (only comments under it) is empty.
formats::Result<ParamMap> ParseParamMap(const DocContext& ctx, const YAML::Node& key,
                                        const YAML::Node& value);

// A model reference in string or dict form (§2.2).
formats::Result<ModelRef> ParseModelRefNode(const DocContext& ctx, const YAML::Node& key,
                                            const YAML::Node& value);

// Positions the validator needs that the Recipe value does not keep.
struct DocFacts {
  int doc_line = 1;  // first line of the document's mapping
  int method_line = 0;
  int method_column = 0;
  // Top-level keys that are parameter names (e.g. a `t:` that slipped out of
  // `parameters:`), for "did you mean" hints.
  struct StrayKey {
    std::string name;
    int line = 0;
    int column = 0;
  };
  std::vector<StrayKey> stray_parameters;
};

// Parses one document (merge/recipe_document.cc). Refuses mergekit-moe
// recipes with kUnsupported.
formats::Result<Recipe> ParseDocument(const DocContext& ctx, const YAML::Node& doc,
                                      DocFacts* facts);

// Static checks of one parsed document (merge/recipe_validate.cc): method
// name, models/slices/modules, base model, layer ranges, required
// parameters, unsupported features. Adds warnings (Decision (i)).
formats::Status ValidateRecipe(const DocContext& ctx, const DocFacts& facts, const Recipe& recipe);

}  // namespace alloy::merge::recipe_internal
