// Recipe: a parsed, statically validated mergekit-yaml recipe
// (mergekit-semantics.md §2; mergekit-multi files §5.2).
//
// ParseRecipeFile/ParseRecipeText read YAML with yaml-cpp and return plain
// values; the planner never sees a YAML node. Every error names
// `file:line:column` (1-based) and says what to do; unknown keys are warnings,
// never errors (Decision (e)). Checks that need model files (layer counts,
// tensor names, shapes) are left to the planner. Functions are pure and
// thread-safe (the file variant reads the file once).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/dtype.h"
#include "formats/status.h"
#include "merge/recipe_model_ref.h"
#include "merge/recipe_params.h"

namespace alloy::merge {

struct Warning {
  int line = 0;  // 1-based
  int column = 0;
  std::string message;  // without location
};

// A `models:` entry. With `models:` syntax mergekit plans one slice whose
// sources are these models (§2.6); their `parameters` are source parameters.
struct ModelEntry {
  ModelRef model;
  ParamMap parameters;
  int line = 0;
};

// One `sources:` entry. `layer_begin`/`layer_end` are mergekit's half-open
// `layer_range: [begin, end]`.
struct SliceSource {
  ModelRef model;
  int64_t layer_begin = 0;
  int64_t layer_end = 0;
  ParamMap parameters;
  int line = 0;
};

struct Slice {
  std::vector<SliceSource> sources;
  ParamMap parameters;
  std::optional<ModelRef> base_model;  // overrides the recipe's for this slice (§2.6)
  int line = 0;
};

// A `modules:` entry (`modules: {default: {slices: ...}}`): exactly one of
// `models` / `slices` is non-empty.
struct Module {
  std::string name;
  std::vector<ModelEntry> models;
  std::vector<Slice> slices;
  ParamMap parameters;  // §2.3 precedence level 3
  int line = 0;
};

// tokenizer_source / tokenizer.source (§2.7).
struct TokenizerSpec {
  enum class Source : uint8_t { kNone, kBase, kModel, kUnion };
  Source source = Source::kNone;
  ModelRef model;  // kModel
  std::optional<int64_t> pad_to_multiple_of;
  bool has_tokens = false;  // a `tokens:` block was given (kept for a later issue)
  int line = 0;
};

struct Recipe {
  std::string name;          // `name:` (mergekit-multi); may be empty for the last document
  std::string merge_method;  // one of KnownMergeMethods()
  std::optional<ModelRef> base_model;
  // Exactly one of models / slices / modules is non-empty.
  std::vector<ModelEntry> models;
  std::vector<Slice> slices;
  std::vector<Module> modules;
  ParamMap parameters;  // top-level (§2.3 precedence level 4)
  std::optional<formats::DType> dtype;
  std::optional<formats::DType> out_dtype;
  TokenizerSpec tokenizer;
  std::optional<std::string> chat_template;  // stored verbatim (§2.8)
  std::string raw_text;                      // this document's text, for mergekit_config.yml
  int first_line = 1;                        // line of raw_text's first line in the file
  std::vector<size_t> depends_on;            // indices of documents referenced by name
};

struct RecipeFile {
  std::string path;               // as given (used in messages)
  std::vector<Recipe> documents;  // file order; non-last documents are named
  std::vector<Warning> warnings;  // all documents, in line order
};

// Reads and parses `path`. On success every document is parsed and
// statically valid, and `warnings` lists ignored keys and Decision (i)
// substitutions. Errors: kIoError/kNotFound when unreadable;
// kInvalidArgument for YAML syntax, schema and validation errors (duplicate
// keys, misplaced parameters, unknown method, missing base/`t`/`weight`, bad
// layer ranges, unnamed or duplicate document names, reference cycles);
// kUnsupported for features alloy does not have yet (tokenizer `union` and
// `tokens:`; mergekit-moe recipes, see merge/moe_recipe.h). Messages start
// with "<path>:<line>:<column>: " and say what to change.
formats::Result<RecipeFile> ParseRecipeFile(const std::string& path);

// Same, from text; `display_name` stands for the file in messages.
formats::Result<RecipeFile> ParseRecipeText(std::string_view text, std::string_view display_name);

// Documents in the order they must run: a document after every document it
// depends on, otherwise file order. Fails (kInvalidArgument) on a cycle.
formats::Result<std::vector<size_t>> MergeOrder(const RecipeFile& file);

// "<file>:<line>:<column>: warning: <message>".
std::string FormatWarning(std::string_view file, const Warning& warning);

// The 20 merge method names mergekit 0.1.4 registers (§1.0 "Registry").
const std::vector<std::string_view>& KnownMergeMethods();

}  // namespace alloy::merge
