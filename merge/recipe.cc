#include "merge/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>

#include "formats/file_util.h"
#include "merge/recipe_yaml.h"

namespace alloy::merge {
namespace {

using formats::Result;
using formats::Status;
using recipe_internal::ColumnOf;
using recipe_internal::DocContext;
using recipe_internal::DocFacts;
using recipe_internal::ErrorAt;
using recipe_internal::LineOf;
using recipe_internal::Quote;

// One YAML document's text, split at `---` / `...` marker lines.
struct Chunk {
  std::string text;
  int first_line = 1;   // file line of text's first line
  int marker_line = 0;  // the `---` line that opened it; 0 for the first chunk
};

bool IsMarkerLine(std::string_view line, std::string_view marker) {
  if (line.substr(0, 3) != marker) return false;
  return line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r' ||
         line[3] == '\n';
}

// Splits at document markers ourselves (rather than with YAML::LoadAll) so
// each document keeps its exact text for mergekit_config.yml. YAML forbids
// `---`/`...` at column 1 inside any scalar, so this split is exact.
std::vector<Chunk> SplitDocuments(std::string_view text) {
  std::vector<Chunk> chunks(1);
  int line_no = 1;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    const size_t next = end == std::string_view::npos ? text.size() : end + 1;
    const std::string_view line = text.substr(pos, next - pos);
    if (IsMarkerLine(line, "---")) {
      chunks.push_back(Chunk{std::string(), line_no + 1, line_no});
    } else if (IsMarkerLine(line, "...")) {
      chunks.push_back(Chunk{std::string(), line_no + 1, 0});
    } else {
      chunks.back().text.append(line);
    }
    pos = next;
    ++line_no;
  }
  return chunks;
}

bool IsBlank(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    const size_t first = line.find_first_not_of(" \t\r");
    if (first != std::string_view::npos && line[first] != '#') return false;
    pos = end + 1;
  }
  return true;
}

// Records references to other documents' names (§5.2): a model path equal to
// a document name, in any model position.
void LinkIntermediates(RecipeFile* file) {
  std::map<std::string, size_t, std::less<>> by_name;
  for (size_t i = 0; i < file->documents.size(); ++i) {
    if (!file->documents[i].name.empty()) by_name.emplace(file->documents[i].name, i);
  }
  for (size_t doc_idx = 0; doc_idx < file->documents.size(); ++doc_idx) {
    Recipe& recipe = file->documents[doc_idx];
    auto link = [&](ModelRef& ref) {
      auto it = by_name.find(ref.path);
      if (it == by_name.end()) return;
      ref.intermediate = it->first;
      if (std::find(recipe.depends_on.begin(), recipe.depends_on.end(), it->second) ==
          recipe.depends_on.end()) {
        recipe.depends_on.push_back(it->second);
      }
    };
    auto link_slices = [&](std::vector<Slice>& slices) {
      for (Slice& slice : slices) {
        for (SliceSource& source : slice.sources) link(source.model);
        if (slice.base_model) link(*slice.base_model);
      }
    };
    if (recipe.base_model) link(*recipe.base_model);
    for (ModelEntry& entry : recipe.models) link(entry.model);
    link_slices(recipe.slices);
    for (Module& module : recipe.modules) {
      for (ModelEntry& entry : module.models) link(entry.model);
      link_slices(module.slices);
    }
    if (recipe.tokenizer.source == TokenizerSpec::Source::kModel) link(recipe.tokenizer.model);
  }
}

}  // namespace

