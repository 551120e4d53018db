// Parses one YAML document into a Recipe value (mergekit-semantics.md §2.1,
// §2.2, §2.6, §2.7): the keys of the top level, `models:` entries, slices,
// sources, modules and the tokenizer settings. Positions come from yaml-cpp
// marks; unknown keys become warnings (Decision (e)).
#include <yaml-cpp/yaml.h>

#include "merge/recipe.h"
#include "merge/recipe_yaml.h"

namespace alloy::merge::recipe_internal {
namespace {

using formats::Result;
using formats::Status;

Status MissingKey(const DocContext& ctx, const YAML::Node& node, std::string_view key,
                  std::string_view where) {
  return ErrorAt(ctx, node, std::string(where) + " needs " + Quote(std::string(key) + ":"));
}

// A key that mergekit would silently drop. A parameter name next to
// `parameters`/`model` is almost always an indentation slip, and losing it
// changes the merge, so it is an error rather than a warning.
Status CheckSiblingKey(const DocContext& ctx, const YAML::Node& key, bool has_parameters,
                       std::string_view where) {
  const std::string name = key.Scalar();
  if (IsKnownParameterName(name)) {
    if (has_parameters) {
      return ErrorAt(ctx, key,
                     Quote(name) + " is a sibling of `parameters` — indent it under `parameters:`");
    }
    return ErrorAt(ctx, key,
                   Quote(name) + " must be under `parameters:` in " + std::string(where) +
                       " — write `parameters:` and indent `" + name + ": ...` under it");
  }
  WarnAt(ctx, key, "unknown key " + Quote(name) + " in " + std::string(where) + " is ignored");
  return Status::OK();
}

Result<ModelEntry> ParseModelEntry(const DocContext& ctx, const YAML::Node& node) {
  ModelEntry entry;
  entry.line = LineOf(ctx, node);
  if (!node.IsMap()) {
    return ErrorAt(ctx, node,
                   "a `models:` entry must be a mapping like `- model: org/name`, got " +
                       std::string(NodeKindName(node)));
  }
  const bool has_parameters = static_cast<bool>(node["parameters"]);
  bool has_model = false;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "model") {
      ALLOY_ASSIGN_OR_RETURN(entry.model, ParseModelRefNode(ctx, it->first, it->second));
      has_model = true;
    } else if (key == "parameters") {
      ALLOY_ASSIGN_OR_RETURN(entry.parameters, ParseParamMap(ctx, it->first, it->second));
    } else {
      ALLOY_RETURN_IF_ERROR(CheckSiblingKey(ctx, it->first, has_parameters, "a `models:` entry"));
    }
  }
  if (!has_model) return MissingKey(ctx, node, "model", "a `models:` entry");
  return entry;
}

Result<std::vector<int64_t>> ParseLayerRange(const DocContext& ctx, const YAML::Node& key,
                                             const YAML::Node& value) {
  if (!value.IsSequence() || value.size() != 2) {
    return ErrorAt(ctx, key,
                   "`layer_range` must be two integers `[begin, end]` (end exclusive), got " +
                       (value.IsSequence() ? std::to_string(value.size()) + " values"
                                           : std::string(NodeKindName(value))));
  }
  std::vector<int64_t> out;
  for (const YAML::Node& element : value) {
    ALLOY_ASSIGN_OR_RETURN(double v, ParseNumber(ctx, element, "`layer_range`"));
    // Integer-valued floats are accepted, as pydantic's lax int does.
    if (!IsSmallInteger(v)) {
      return ErrorAt(
          ctx, element,
          "`layer_range` values must be non-negative integers, got '" + element.Scalar() + "'");
    }
    out.push_back(static_cast<int64_t>(v));
  }
  if (out[0] >= out[1]) {
    return ErrorAt(ctx, key,
                   "`layer_range: [" + std::to_string(out[0]) + ", " + std::to_string(out[1]) +
                       "]` is empty; it is half-open [begin, end), so end must be greater than "
                       "begin (one layer N is `[N, N+1]`)");
  }
  return out;
}

