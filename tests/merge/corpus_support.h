// Shared pieces of the acceptance-corpus tests (../shared/recipes, see its
// README.md table): what each corpus file is expected to do, and tiny
// stand-in checkpoints for the models a recipe names.
//
// Stand-ins: every distinct model reference (Decision (h): ModelKey) gets its
// own tiny checkpoint of the recipe's architecture family, with enough layers
// for the recipe's slices. The planner reaches them either through an
// injected opener (Open) or, for RunMergeFile, through a `--path-map` that
// sends each reference's path to its checkpoint (PathMap).
//
// Not thread-safe; one StandIns per test.
#pragma once

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "examples/tiny_models.h"
#include "merge/model_opener.h"
#include "merge/plan.h"
#include "merge/recipe.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge::corpus {

#ifdef ALLOY_RECIPES_DIR
inline const char* const kRecipesDir = ALLOY_RECIPES_DIR;
#else
inline const char* const kRecipesDir = "";
#endif

enum class Outcome { kValid, kError, kUnsupported };

struct Expectation {
  Outcome outcome = Outcome::kValid;
  // kValid: a warning containing `substring` at `line` (when non-empty).
  // kError/kUnsupported: the message contains ":<line>:" and `substring`.
  int line = 0;
  std::string substring;
  size_t n_documents = 1;
};

inline const char* const kMoe =
    "mergekit-moe recipes run with `alloy moe RECIPE OUT`";
inline const char* const kUnion = "tokenizer source `union` is not supported yet";

// File name prefix → expectation; files not listed here must be valid.
inline const std::map<std::string, Expectation>& Expectations() {
  static const std::map<std::string, Expectation> kTable = {
      {"09-", {Outcome::kError, 14, "`parameters` must be a mapping, got a list"}},
      {"17-", {Outcome::kUnsupported, 41, kUnion}},
      {"20-", {Outcome::kValid, 22, "`int8_mask` is ignored"}},
      {"26-", {Outcome::kError, 18, "duplicate key `merge_method` (first at line 11)"}},
      {"47-", {Outcome::kValid, 11, "is not one of the merged models"}},
      {"50-", {Outcome::kError, 16, "`slerp` needs parameter `t`"}},
      {"51-", {Outcome::kUnsupported, 21, kUnion}},
      {"59-", {Outcome::kError, 17, "YAML syntax error"}},
      {"66-", {Outcome::kUnsupported, 3, kMoe}},
      {"67-", {Outcome::kUnsupported, 3, kMoe}},
      {"68-", {Outcome::kUnsupported, 4, kMoe}},
      {"69-", {Outcome::kUnsupported, 4, kMoe}},
  };
  return kTable;
}

inline Expectation ExpectationFor(const std::string& file_name) {
  for (const auto& [prefix, expectation] : Expectations()) {
    if (file_name.rfind(prefix, 0) == 0) return expectation;
  }
  return Expectation{};
}

