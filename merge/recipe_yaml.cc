#include "merge/recipe_yaml.h"

#include <yaml-cpp/eventhandler.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

namespace alloy::merge::recipe_internal {

namespace {

// The first pass's finding: where the text nests too deep or holds too many
// nodes (each alias counted once here; expansion is ExpansionWalk's).
struct TextLimitExceeded {
  YAML::Mark mark;
  bool depth = false;  // else the node count
};

// Receives a document's events and keeps only counts, so the first pass
// costs no memory; throws TextLimitExceeded past a cap, which stops yaml-cpp
// before it builds anything.
class CountingEvents final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Open(mark);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Open(mark);
  }
  void OnMapEnd() override { --depth_; }

 private:
  void Node(const YAML::Mark& mark) {
    if (++nodes_ > kMaxYamlTextNodes) throw TextLimitExceeded{mark, false};
  }
  void Open(const YAML::Mark& mark) {
    Node(mark);
    if (++depth_ > kMaxYamlDepth) throw TextLimitExceeded{mark, true};
  }

  size_t nodes_ = 0;
  size_t depth_ = 0;
};

std::string DepthMessage() {
  return "YAML nesting deeper than " + std::to_string(kMaxYamlDepth) +
         " levels; recipes nest a few levels, so this text is refused";
}

std::string TextNodesMessage() {
  return "the recipe holds more than " + std::to_string(kMaxYamlTextNodes) +
         " YAML nodes; recipes hold a few thousand, so this text is refused";
}

std::string NodesMessage() {
  return "the recipe expands to more than " + std::to_string(kMaxYamlNodes) +
         " YAML nodes (anchors and aliases repeat the nodes they name: a \"billion laughs\" "
         "document?); it is refused before it exhausts memory";
}

// Walks the documents as the recipe readers will, aliases expanded (in
// yaml-cpp's graph an alias is the anchored node itself, so a walk visits it
// once per reference, and an anchor that contains its own alias is a cycle),
// counting visits and depth without recursion. Refuses past kMaxYamlNodes
// visits or kMaxYamlDepth levels, so the readers' recursive walks that follow
// stay bounded in time, memory and stack.
formats::Status ExpansionWalk(const DocContext& ctx, const std::vector<YAML::Node>& docs) {
  struct Item {
    YAML::Node node;
    size_t depth;
  };
  std::vector<Item> stack;
  for (const YAML::Node& doc : docs) stack.push_back({doc, 1});
  size_t visits = 0;
  while (!stack.empty()) {
    Item item = std::move(stack.back());
    stack.pop_back();
    if (++visits > kMaxYamlNodes) return ErrorAt(ctx, item.node, NodesMessage());
    if (item.depth > kMaxYamlDepth) return ErrorAt(ctx, item.node, DepthMessage());
    if (item.node.IsSequence()) {
      for (const YAML::Node& element : item.node) stack.push_back({element, item.depth + 1});
    } else if (item.node.IsMap()) {
      for (auto it = item.node.begin(); it != item.node.end(); ++it) {
        stack.push_back({it->first, item.depth + 1});
        stack.push_back({it->second, item.depth + 1});
      }
    }
  }
  return formats::Status::OK();
}

}  // namespace