Result<RecipeFile> ParseRecipeText(std::string_view text, std::string_view display_name) {
  RecipeFile file;
  file.path = std::string(display_name);
  if (text.size() > recipe_internal::kMaxRecipeBytes) {
    // Each document is also checked; this bounds the sum over documents.
    return ErrorAt(DocContext{file.path, 0, nullptr}, 1, 1,
                   "the recipe is " + std::to_string(text.size()) +
                       " bytes, more than the limit of " +
                       std::to_string(recipe_internal::kMaxRecipeBytes) +
                       "; recipes are a few kilobytes, so this text is refused");
  }
  std::vector<int> name_lines;
  for (const Chunk& chunk : SplitDocuments(text)) {
    if (IsBlank(chunk.text)) continue;
    DocContext ctx{file.path, chunk.first_line - 1, &file.warnings};
    // A chunk holds one document; yaml-cpp may see two (below), never many.
    ALLOY_ASSIGN_OR_RETURN(std::vector<YAML::Node> nodes,
                           LoadYamlDocuments(ctx, std::string(chunk.text), 16));
    if (nodes.empty()) continue;
    if (nodes.size() > 1) {
      // yaml-cpp 0.7 silently starts a new document when a key is less
      // indented than the document's first key; PyYAML (mergekit) refuses it
      // with "expected '<document start>', but found '<block mapping start>'".
      return ErrorAt(ctx, nodes[1],
                     "YAML syntax error: this line is less indented than the recipe's first "
                     "line (line " +
                         std::to_string(LineOf(ctx, nodes[0])) + ", column " +
                         std::to_string(ColumnOf(nodes[0])) +
                         "); start every top-level key in the same column (column 1)");
    }
    DocFacts facts;
    ALLOY_ASSIGN_OR_RETURN(Recipe recipe, recipe_internal::ParseDocument(ctx, nodes[0], &facts));
    ALLOY_RETURN_IF_ERROR(recipe_internal::ValidateRecipe(ctx, facts, recipe));
    recipe.raw_text = chunk.text;
    recipe.first_line = chunk.first_line;
    name_lines.push_back(facts.doc_line);
    file.documents.push_back(std::move(recipe));
  }
  if (file.documents.empty()) {
    return Status::InvalidArgument(file.path +
                                   ":1:1: the recipe is empty; it needs at least "
                                   "`merge_method:` and `models:` or `slices:`");
  }
  // §5.2: documents are told apart by name; only the final one may be unnamed.
  std::map<std::string, int, std::less<>> names;
  for (size_t i = 0; i < file.documents.size(); ++i) {
    const Recipe& recipe = file.documents[i];
    if (recipe.name.empty()) {
      if (i + 1 < file.documents.size()) {
        return Status::InvalidArgument(
            file.path + ":" + std::to_string(name_lines[i]) +
            ":1: this document is followed by another but has no `name:`; every document "
            "except the last needs a `name:` so later ones can refer to its output");
      }
      continue;
    }
    auto [it, inserted] = names.emplace(recipe.name, name_lines[i]);
    if (!inserted) {
      return Status::InvalidArgument(file.path + ":" + std::to_string(name_lines[i]) +
                                     ":1: duplicate document name " + Quote(recipe.name) +
                                     " (first at line " + std::to_string(it->second) +
                                     "); give each document a different `name:`");
    }
  }
  LinkIntermediates(&file);
  std::stable_sort(file.warnings.begin(), file.warnings.end(),
                   [](const Warning& a, const Warning& b) { return a.line < b.line; });
  ALLOY_RETURN_IF_ERROR(MergeOrder(file).status());
  return file;
}

Result<RecipeFile> ParseRecipeFile(const std::string& path) {
  ALLOY_ASSIGN_OR_RETURN(std::string text,
                         formats::ReadSmallFile(path, recipe_internal::kMaxRecipeBytes));
  return ParseRecipeText(text, path);
}

Result<std::vector<size_t>> MergeOrder(const RecipeFile& file) {
  const size_t n = file.documents.size();
  std::vector<size_t> order;
  std::vector<bool> done(n, false);
  // Repeatedly take the first document (in file order) whose dependencies
  // are done: a stable topological order. n is tiny.
  while (order.size() < n) {
    bool progressed = false;
    for (size_t i = 0; i < n && !progressed; ++i) {
      if (done[i]) continue;
      const auto& deps = file.documents[i].depends_on;
      if (std::all_of(deps.begin(), deps.end(), [&](size_t d) { return done[d]; })) {
        done[i] = true;
        order.push_back(i);
        progressed = true;
      }
    }
    if (!progressed) {
      // Drop the documents that only wait for the cycle (nothing left
      // depends on them); what remains is on a cycle or between two.
      std::vector<bool> in_cycle(n);
      for (size_t i = 0; i < n; ++i) in_cycle[i] = !done[i];
      for (bool pruned = true; pruned;) {
        pruned = false;
        for (size_t i = 0; i < n; ++i) {
          if (!in_cycle[i]) continue;
          bool needed = false;
          for (size_t j = 0; j < n && !needed; ++j) {
            const auto& deps = file.documents[j].depends_on;
            needed = in_cycle[j] && std::find(deps.begin(), deps.end(), i) != deps.end();
          }
          if (!needed) {
            in_cycle[i] = false;
            pruned = true;
          }
        }
      }
      std::string names;
      for (size_t i = 0; i < n; ++i) {
        if (!in_cycle[i]) continue;
        const Recipe& doc = file.documents[i];
        names += (names.empty() ? "" : ", ") +
                 (doc.name.empty() ? std::string("the final document") : Quote(doc.name)) +
                 " (line " + std::to_string(doc.first_line) + ")";
      }
      return Status::InvalidArgument(file.path + ": documents " + names +
                                     " refer to each other in a cycle; an intermediate merge "
                                     "cannot use its own output");
    }
  }
  return order;
}

std::string FormatWarning(std::string_view file, const Warning& warning) {
  return std::string(file) + ":" + std::to_string(warning.line) + ":" +
         std::to_string(warning.column) + ": warning: " + warning.message;
}

}  // namespace alloy::merge