Result<SliceSource> ParseSliceSource(const DocContext& ctx, const YAML::Node& node) {
  SliceSource source;
  source.line = LineOf(ctx, node);
  if (!node.IsMap()) {
    return ErrorAt(ctx, node,
                   "a `sources:` entry must be a mapping with `model:` and `layer_range:`, got " +
                       std::string(NodeKindName(node)));
  }
  const bool has_parameters = static_cast<bool>(node["parameters"]);
  bool has_model = false;
  bool has_range = false;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "model") {
      ALLOY_ASSIGN_OR_RETURN(source.model, ParseModelRefNode(ctx, it->first, it->second));
      has_model = true;
    } else if (key == "layer_range") {
      ALLOY_ASSIGN_OR_RETURN(std::vector<int64_t> range,
                             ParseLayerRange(ctx, it->first, it->second));
      source.layer_begin = range[0];
      source.layer_end = range[1];
      has_range = true;
    } else if (key == "parameters") {
      ALLOY_ASSIGN_OR_RETURN(source.parameters, ParseParamMap(ctx, it->first, it->second));
    } else {
      ALLOY_RETURN_IF_ERROR(CheckSiblingKey(ctx, it->first, has_parameters, "a slice source"));
    }
  }
  if (!has_model) return MissingKey(ctx, node, "model", "a slice source");
  if (!has_range) return MissingKey(ctx, node, "layer_range", "a slice source");
  return source;
}

Result<Slice> ParseSlice(const DocContext& ctx, const YAML::Node& node) {
  Slice slice;
  slice.line = LineOf(ctx, node);
  if (!node.IsMap()) {
    return ErrorAt(ctx, node,
                   "a `slices:` entry must be a mapping with `sources:`, got " +
                       std::string(NodeKindName(node)));
  }
  const bool has_parameters = static_cast<bool>(node["parameters"]);
  bool has_sources = false;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "sources") {
      if (!it->second.IsSequence() || it->second.size() == 0) {
        return ErrorAt(ctx, it->first, "`sources` must be a non-empty list of `- model:` entries");
      }
      // Copy the node: `it->` yields a temporary proxy, so iterating
      // `it->second` directly would outlive it.
      const YAML::Node sources = it->second;
      for (const YAML::Node& element : sources) {
        ALLOY_ASSIGN_OR_RETURN(SliceSource source, ParseSliceSource(ctx, element));
        slice.sources.push_back(std::move(source));
      }
      has_sources = true;
    } else if (key == "parameters") {
      ALLOY_ASSIGN_OR_RETURN(slice.parameters, ParseParamMap(ctx, it->first, it->second));
    } else if (key == "base_model") {
      if (it->second.IsNull()) continue;
      ALLOY_ASSIGN_OR_RETURN(slice.base_model, ParseModelRefNode(ctx, it->first, it->second));
    } else if (key == "residual_weight") {
      // Parsed but unused by mergekit (§2.1).
      WarnAt(ctx, it->first, "`residual_weight` is accepted but unused (as in mergekit)");
    } else {
      ALLOY_RETURN_IF_ERROR(CheckSiblingKey(ctx, it->first, has_parameters, "a slice"));
    }
  }
  if (!has_sources) return MissingKey(ctx, node, "sources", "a slice");
  return slice;
}

template <typename T, typename Fn>
Status ParseList(const DocContext& ctx, const YAML::Node& key, const YAML::Node& value,
                 std::vector<T>* out, Fn parse_one) {
  if (value.IsNull()) {
    return ErrorAt(ctx, key, Quote(key.Scalar()) + " is empty; list at least one entry");
  }
  if (!value.IsSequence()) {
    return ErrorAt(ctx, key,
                   Quote(key.Scalar()) + " must be a list of `- ...` entries, got " +
                       std::string(NodeKindName(value)));
  }
  for (const YAML::Node& element : value) {
    ALLOY_ASSIGN_OR_RETURN(T item, parse_one(ctx, element));
    out->push_back(std::move(item));
  }
  return Status::OK();
}

Result<Module> ParseModule(const DocContext& ctx, const YAML::Node& key, const YAML::Node& value) {
  Module module;
  module.name = key.Scalar();
  module.line = LineOf(ctx, key);
  if (!value.IsMap()) {
    return ErrorAt(ctx, key,
                   "module " + Quote(module.name) +
                       " must be a mapping with `models:` or `slices:`, got " +
                       std::string(NodeKindName(value)));
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (k == "models") {
      ALLOY_RETURN_IF_ERROR(ParseList(ctx, it->first, it->second, &module.models, ParseModelEntry));
    } else if (k == "slices") {
      ALLOY_RETURN_IF_ERROR(ParseList(ctx, it->first, it->second, &module.slices, ParseSlice));
    } else if (k == "parameters") {
      ALLOY_ASSIGN_OR_RETURN(module.parameters, ParseParamMap(ctx, it->first, it->second));
    } else {
      ALLOY_RETURN_IF_ERROR(CheckSiblingKey(ctx, it->first, static_cast<bool>(value["parameters"]),
                                            "module " + Quote(module.name)));
    }
  }
  if (module.models.empty() == module.slices.empty()) {
    return ErrorAt(ctx, key,
                   "module " + Quote(module.name) + " needs exactly one of `models:` or `slices:`");
  }
  return module;
}