formats::Result<std::vector<YAML::Node>> LoadYamlDocuments(const DocContext& ctx,
                                                           const std::string& text,
                                                           size_t max_documents) {
  if (text.size() > kMaxRecipeBytes) {
    return ErrorAt(ctx, ctx.line_offset + 1, 1,
                   "the recipe is " + std::to_string(text.size()) +
                       " bytes, more than the limit of " + std::to_string(kMaxRecipeBytes) +
                       "; recipes are a few kilobytes, so this text is refused");
  }
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    CountingEvents counter;
    size_t documents = 0;
    while (parser.HandleNextDocument(counter)) {
      if (++documents > max_documents) {
        return ErrorAt(ctx, ctx.line_offset + 1, 1,
                       "YAML syntax error: the YAML reader does not get past this text (a "
                       "stray `,` or other flow indicator at the start of a line?)");
      }
    }
    std::vector<YAML::Node> docs = YAML::LoadAll(text);
    ALLOY_RETURN_IF_ERROR(ExpansionWalk(ctx, docs));
    return docs;
  } catch (const TextLimitExceeded& e) {
    return ErrorAt(ctx, ctx.line_offset + e.mark.line + 1, e.mark.column + 1,
                   e.depth ? DepthMessage() : TextNodesMessage());
  } catch (const YAML::Exception& e) {
    // yaml-cpp marks are 0-based within `text`; a null mark is -1.
    const int line = ctx.line_offset + (e.mark.is_null() ? 1 : e.mark.line + 1);
    return ErrorAt(ctx, line, e.mark.is_null() ? 1 : e.mark.column + 1,
                   "YAML syntax error: " + e.msg + " (check the indentation and quoting here)");
  }
}

namespace {

using formats::Result;
using formats::Status;

// yaml-cpp tags plain (unquoted) scalars "?" and quoted ones "!".
bool IsPlain(const YAML::Node& node) { return node.Tag() == "?"; }

bool IsOneOf(std::string_view s, std::initializer_list<std::string_view> words) {
  for (std::string_view w : words) {
    if (s == w) return true;
  }
  return false;
}

// strtod over the whole string (no trailing garbage); `_` digit separators
// are dropped, as PyYAML and Python's float() accept them.
bool ParseDecimal(std::string s, double* out) {
  std::string cleaned;
  for (char c : s) {
    if (c != '_') cleaned += c;
  }
  while (!cleaned.empty() && (cleaned.back() == ' ' || cleaned.back() == '\t')) cleaned.pop_back();
  size_t start = 0;
  while (start < cleaned.size() && (cleaned[start] == ' ' || cleaned[start] == '\t')) ++start;
  cleaned = cleaned.substr(start);
  if (cleaned.empty()) return false;
  // YAML 1.1 base prefixes (PyYAML): 0x.., 0o.. / leading-zero octal, 0b...
  std::string_view body = cleaned;
  bool negative = false;
  if (body.front() == '+' || body.front() == '-') {
    negative = body.front() == '-';
    body.remove_prefix(1);
  }
  int base = 0;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X')) base = 16;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'b' || body[1] == 'B')) base = 2;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'o' || body[1] == 'O')) base = 8;
  if (base != 0) {
    std::string digits(body.substr(2));
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(digits.c_str(), &end, base);
    if (digits.empty() || *end != '\0' || errno != 0) return false;
    *out = negative ? -static_cast<double>(v) : static_cast<double>(v);
    return true;
  }
  char* end = nullptr;
  const double v = std::strtod(cleaned.c_str(), &end);
  if (*end != '\0') return false;
  // strtod also reads "inf"/"nan"/hex floats; non-finite values are refused
  // by the caller.
  *out = v;
  return true;
}

Result<NumericSetting> ParseNumericSetting(const DocContext& ctx, const YAML::Node& node,
                                           std::string_view what) {
  NumericSetting out;
  if (node.IsSequence()) {
    // §2.3: a list of numbers is a gradient.
    if (node.size() == 0) {
      return ErrorAt(ctx, node,
                     std::string(what) +
                         " is an empty list; give a number or a gradient with at least one value");
    }
    out.is_gradient = true;
    for (const YAML::Node& element : node) {
      if (!element.IsScalar()) {
        return ErrorAt(ctx, element.IsNull() ? node : element,
                       std::string(what) + ": a gradient list holds numbers only, got " +
                           std::string(NodeKindName(element)));
      }
      ALLOY_ASSIGN_OR_RETURN(double v, ParseNumber(ctx, element, what));
      out.values.push_back(v);
    }
    return out;
  }
  ALLOY_ASSIGN_OR_RETURN(double v, ParseNumber(ctx, node, what));
  out.values = {v};
  return out;
}

Result<FilteredSetting> ParseFilteredEntry(const DocContext& ctx, const YAML::Node& entry,
                                           std::string_view name) {
  FilteredSetting out;
  out.line = LineOf(ctx, entry);
  bool has_value = false;
  YAML::Node value_key;
  YAML::Node value;
  for (auto it = entry.begin(); it != entry.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "filter") {
      if (it->second.IsNull()) continue;  // `filter: null` matches everything
      if (!it->second.IsScalar()) {
        return ErrorAt(ctx, it->first,
                       Quote(name) + ": `filter` must be a tensor-name substring, got " +
                           std::string(NodeKindName(it->second)));
      }
      out.filter = it->second.Scalar();
    } else if (key == "value") {
      has_value = true;
      value_key.reset(it->first);
      value.reset(it->second);
    } else {
      WarnAt(ctx, it->first,
             "unknown key " + Quote(key) + " in a conditional entry of " + Quote(name) +
                 " is ignored (entries have `filter:` and `value:`)");
    }
  }
  if (!has_value) {
    return ErrorAt(ctx, entry,
                   Quote(name) +
                       ": a conditional entry needs `value:` (e.g. `- filter: "
                       "self_attn` then `  value: 0.5`)");
  }
  if (value.IsNull()) {
    return ErrorAt(ctx, value_key, Quote(name) + ": `value:` is empty; give a number or a list");
  }
  if (value.IsMap()) {
    return ErrorAt(ctx, value,
                   Quote(name) +
                       ": `value:` must be a number or a list of numbers; "
                       "conditional lists do not nest");
  }
  ALLOY_ASSIGN_OR_RETURN(out.value, ParseNumericSetting(ctx, value, Quote(name)));
  return out;
}

