// `alloy merge`: RunMerge called with option structs, and the built binary
// run as a user would (help text, exit codes, stderr messages, --json).
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>

#include "cli/cmd_merge.h"
#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

using testing_support::Binary;
using testing_support::Q;
using testing_support::Run;

Run Merge(const MergeCmdOptions& options) { return testing_support::RunCommand(RunMerge, options); }

// Two tiny llama models (base m0, fine-tune m1) and a task_arithmetic recipe
// over them at dir/r.yaml; `extra` is appended to the recipe.
std::string Setup(const TempDir& dir, const std::string& extra = "") {
  for (int i = 0; i < 2; ++i) {
    examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
    spec.model_index = i;
    REQUIRE(examples::WriteTinyModel(spec, dir.Join("m" + std::to_string(i))).ok());
  }
  testing::WriteFileBytes(dir.Join("r.yaml"), "models:\n"
                                              "  - model: " + dir.Join("m1") + "\n"
                                              "    parameters:\n"
                                              "      weight: 0.5\n"
                                              "merge_method: task_arithmetic\n"
                                              "base_model: " + dir.Join("m0") + "\n" + extra);
  return dir.Join("r.yaml");
}

TEST_CASE("merge --help mentions every option", "[cli][merge]") {
  TempDir dir;
  Run r = Binary("merge --help", dir);
  CHECK(r.code == 0);
  for (const char* option :
       {"RECIPE", "OUT", "--dry-run", "--json", "--quiet", "--seed", "--threads", "--path-map",
        "--out-shard-size", "--overwrite", "--fsync", "--allow-crimes", "--no-lazy",
        "--intermediate-dir", "Examples:", "Exit codes"}) {
    CHECK_THAT(r.out, Catch::Contains(option));
  }
}

TEST_CASE("merge --dry-run prints the plan and writes nothing and exits 0 quickly",
          "[cli][merge]") {
  TempDir dir;
  const std::string recipe = Setup(dir);
  const auto start = std::chrono::steady_clock::now();
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --dry-run", dir);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("task_arithmetic") &&
                        Catch::Contains("dry run: the recipe is valid; nothing was written"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
  CHECK(secs < 20.0);  // generous: planning reads headers only
}

TEST_CASE("merge --json prints a parseable summary", "[cli][merge]") {
  TempDir dir;
  const std::string recipe = Setup(dir);
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --json --seed 9", dir);
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["tensors"].get<size_t>() > 0);
  CHECK(j["bytes_written"].get<uint64_t>() > 0);
  CHECK(j["seconds"].get<double>() >= 0.0);
  CHECK(j["peak_rss_bytes"].get<uint64_t>() > 0);
  CHECK(j["seed"] == 9);
  REQUIRE(j["files"].is_array());
  std::vector<std::string> files = j["files"].get<std::vector<std::string>>();
  CHECK(std::find(files.begin(), files.end(), "model.safetensors") != files.end());
  CHECK(std::find(files.begin(), files.end(), "config.json") != files.end());
  for (const std::string& f : files) CHECK(formats::IsRegularFile(dir.Join("out/" + f)));
  REQUIRE(j["documents"].size() == 1);
  CHECK(j["documents"][0]["method"] == "task_arithmetic");
}

TEST_CASE("merge: a malformed recipe exits 2 with file:line:col", "[cli][merge][errors]") {
  TempDir dir;
  testing::WriteFileBytes(dir.Join("bad.yaml"), "models:\n"
                                                "  - model: a\n"
                                                "    parameters: {weight: [1, 2}\n"
                                                "merge_method: linear\n");
  Run r = Binary("merge " + Q(dir.Join("bad.yaml")) + " " + Q(dir.Join("out")), dir);
  CHECK(r.code == 2);
  INFO(r.err);
  CHECK(std::regex_search(r.err, std::regex("bad\\.yaml:3:[0-9]+: ")));
  CHECK_FALSE(fs::exists(dir.Join("out")));

  testing::WriteFileBytes(dir.Join("method.yaml"), "models:\n"
                                                   "  - model: a\n"
                                                   "merge_method: linaer\n");
  r = Binary("merge " + Q(dir.Join("method.yaml")) + " " + Q(dir.Join("out")), dir);
  CHECK(r.code == 2);
  INFO(r.err);
  CHECK(std::regex_search(r.err, std::regex("method\\.yaml:3:[0-9]+: ")));
  CHECK_THAT(r.err, Catch::Contains("linaer"));
}