Result<formats::DType> ParseDTypeNode(const DocContext& ctx, const YAML::Node& key,
                                      const YAML::Node& value) {
  std::string name = ScalarOrEmpty(value);
  // mergekit also accepts the `torch.` prefix (§2.1).
  std::string_view bare = name;
  if (bare.substr(0, 6) == "torch.") bare.remove_prefix(6);
  std::optional<formats::DType> dtype = formats::ParseUserDType(bare);
  if (!dtype.has_value() || !formats::IsConvertibleFloat(*dtype)) {
    const std::string message =
        "unknown " + Quote(key.Scalar()) + " '" + name + "'; use bfloat16, float16 or float32";
    if (value.IsScalar()) return ErrorAt(ctx, value, message);
    return ErrorAt(ctx, key, message);
  }
  return *dtype;
}

// `tokenizer_source: X` or `tokenizer: {source, tokens, pad_to_multiple_of}`
// (§2.7).
Status ParseTokenizerSource(const DocContext& ctx, const YAML::Node& key, const YAML::Node& value,
                            TokenizerSpec* spec) {
  spec->line = LineOf(ctx, value.IsNull() ? key : value);
  if (!value.IsScalar()) {
    if (value.IsNull()) return Status::OK();
    ALLOY_ASSIGN_OR_RETURN(spec->model, ParseModelRefNode(ctx, key, value));
    spec->source = TokenizerSpec::Source::kModel;
    return Status::OK();
  }
  if (value.Scalar() == "union") {
    spec->source = TokenizerSpec::Source::kUnion;
  } else if (value.Scalar() == "base") {
    spec->source = TokenizerSpec::Source::kBase;
  } else {
    ALLOY_ASSIGN_OR_RETURN(spec->model, ParseModelRefNode(ctx, key, value));
    spec->source = TokenizerSpec::Source::kModel;
  }
  return Status::OK();
}

Status ParseTokenizerBlock(const DocContext& ctx, const YAML::Node& key, const YAML::Node& value,
                           TokenizerSpec* spec) {
  if (value.IsNull()) return Status::OK();
  if (!value.IsMap()) {
    return ErrorAt(ctx, key,
                   "`tokenizer` must be a mapping (`source:`, `tokens:`, `pad_to_multiple_of:`), "
                   "got " +
                       std::string(NodeKindName(value)));
  }
  // §2.7: `source` defaults to union when the block is present.
  spec->source = TokenizerSpec::Source::kUnion;
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (k == "source") {
      ALLOY_RETURN_IF_ERROR(ParseTokenizerSource(ctx, it->first, it->second, spec));
    } else if (k == "tokens") {
      spec->has_tokens = !it->second.IsNull();
    } else if (k == "pad_to_multiple_of") {
      if (it->second.IsNull()) continue;
      ALLOY_ASSIGN_OR_RETURN(double v, ParseNumber(ctx, it->second, "`pad_to_multiple_of`"));
      if (v < 1 || !IsSmallInteger(v)) {
        return ErrorAt(ctx, it->second, "`pad_to_multiple_of` must be a positive integer");
      }
      spec->pad_to_multiple_of = static_cast<int64_t>(v);
    } else {
      WarnAt(ctx, it->first, "unknown key " + Quote(k) + " in `tokenizer` is ignored");
    }
  }
  spec->line = LineOf(ctx, key);
  return Status::OK();
}

bool IsMoeRecipe(const YAML::Node& doc) {
  return !doc["merge_method"] && (doc["experts"] || doc["gate_mode"] || doc["shared_experts"]);
}

}  // namespace