void CollectDuplicate(const DocContext& ctx, const YAML::Node& node, Status* first_error) {
  if (!first_error->ok()) return;
  if (node.IsMap()) {
    std::map<std::string, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = ScalarOrEmpty(it->first);
      const int line = LineOf(ctx, it->first);
      auto [pos, inserted] = seen.emplace(key, line);
      if (!inserted && it->first.IsScalar()) {
        *first_error = ErrorAt(ctx, it->first,
                               "duplicate key " + Quote(key) + " (first at line " +
                                   std::to_string(pos->second) +
                                   "); mergekit silently keeps the last one. Remove one "
                                   "of them; if these are "
                                   "two recipes pasted together, separate them with a "
                                   "`---` line and give the first a `name:`");
        return;
      }
      CollectDuplicate(ctx, it->second, first_error);
      if (!first_error->ok()) return;
    }
  } else if (node.IsSequence()) {
    for (const YAML::Node& element : node) {
      CollectDuplicate(ctx, element, first_error);
      if (!first_error->ok()) return;
    }
  }
}

}  // namespace

int LineOf(const DocContext& ctx, const YAML::Node& node) {
  return node.Mark().line + 1 + ctx.line_offset;
}

int ColumnOf(const YAML::Node& node) { return node.Mark().column + 1; }

Status ErrorAt(const DocContext& ctx, int line, int column, std::string_view message) {
  return Status::InvalidArgument(ctx.file + ":" + std::to_string(line) + ":" +
                                 std::to_string(column) + ": " + std::string(message));
}

Status ErrorAt(const DocContext& ctx, const YAML::Node& node, std::string_view message) {
  return ErrorAt(ctx, LineOf(ctx, node), ColumnOf(node), message);
}

void WarnAt(const DocContext& ctx, const YAML::Node& node, std::string message) {
  if (ctx.warnings == nullptr) return;
  ctx.warnings->push_back(Warning{LineOf(ctx, node), ColumnOf(node), std::move(message)});
}

std::string Quote(std::string_view s) { return "`" + std::string(s) + "`"; }

bool IsSmallInteger(double v) { return v >= 0 && v <= 9007199254740992.0 && v == std::floor(v); }

std::string ScalarOrEmpty(const YAML::Node& node) {
  if (!node.IsScalar()) return std::string();
  return node.Scalar();
}