TEST_CASE("merge: a missing model exits 2 naming the model", "[cli][merge][errors]") {
  TempDir dir;
  Setup(dir);
  testing::WriteFileBytes(dir.Join("missing.yaml"), "models:\n"
                                                    "  - model: " + dir.Join("nope") + "\n"
                                                    "    parameters: {weight: 1.0}\n"
                                                    "merge_method: linear\n");
  Run r = Binary("merge " + Q(dir.Join("missing.yaml")) + " " + Q(dir.Join("out")), dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains(dir.Join("nope")) && Catch::Contains("missing.yaml:2"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("merge: an existing non-empty OUT without --overwrite exits 2", "[cli][merge][errors]") {
  TempDir dir;
  const std::string recipe = Setup(dir);
  MergeCmdOptions options;
  options.recipe = recipe;
  options.output = dir.Join("out");
  options.quiet = true;
  REQUIRE(Merge(options).code == 0);
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --quiet", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains(dir.Join("out")) && Catch::Contains("--overwrite"));
  r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --quiet --overwrite", dir);
  CHECK(r.code == 0);
  CHECK(r.out.empty());
}

TEST_CASE("merge: --path-map without '=' exits 2", "[cli][merge][errors]") {
  TempDir dir;
  const std::string recipe = Setup(dir);
  MergeCmdOptions options;
  options.recipe = recipe;
  options.output = dir.Join("out");
  options.path_map = {"E:\\models"};
  Run r = Merge(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--path-map 'E:\\models' must look like FROM=TO"));
  r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --path-map =/data", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("FROM=TO"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("merge: --path-map remaps the recipe's Windows paths", "[cli][merge]") {
  TempDir dir;
  Setup(dir);
  testing::WriteFileBytes(dir.Join("win.yaml"), "models:\n"
                                                "  - model: 'E:\\hf\\m1'\n"
                                                "    parameters: {weight: 0.5}\n"
                                                "merge_method: task_arithmetic\n"
                                                "base_model: E:/hf/m0\n");
  Run r = Binary("merge " + Q(dir.Join("win.yaml")) + " " + Q(dir.Join("out")) +
                     " --quiet --path-map " + Q("E:\\hf=" + dir.path()),
                 dir);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(formats::IsRegularFile(dir.Join("out/model.safetensors")));
}

TEST_CASE("merge: unknown recipe keys are warnings on stderr with their line", "[cli][merge]") {
  TempDir dir;
  const std::string recipe = Setup(dir, "embed_slerp: true\n");  // line 7
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --quiet", dir);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_THAT(r.err, Catch::Contains("r.yaml:7:1: warning:") && Catch::Contains("embed_slerp"));
  CHECK(formats::IsRegularFile(dir.Join("out/model.safetensors")));
}

TEST_CASE("merge: warnings gathered before an error are printed with it", "[cli][merge][errors]") {
  TempDir dir;
  // An unknown key (line 7), then a parameter error the merge would hit.
  const std::string recipe = Setup(dir, "embed_slerp: true\nparameters: {density: 0.000001}\n");
  testing::WriteFileBytes(recipe, std::regex_replace(testing::ReadFileBytes(recipe),
                                                     std::regex("task_arithmetic"), "ties"));
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --quiet", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("r.yaml:7:1: warning:") && Catch::Contains("embed_slerp") &&
                        Catch::Contains("alloy: error: ties: density"));
  CHECK(r.err.find("warning") < r.err.find("error"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("merge --dry-run --json counts the planned tensors", "[cli][merge]") {
  TempDir dir;
  const std::string recipe = Setup(dir);
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --dry-run --json", dir);
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["dry_run"] == true);
  CHECK(j["tensors"].get<size_t>() > 0);
  CHECK(j["documents"][0]["planned_bytes"].get<uint64_t>() > 0);
  CHECK(j["bytes_written"] == 0);
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("merge: a bad --out-shard-size exits 2", "[cli][merge][errors]") {
  TempDir dir;
  const std::string recipe = Setup(dir);
  Run r = Binary("merge " + Q(recipe) + " " + Q(dir.Join("out")) + " --out-shard-size lots", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--out-shard-size"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

}  // namespace
}  // namespace alloy::cli