Result<Recipe> ParseDocument(const DocContext& ctx, const YAML::Node& doc, DocFacts* facts) {
  Recipe recipe;
  facts->doc_line = LineOf(ctx, doc);
  if (!doc.IsMap()) {
    return ErrorAt(ctx, doc,
                   "a recipe must be a mapping of keys (`merge_method:`, `models:`, ...), got " +
                       std::string(NodeKindName(doc)));
  }
  ALLOY_RETURN_IF_ERROR(CheckDuplicateKeys(ctx, doc));
  if (IsMoeRecipe(doc)) {
    return Status::Unsupported(ctx.file + ":" + std::to_string(facts->doc_line) +
                               ":1: this is a mergekit-moe recipe (`experts:`); mergekit-moe "
                               "recipes run with `alloy moe RECIPE OUT`");
  }
  bool has_tokenizer_source = false;
  bool has_tokenizer = false;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    const std::string k = ScalarOrEmpty(key);
    if (k == "merge_method") {
      if (!value.IsScalar()) {
        return ErrorAt(ctx, key, "`merge_method` must be a method name such as `linear`");
      }
      recipe.merge_method = value.Scalar();
      facts->method_line = LineOf(ctx, value);
      facts->method_column = ColumnOf(value);
    } else if (k == "base_model") {
      if (value.IsNull()) continue;
      ALLOY_ASSIGN_OR_RETURN(recipe.base_model, ParseModelRefNode(ctx, key, value));
    } else if (k == "models") {
      ALLOY_RETURN_IF_ERROR(ParseList(ctx, key, value, &recipe.models, ParseModelEntry));
    } else if (k == "slices") {
      ALLOY_RETURN_IF_ERROR(ParseList(ctx, key, value, &recipe.slices, ParseSlice));
    } else if (k == "modules") {
      if (!value.IsMap() || value.size() == 0) {
        return ErrorAt(ctx, key,
                       "`modules` must be a mapping like `modules: {default: {slices: ...}}`");
      }
      for (auto m = value.begin(); m != value.end(); ++m) {
        ALLOY_ASSIGN_OR_RETURN(Module module, ParseModule(ctx, m->first, m->second));
        recipe.modules.push_back(std::move(module));
      }
    } else if (k == "parameters") {
      ALLOY_ASSIGN_OR_RETURN(recipe.parameters, ParseParamMap(ctx, key, value));
    } else if (k == "dtype" || k == "out_dtype") {
      if (value.IsNull()) continue;
      ALLOY_ASSIGN_OR_RETURN(formats::DType dtype, ParseDTypeNode(ctx, key, value));
      (k == "dtype" ? recipe.dtype : recipe.out_dtype) = dtype;
    } else if (k == "tokenizer_source") {
      has_tokenizer_source = true;
      ALLOY_RETURN_IF_ERROR(ParseTokenizerSource(ctx, key, value, &recipe.tokenizer));
    } else if (k == "tokenizer") {
      has_tokenizer = true;
      ALLOY_RETURN_IF_ERROR(ParseTokenizerBlock(ctx, key, value, &recipe.tokenizer));
    } else if (k == "chat_template") {
      if (value.IsNull()) continue;
      if (!value.IsScalar()) {
        return ErrorAt(ctx, key,
                       "`chat_template` must be a string (a name such as `chatml`, "
                       "`auto`, or a Jinja template)");
      }
      recipe.chat_template = value.Scalar();
    } else if (k == "name") {
      if (!value.IsScalar() || value.Scalar().empty()) {
        return ErrorAt(ctx, key, "`name` must be a non-empty string");
      }
      // A name, not a path: it becomes the directory <intermediate-dir>/<name>
      // (§5.2), so it must not climb out of it or point elsewhere.
      const std::string& name = value.Scalar();
      const bool separator = name.find_first_of(std::string("/\\\0", 3)) != std::string::npos;
      if (separator || name == "." || name == "..") {
        return ErrorAt(ctx, value,
                       "document name " + Quote(name) +
                           " is a path, not a name; it becomes the directory "
                           "<intermediate-dir>/<name>, so it must not contain '/' or '\\' "
                           "or be '.' or '..'");
      }
      recipe.name = name;
    } else if (IsKnownParameterName(k)) {
      // Decision (e): warn, never fail; an indentation slip is the usual cause.
      facts->stray_parameters.push_back({k, LineOf(ctx, key), ColumnOf(key)});
      WarnAt(ctx, key,
             "unknown top-level key " + Quote(k) +
                 " is ignored; it is a merge parameter and "
                 "probably belongs under `parameters:` — indent it there");
    } else {
      WarnAt(ctx, key, "unknown top-level key " + Quote(k) + " is ignored");
    }
  }
  if (has_tokenizer && has_tokenizer_source) {
    return ErrorAt(ctx, recipe.tokenizer.line, 1,
                   "give either `tokenizer_source:` or a `tokenizer:` block, not both");
  }
  return recipe;
}

}  // namespace alloy::merge::recipe_internal
