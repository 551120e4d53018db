// Plans real recipes of the acceptance corpus (../shared/recipes/real-world)
// against generated tiny models: every model name maps, through an injected
// opener, to a tiny checkpoint of the recipe's family with enough layers.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "merge/plan.h"
#include "merge/recipe.h"
#include "tests/merge/corpus_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

namespace fs = std::filesystem;
using corpus::FamilyOf;
using corpus::LayersNeeded;
using corpus::StandIns;

#ifndef ALLOY_RECIPES_DIR
#define ALLOY_RECIPES_DIR ""
#endif

struct Case {
  const char* file;
  examples::Family family;
  int64_t num_layers;
  const char* method;
  int64_t out_layers;
  size_t n_models;
};

TEST_CASE("plan: corpus recipes plan against tiny stand-in models", "[merge][plan][corpus]") {
  const Case kCases[] = {
      {"01-linear-mysticfusion-13b.yaml", examples::Family::kLlama, 2, "linear", 2, 3},
      {"05-task-arithmetic-psyfighter2-13b.yaml", examples::Family::kLlama, 2, "task_arithmetic", 2,
       4},
      {"11-ties-sonya-7b-global-density.yaml", examples::Family::kMistral, 2, "ties", 2, 6},
      {"14-ties-yi-34b-double-slash-base.yaml", examples::Family::kLlama, 2, "ties", 2, 3},
      {"47-slerp-gradient-filters-mistral-ft-optimized.yaml", examples::Family::kMistral, 32,
       "slerp", 32, 2},
      {"57-passthrough-9b-neuralpipe.yaml", examples::Family::kMistral, 32, "passthrough", 40, 2},
  };
  for (const Case& c : kCases) {
    SECTION(c.file) {
      StandIns stand_ins(c.family, c.num_layers);
      PlanInputs inputs;
      inputs.recipe_name = c.file;
      inputs.open = [&](const ModelRef& ref) { return stand_ins.Open(ref); };
      formats::Result<RecipeFile> parsed =
          ParseRecipeFile(std::string(ALLOY_RECIPES_DIR) + "/real-world/" + c.file);
      INFO(parsed.status().ToString());
      REQUIRE(parsed.ok());
      formats::Result<MergePlan> plan = PlanMerge(parsed->documents.back(), inputs);
      INFO(plan.status().ToString());
      REQUIRE(plan.ok());
      CHECK(plan->method == c.method);
      CHECK(plan->num_layers == c.out_layers);
      CHECK(plan->models.size() == c.n_models);
      CHECK(!plan->tensors.empty());
      for (const PlannedTensor& tensor : plan->tensors) CHECK(!tensor.inputs.empty());
    }
  }
}

TEST_CASE("plan: every parseable real-world recipe plans", "[merge][plan][corpus]") {
  const fs::path root = fs::path(ALLOY_RECIPES_DIR) / "real-world";
  REQUIRE(fs::is_directory(root));
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(root)) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  size_t n_planned = 0;
  for (const fs::path& file : files) {
    formats::Result<RecipeFile> parsed = ParseRecipeFile(file.string());
    if (!parsed.ok()) continue;  // refusals are recipe_corpus_test's subject
    INFO(file.filename().string());
    const Recipe& recipe = parsed->documents.back();
    StandIns stand_ins(FamilyOf(testing::ReadFileBytes(file.string())), LayersNeeded(recipe));
    PlanInputs inputs;
    inputs.recipe_name = file.filename().string();
    inputs.open = [&](const ModelRef& ref) { return stand_ins.Open(ref); };
    formats::Result<MergePlan> plan = PlanMerge(recipe, inputs);
    INFO(plan.status().ToString());
    CHECK(plan.ok());
    if (plan.ok()) ++n_planned;
  }
  CHECK(n_planned >= 30);
}

}  // namespace
}  // namespace alloy::merge