std::string_view NodeKindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "an unknown node";
}

Status CheckDuplicateKeys(const DocContext& ctx, const YAML::Node& node) {
  Status status;
  CollectDuplicate(ctx, node, &status);
  return status;
}

Result<double> ParseNumber(const DocContext& ctx, const YAML::Node& node, std::string_view what) {
  if (node.IsNull()) {
    return ErrorAt(ctx, node, std::string(what) + " has no value; give a number");
  }
  if (!node.IsScalar()) {
    return ErrorAt(ctx, node,
                   std::string(what) + " must be a number, got " + std::string(NodeKindName(node)));
  }
  const std::string& s = node.Scalar();
  if (IsPlain(node)) {
    // PyYAML (YAML 1.1) resolves these plain words to booleans and nulls;
    // pydantic then turns booleans into 1.0/0.0 and refuses null (§2.3).
    if (IsOneOf(s, {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})) return 1.0;
    if (IsOneOf(s, {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})) return 0.0;
    if (IsOneOf(s, {"~", "null", "Null", "NULL"})) {
      return ErrorAt(ctx, node, std::string(what) + " is null; give a number");
    }
    if (IsOneOf(s, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
                    ".nan", ".NaN", ".NAN"})) {
      return ErrorAt(ctx, node, std::string(what) + " must be a finite number, got '" + s + "'");
    }
  }
  double v = 0;
  if (!ParseDecimal(s, &v)) {
    return ErrorAt(ctx, node,
                   std::string(what) + " must be a number, got '" + s +
                       "' (parameters take numbers, booleans or lists of numbers)");
  }
  if (!std::isfinite(v)) {
    return ErrorAt(ctx, node, std::string(what) + " must be a finite number, got '" + s + "'");
  }
  return v;
}

Result<ParamSetting> ParseSetting(const DocContext& ctx, const YAML::Node& key,
                                  const YAML::Node& value) {
  const std::string name = key.Scalar();
  ParamSetting out;
  out.line = LineOf(ctx, key);
  out.column = ColumnOf(key);
  if (value.IsNull()) {
    return ErrorAt(ctx, key,
                   "parameter " + Quote(name) +
                       " has no value; give a number, a gradient list "
                       "or a list of `- filter:`/`value:` entries");
  }
  if (value.IsMap()) {
    if (value["value"]) {
      return ErrorAt(ctx, value,
                     "parameter " + Quote(name) +
                         " is a single `filter`/`value` mapping; "
                         "mergekit only evaluates them as list entries: write `- filter: ...` "
                         "and `  value: ...` under " +
                         Quote(name + ":"));
    }
    return ErrorAt(ctx, value,
                   "parameter " + Quote(name) +
                       " must be a number, a list of numbers or a list "
                       "of `- filter:`/`value:` entries, got a mapping");
  }
  if (value.IsScalar()) {
    ALLOY_ASSIGN_OR_RETURN(out.numeric,
                           ParseNumericSetting(ctx, value, "parameter " + Quote(name)));
    out.kind = ParamSetting::Kind::kScalar;
    return out;
  }
  // A sequence: all scalars → gradient; all mappings → conditional list.
  size_t n_maps = 0;
  for (const YAML::Node& element : value) n_maps += element.IsMap() ? 1 : 0;
  if (n_maps == 0) {
    ALLOY_ASSIGN_OR_RETURN(out.numeric,
                           ParseNumericSetting(ctx, value, "parameter " + Quote(name)));
    out.kind = ParamSetting::Kind::kGradient;
    return out;
  }
  if (n_maps != value.size()) {
    return ErrorAt(ctx, value,
                   "parameter " + Quote(name) +
                       " mixes numbers and `filter`/`value` entries; "
                       "use either a gradient list or a list of `- filter:`/`value:` entries");
  }
  out.kind = ParamSetting::Kind::kConditional;
  for (const YAML::Node& element : value) {
    ALLOY_ASSIGN_OR_RETURN(FilteredSetting entry, ParseFilteredEntry(ctx, element, name));
    out.entries.push_back(std::move(entry));
  }
  return out;
}

