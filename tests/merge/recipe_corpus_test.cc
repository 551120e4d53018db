// Parses every recipe of the acceptance corpus (../shared/recipes, see its
// README.md table): valid ones must parse, malformed ones must be refused
// (or warned about) at the expected line.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>

#include "merge/moe_recipe.h"
#include "merge/recipe.h"
#include "tests/merge/corpus_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

namespace fs = std::filesystem;
using formats::ErrorCode;

#ifndef ALLOY_RECIPES_DIR
#define ALLOY_RECIPES_DIR ""
#endif

using corpus::Expectation;
using corpus::ExpectationFor;
using corpus::Outcome;

TEST_CASE("every corpus recipe parses or is refused at the expected line",
          "[merge][recipe][corpus]") {
  const fs::path root = ALLOY_RECIPES_DIR;
  if (root.empty() || !fs::is_directory(root)) {
    WARN("recipe corpus not found at '" << root.string() << "'; skipping");
    return;
  }
  size_t n_files = 0;
  size_t n_valid = 0;
  for (const char* sub : {"real-world", "mergekit-examples"}) {
    for (const fs::directory_entry& entry : fs::directory_iterator(root / sub)) {
      const std::string name = entry.path().filename().string();
      if (entry.path().extension() != ".yaml" && entry.path().extension() != ".yml") continue;
      ++n_files;
      const Expectation expected = ExpectationFor(name);
      formats::Result<RecipeFile> parsed = ParseRecipeFile(entry.path().string());
      INFO(name << ": " << (parsed.ok() ? std::string("ok") : parsed.status().ToString()));
      switch (expected.outcome) {
        case Outcome::kValid: {
          REQUIRE(parsed.ok());
          ++n_valid;
          CHECK(!parsed->documents.front().merge_method.empty());
          // Only the expected warning: no false alarms on published recipes.
          CHECK(parsed->warnings.size() == (expected.substring.empty() ? 0U : 1U));
          if (!expected.substring.empty()) {
            bool found = false;
            for (const Warning& w : parsed->warnings) {
              found |= w.line == expected.line &&
                       w.message.find(expected.substring) != std::string::npos;
            }
            CHECK(found);
          }
          break;
        }
        case Outcome::kError:
        case Outcome::kUnsupported: {
          REQUIRE(!parsed.ok());
          CHECK(parsed.status().code() == (expected.outcome == Outcome::kError
                                               ? ErrorCode::kInvalidArgument
                                               : ErrorCode::kUnsupported));
          CHECK_THAT(parsed.status().message(), Catch::Contains(expected.substring));
          CHECK_THAT(parsed.status().message(), Catch::Contains(name));
          if (expected.line > 0) {
            CHECK_THAT(parsed.status().message(),
                       Catch::Contains(":" + std::to_string(expected.line) + ":"));
          }
          break;
        }
      }
    }
  }
  CHECK(n_files == 50);
  CHECK(n_valid == 40);
}

TEST_CASE("corpus: a multi-document recipe links the intermediate by name",
          "[merge][recipe][corpus]") {
  const fs::path root = ALLOY_RECIPES_DIR;
  const fs::path file = root / "real-world" / "17-dare-ties-yi-megamerge-multidoc.yaml";
  if (root.empty() || !fs::exists(file)) {
    WARN("recipe corpus not found; skipping");
    return;
  }
  // With `union` replaced by `base`, the two documents parse and the second
  // depends on the first through `model: 4kmerge-v2`.
  std::string patched = testing::ReadFileBytes(file.string());
  for (size_t pos; (pos = patched.find("tokenizer_source: union")) != std::string::npos;) {
    patched.replace(pos, 23, "tokenizer_source: base ");
  }
  formats::Result<RecipeFile> parsed = ParseRecipeText(patched, "17.yaml");
  INFO((parsed.ok() ? std::string("ok") : parsed.status().ToString()));
  REQUIRE(parsed.ok());
  REQUIRE(parsed->documents.size() == 2);
  CHECK(parsed->documents[0].name == "4kmerge-v2");
  CHECK(parsed->documents[1].name.empty());
  CHECK(parsed->documents[1].depends_on == std::vector<size_t>{0});
  CHECK(parsed->documents[1].first_line == 48);
  bool linked = false;
  for (const ModelEntry& entry : parsed->documents[1].models) {
    linked |= entry.model.intermediate == "4kmerge-v2";
  }
  CHECK(linked);
  CHECK(parsed->documents[1].models.size() == 11);
  const ParamSetting& weight = parsed->documents[1].models[1].parameters.at("weight");
  CHECK(weight.kind == ParamSetting::Kind::kGradient);
  CHECK(weight.numeric.values.size() == 6);
}

TEST_CASE("corpus: mergekit-moe recipes parse with ParseMoeRecipeFile", "[merge][recipe][corpus]") {
  const fs::path dir = fs::path(ALLOY_RECIPES_DIR) / "real-world";
  if (std::string(ALLOY_RECIPES_DIR).empty() || !fs::is_directory(dir)) {
    WARN("recipe corpus not found; skipping");
    return;
  }
  const std::map<std::string, size_t> kExperts = {{"66-", 4}, {"67-", 4}, {"68-", 4}};
  size_t n_moe = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.find("-moe-") == std::string::npos) continue;
    ++n_moe;
    formats::Result<MoeRecipe> parsed = ParseMoeRecipeFile(entry.path().string());
    INFO(name << ": " << (parsed.ok() ? std::string("ok") : parsed.status().ToString()));
    auto it = kExperts.find(name.substr(0, 3));
    if (it != kExperts.end()) {
      REQUIRE(parsed.ok());
      CHECK(parsed->experts.size() == it->second);
      CHECK(parsed->gate_mode == "hidden");
      continue;
    }
    // 69: eight copies of one model with empty prompts (is_bad_config).
    REQUIRE(!parsed.ok());
    CHECK_THAT(parsed.status().message(),
               Catch::Contains(":7:1: every expert has the same prompts"));
  }
  CHECK(n_moe == 4);
}

}  // namespace
}  // namespace alloy::merge