// The stand-in family of a corpus file: its `# models:` comment line (the
// real-world files), else the whole text (mergekit's examples have none).
// Mixtral has no tiny family of its own; mistral stands in (same tensor
// names outside the experts).
inline examples::Family FamilyOf(const std::string& text) {
  const size_t pos = text.find("# models:");
  std::string hay = pos == std::string::npos ? text : text.substr(pos, text.find('\n', pos) - pos);
  std::transform(hay.begin(), hay.end(), hay.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (hay.find("mistral") != std::string::npos || hay.find("mixtral") != std::string::npos) {
    return examples::Family::kMistral;
  }
  return examples::Family::kLlama;
}

// The layer count a stand-in needs for every slice of `recipe` (at least 2).
inline int64_t LayersNeeded(const Recipe& recipe) {
  int64_t n = 2;
  auto slices = [&](const std::vector<Slice>& list) {
    for (const Slice& slice : list) {
      for (const SliceSource& source : slice.sources) n = std::max(n, source.layer_end);
    }
  };
  slices(recipe.slices);
  for (const Module& module : recipe.modules) slices(module.slices);
  return n;
}

inline int64_t LayersNeeded(const RecipeFile& file) {
  int64_t n = 2;
  for (const Recipe& recipe : file.documents) n = std::max(n, LayersNeeded(recipe));
  return n;
}

// Calls fn for every model reference of `recipe` (base, models, slice
// sources and bases, modules, tokenizer source), intermediates included.
inline void ForEachModelRef(const Recipe& recipe, const std::function<void(const ModelRef&)>& fn) {
  auto slices = [&](const std::vector<Slice>& list) {
    for (const Slice& slice : list) {
      for (const SliceSource& source : slice.sources) fn(source.model);
      if (slice.base_model) fn(*slice.base_model);
    }
  };
  if (recipe.base_model) fn(*recipe.base_model);
  for (const ModelEntry& entry : recipe.models) fn(entry.model);
  slices(recipe.slices);
  for (const Module& module : recipe.modules) {
    for (const ModelEntry& entry : module.models) fn(entry.model);
    slices(module.slices);
  }
  if (recipe.tokenizer.source == TokenizerSpec::Source::kModel) fn(recipe.tokenizer.model);
}

// Maps every distinct model reference to its own tiny checkpoint of `family`.
struct StandIns {
  testing::TempDir dir;
  DiskModelOpener disk;
  std::map<std::string, std::string> dirs;  // ModelKey → tiny model directory
  examples::Family family;
  int64_t num_layers;

  StandIns(examples::Family f, int64_t n) : family(f), num_layers(n) {}

  // The spec of stand-in number `index` (0 = the family's base).
  examples::TinyModelSpec Spec(int index) const {
    examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", family);
    spec.hidden_size = 16;
    spec.intermediate_size = 32;
    spec.vocab_size = 64;
    spec.num_layers = num_layers;
    spec.model_index = index;
    return spec;
  }

  // The stand-in directory of `ref`, written on first use (model_index =
  // order of first use, so the first model is the "base" of the family).
  // A `model+lora` reference shares the bare model's stand-in.
  formats::Result<std::string> DirFor(const ModelRef& ref) {
    ModelRef bare = ref;
    bare.lora_path.clear();
    bare.lora_revision.clear();
    const std::string key = ModelKey(bare);
    auto it = dirs.find(key);
    if (it == dirs.end()) {
      const examples::TinyModelSpec spec = Spec(static_cast<int>(dirs.size()));
      const std::string path = dir.Join("m" + std::to_string(dirs.size()));
      ALLOY_RETURN_IF_ERROR(examples::WriteTinyModel(spec, path));
      it = dirs.emplace(key, path).first;
    }
    return it->second;
  }

  // An opener for PlanMerge that reads the stand-ins.
  formats::Result<OpenedModel> Open(const ModelRef& ref) {
    ALLOY_ASSIGN_OR_RETURN(std::string path, DirFor(ref));
    ModelRef mapped = ref;
    mapped.path = path;
    mapped.revision.clear();
    return disk.Open(mapped);
  }

  // A path map (MergeJobOptions::path_map) sending every model path of every
  // document (intermediates excepted: the runner maps those) to its
  // stand-in, writing the stand-ins.
  formats::Result<std::vector<std::pair<std::string, std::string>>> PathMap(
      const RecipeFile& file) {
    std::vector<std::pair<std::string, std::string>> map;
    formats::Status status;
    for (const Recipe& recipe : file.documents) {
      ForEachModelRef(recipe, [&](const ModelRef& ref) {
        if (!status.ok() || !ref.intermediate.empty()) return;
        formats::Result<std::string> path = DirFor(ref);
        if (!path.ok()) {
          status = path.status();
          return;
        }
        map.emplace_back(ref.path, *path);
      });
    }
    if (!status.ok()) return status;
    return map;
  }
};

}  // namespace alloy::merge::corpus