Result<ParamMap> ParseParamMap(const DocContext& ctx, const YAML::Node& key,
                               const YAML::Node& value) {
  ParamMap out;
  if (value.IsNull()) return out;  // `parameters:` with only comments under it
  if (value.IsSequence()) {
    return ErrorAt(ctx, key,
                   "`parameters` must be a mapping, got a list; drop the `- ` so each "
                   "parameter reads `name: value` indented under `parameters:`");
  }
  if (!value.IsMap()) {
    return ErrorAt(
        ctx, key,
        "`parameters` must be a mapping of `name: value`, got " + std::string(NodeKindName(value)));
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (!it->first.IsScalar()) {
      return ErrorAt(ctx, it->first, "a parameter name must be a plain word");
    }
    ALLOY_ASSIGN_OR_RETURN(ParamSetting setting, ParseSetting(ctx, it->first, it->second));
    if (!IsKnownParameterName(it->first.Scalar())) {
      WarnAt(ctx, it->first,
             "parameter " + Quote(it->first.Scalar()) +
                 " is not read by any mergekit method; it is kept but probably has no effect");
    }
    out.emplace(it->first.Scalar(), std::move(setting));
  }
  return out;
}

Result<ModelRef> ParseModelRefNode(const DocContext& ctx, const YAML::Node& key,
                                   const YAML::Node& value) {
  if (value.IsScalar()) {
    Result<ModelRef> parsed = ParseModelRef(value.Scalar());
    if (!parsed.ok()) return ErrorAt(ctx, value, parsed.status().message());
    parsed->line = LineOf(ctx, value);
    parsed->column = ColumnOf(value);
    return parsed;
  }
  if (!value.IsMap()) {
    return ErrorAt(ctx, key,
                   Quote(key.Scalar()) + " must be a model path or hub id, got " +
                       std::string(NodeKindName(value)));
  }
  // Dict form (§2.2): {model: {path, revision}, lora: {path, revision},
  // override_architecture}.
  ModelRef ref;
  ref.line = LineOf(ctx, value);
  ref.column = ColumnOf(value);
  auto read_path = [&](const YAML::Node& part_key, const YAML::Node& part, std::string* path,
                       std::string* revision) -> Status {
    if (part.IsScalar()) {
      *path = part.Scalar();
      return Status::OK();
    }
    if (!part.IsMap() || !part["path"] || !part["path"].IsScalar()) {
      return ErrorAt(ctx, part_key,
                     Quote(part_key.Scalar()) + " must be a path or `{path: ..., revision: ...}`");
    }
    *path = part["path"].Scalar();
    if (part["revision"] && part["revision"].IsScalar()) *revision = part["revision"].Scalar();
    return Status::OK();
  };
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (k == "model") {
      ALLOY_RETURN_IF_ERROR(read_path(it->first, it->second, &ref.path, &ref.revision));
    } else if (k == "lora") {
      if (it->second.IsNull()) continue;
      ALLOY_RETURN_IF_ERROR(read_path(it->first, it->second, &ref.lora_path, &ref.lora_revision));
    } else if (k == "override_architecture") {
      if (it->second.IsScalar()) ref.override_architecture = it->second.Scalar();
    } else {
      WarnAt(ctx, it->first, "unknown key " + Quote(k) + " in a model reference is ignored");
    }
  }
  if (ref.path.empty()) {
    return ErrorAt(ctx, value, "a model reference mapping needs `model: {path: ...}`");
  }
  ref.text = ref.path;
  if (!ref.revision.empty()) ref.text += "@" + ref.revision;
  if (ref.has_lora()) {
    ref.text += "+" + ref.lora_path;
    if (!ref.lora_revision.empty()) ref.text += "@" + ref.lora_revision;
  }
  return ref;
}

}  // namespace alloy::merge::recipe_internal
