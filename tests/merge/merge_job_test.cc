// RunMergeFile (merge/merge_job.h): the output directory it writes (config,
// tokenizer files, recipe, model card, shards), path maps, multi-document
// recipes with intermediates, dry runs, and what a failure leaves behind.
// Fixtures are tiny generated checkpoints (examples/tiny_models.h).
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "merge/merge_job.h"
#include "merge/recipe.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

namespace fs = std::filesystem;
using formats::ErrorCode;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::WriteFileBytes;

// A tiny llama-family checkpoint at `path` (fine-tune `index`; 0 = the base).
std::string Tiny(const std::string& path, int index, int64_t layers = 2) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  spec.hidden_size = 16;
  spec.intermediate_size = 32;
  spec.vocab_size = 64;
  spec.num_layers = layers;
  spec.model_index = index;
  REQUIRE(examples::WriteTinyModel(spec, path).ok());
  return path;
}

// Writes `text` with every "$D" replaced by dir.path() to dir/<name>.
std::string WriteRecipe(const TempDir& dir, const std::string& name, std::string text) {
  for (size_t pos = 0; (pos = text.find("$D", pos)) != std::string::npos;) {
    text.replace(pos, 2, dir.path());
  }
  WriteFileBytes(dir.Join(name), text);
  return dir.Join(name);
}

nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(ReadFileBytes(path));
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// True when a `*.alloy-partial-*` directory exists anywhere under `dir`.
bool HasPartialDir(const std::string& dir) {
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().find(".alloy-partial-") != std::string::npos) return true;
  }
  return false;
}

MergeJobOptions Options() {
  MergeJobOptions job;
  job.execute.threads = 1;
  return job;
}

// Every tensor of the model at `dir`, name → bytes.
std::map<std::string, std::string> TensorBytes(const std::string& dir) {
  auto src = formats::OpenModel(dir, formats::FileAccess::kPread);
  REQUIRE(src.ok());
  std::map<std::string, std::string> out;
  for (const formats::TensorInfo& info : (*src)->tensors()) {
    std::string bytes(info.nbytes, '\0');
    REQUIRE((*src)
                ->Read(info, 0,
                       std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()))
                .ok());
    out[info.name] = std::move(bytes);
  }
  return out;
}

const char* const kTaskArithmetic =
    "# task arithmetic onto m1 (listed second)\n"
    "models:\n"
    "  - model: $D/m2\n"
    "    parameters:\n"
    "      weight: 0.5   # half\n"
    "  - model: $D/m1\n"
    "merge_method: task_arithmetic\n"
    "base_model: $D/m1\n"
    "dtype: float16\n";

TEST_CASE("merge job: output directory holds weights and config and tokenizer and recipe and card",
          "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  // Tell the donor's (the base's) tokenizer files from the other model's.
  WriteFileBytes(dir.Join("m1/tokenizer_config.json"), "{\"marker\": \"m1\"}\n");
  WriteFileBytes(dir.Join("m2/tokenizer_config.json"), "{\"marker\": \"m2\"}\n");
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  REQUIRE(report->documents.size() == 1);
  const DocumentReport& doc = report->documents[0];
  CHECK(doc.output == dir.Join("out"));
  CHECK(doc.method == "task_arithmetic");
  CHECK(doc.n_models == 2);
  CHECK(doc.files == ListDir(dir.Join("out")));
  CHECK(doc.files == std::vector<std::string>{"README.md", "config.json", "generation_config.json",
                                              "mergekit_config.yml", "model.safetensors",
                                              "tokenizer.json", "tokenizer_config.json"});

  const nlohmann::json config = ReadJson(dir.Join("out/config.json"));
  CHECK(config["torch_dtype"] == "float16");
  CHECK(config["num_hidden_layers"] == 2);
  CHECK(config["architectures"][0] == "LlamaForCausalLM");
  for (const char* file : {"tokenizer_config.json", "tokenizer.json", "generation_config.json"}) {
    CHECK(ReadFileBytes(dir.Join("out/") + file) == ReadFileBytes(dir.Join("m1/") + file));
  }
  CHECK(ReadFileBytes(dir.Join("out/mergekit_config.yml")) == ReadFileBytes(recipe));

  const std::string card = ReadFileBytes(dir.Join("out/README.md"));
  CHECK(card.rfind("---\n", 0) == 0);
  const std::string front = card.substr(0, card.find("\n---\n", 3) + 5);
  CHECK_THAT(front, Catch::Contains("library_name: transformers\ntags:\n- merge\n- alloy\n---\n"));
  CHECK_THAT(front, !Catch::Contains("base_model"));  // local models only
  CHECK_THAT(card, Catch::Contains("task_arithmetic") && Catch::Contains(dir.Join("m2")));

  auto src = formats::OpenModel(dir.Join("out"), formats::FileAccess::kPread);
  REQUIRE(src.ok());
  CHECK(!(*src)->tensors().empty());
  for (const formats::TensorInfo& info : (*src)->tensors()) {
    CHECK(info.dtype == formats::DType::kF16);
  }
  CHECK_FALSE(HasPartialDir(dir.path()));
}

TEST_CASE("merge job: without a base the first model donates the tokenizer", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("a"), 1);
  Tiny(dir.Join("b"), 2);
  WriteFileBytes(dir.Join("a/tokenizer_config.json"), "{\"marker\": \"a\"}\n");
  WriteFileBytes(dir.Join("b/tokenizer_config.json"), "{\"marker\": \"b\"}\n");
  const std::string recipe = WriteRecipe(dir, "r.yaml",
                                         "models:\n"
                                         "  - model: $D/a\n"
                                         "    parameters: {weight: 1.0}\n"
                                         "  - model: $D/b\n"
                                         "    parameters: {weight: 1.0}\n"
                                         "merge_method: linear\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(ReadFileBytes(dir.Join("out/tokenizer_config.json")) == "{\"marker\": \"a\"}\n");
  // No dtype in the recipe: the models' stored dtype.
  CHECK(ReadJson(dir.Join("out/config.json"))["torch_dtype"] == "bfloat16");
}

TEST_CASE("merge job: slices rewrite num_hidden_layers", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("a"), 0, 4);
  Tiny(dir.Join("b"), 1, 4);
  const std::string recipe = WriteRecipe(dir, "r.yaml",
                                         "slices:\n"
                                         "  - sources:\n"
                                         "      - model: $D/a\n"
                                         "        layer_range: [0, 3]\n"
                                         "      - model: $D/b\n"
                                         "        layer_range: [0, 3]\n"
                                         "  - sources:\n"
                                         "      - model: $D/a\n"
                                         "        layer_range: [2, 4]\n"
                                         "      - model: $D/b\n"
                                         "        layer_range: [2, 4]\n"
                                         "parameters:\n"
                                         "  weight: 0.5\n"
                                         "merge_method: linear\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(ReadJson(dir.Join("out/config.json"))["num_hidden_layers"] == 5);
  const auto tensors = TensorBytes(dir.Join("out"));
  CHECK(tensors.count("model.layers.4.self_attn.q_proj.weight") == 1);
  CHECK(tensors.count("model.layers.5.self_attn.q_proj.weight") == 0);
  // The input config still says 4.
  CHECK(ReadJson(dir.Join("a/config.json"))["num_hidden_layers"] == 4);
}

// Sets HF_HUB_CACHE for the scope of one test.
struct HubCache {
  explicit HubCache(const std::string& root) { ::setenv("HF_HUB_CACHE", root.c_str(), 1); }
  ~HubCache() { ::unsetenv("HF_HUB_CACHE"); }
};

const char* const kSha = "0123456789abcdef0123456789abcdef01234567";

// Writes acme/<name> into the hub cache at dir/hub; returns the snapshot dir.
std::string HubModel(const TempDir& dir, const std::string& name, int index) {
  const std::string repo = dir.Join("hub/models--acme--" + name);
  WriteFileBytes(repo + "/refs/main", kSha);
  return Tiny(repo + "/snapshots/" + kSha, index);
}

TEST_CASE("merge job: the card lists hub ids of models from the hub cache", "[merge][job]") {
  TempDir dir;
  HubModel(dir, "tiny-base", 0);
  Tiny(dir.Join("local"), 1);
  HubCache env(dir.Join("hub"));
  const std::string recipe = WriteRecipe(dir, "r.yaml",
                                         "models:\n"
                                         "  - model: acme/tiny-base\n"
                                         "  - model: $D/local\n"
                                         "    parameters:\n"
                                         "      weight: 1.0\n"
                                         "merge_method: task_arithmetic\n"
                                         "base_model: acme/tiny-base\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  const std::string card = ReadFileBytes(dir.Join("out/README.md"));
  const std::string front = card.substr(0, card.find("\n---\n", 3) + 5);
  CHECK_THAT(front, Catch::StartsWith("---\nbase_model:\n- acme/tiny-base\nlibrary_name:"));
  CHECK_THAT(front, !Catch::Contains("local"));
}

// A recipe may name a snapshot directory inside a hub cache (corpus recipe
// 03 does): the model still came from the hub, and the card must list its
// repo id, not the local path.
TEST_CASE("merge job: a snapshot path inside a hub cache is listed by its repo id",
          "[merge][job]") {
  TempDir dir;
  const std::string snapshot = HubModel(dir, "tiny-base", 0);
  Tiny(dir.Join("local"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml",
                                         "models:\n"
                                         "  - model: " + snapshot + "\n"
                                         "  - model: $D/local\n"
                                         "    parameters:\n"
                                         "      weight: 1.0\n"
                                         "merge_method: task_arithmetic\n"
                                         "base_model: " + snapshot + "\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  const std::string card = ReadFileBytes(dir.Join("out/README.md"));
  const std::string front = card.substr(0, card.find("\n---\n", 3) + 5);
  CHECK_THAT(front, Catch::StartsWith("---\nbase_model:\n- acme/tiny-base\nlibrary_name:"));
}

const char* const kWindowsRecipe =
    "models:\n"
    "  - model: 'E:\\models\\fine tune'\n"
    "    parameters:\n"
    "      weight: 1.0\n"
    "merge_method: task_arithmetic\n"
    "base_model: \"E:/models/base\"\n";

TEST_CASE("merge job: --path-map remaps Windows-style model paths", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("win/base"), 0);
  Tiny(dir.Join("win/fine tune"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kWindowsRecipe);
  MergeJobOptions job = Options();
  job.path_map = {{"E:\\models", dir.Join("win")}};
  auto report = RunMergeFile(recipe, dir.Join("out"), job);
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->documents[0].n_models == 2);
  CHECK(LooksComplete(dir.Join("out")));
  // The recipe is recorded as written, Windows paths included.
  CHECK(ReadFileBytes(dir.Join("out/mergekit_config.yml")) == kWindowsRecipe);

  // A map written with forward slashes matches backslashed paths too.
  job.path_map = {{"E:/models/", dir.Join("win") + "/"}};
  job.overwrite = true;
  report = RunMergeFile(recipe, dir.Join("out"), job);
  INFO(report.status().ToString());
  CHECK(report.ok());
}

// Without a map, `E:/models/...` is neither a path nor a repo id.
TEST_CASE("merge job: an unmapped Windows path is refused naming the model", "[merge][job]") {
  TempDir dir;
  const std::string recipe = WriteRecipe(dir, "r.yaml", kWindowsRecipe);
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(report.status().message(),
             Catch::Contains("r.yaml:2: model 'E:\\models\\fine tune'") &&
                 Catch::Contains("neither an existing path nor a valid Hugging Face repo id"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

// s2 reads s1 but comes first in the file; the final document reads s2.
const char* const kMultiDoc =
    "name: s2\n"
    "models:\n"
    "  - model: s1\n"
    "    parameters: {weight: 1.0}\n"
    "  - model: $D/m2\n"
    "    parameters: {weight: 1.0}\n"
    "merge_method: linear\n"
    "---\n"
    "name: s1\n"
    "models:\n"
    "  - model: $D/m0\n"
    "    parameters: {weight: 1.0}\n"
    "  - model: $D/m1\n"
    "    parameters: {weight: 1.0}\n"
    "merge_method: linear\n"
    "---\n"
    "models:\n"
    "  - model: s2\n"
    "    parameters: {weight: 0.5}\n"
    "merge_method: task_arithmetic\n"
    "base_model: $D/m0\n";

std::vector<std::string> Names(const MergeJobReport& report) {
  std::vector<std::string> names;
  for (const DocumentReport& d : report.documents) names.push_back(d.name);
  return names;
}

std::vector<bool> Skipped(const MergeJobReport& report) {
  std::vector<bool> skipped;
  for (const DocumentReport& d : report.documents) skipped.push_back(d.skipped);
  return skipped;
}

TEST_CASE("merge job: intermediates run in dependency order", "[merge][job][multi]") {
  TempDir dir;
  for (int i = 0; i < 3; ++i) Tiny(dir.Join("m" + std::to_string(i)), i);
  const std::string recipe = WriteRecipe(dir, "multi.yaml", kMultiDoc);
  const std::string out = dir.Join("out");
  auto report = RunMergeFile(recipe, out, Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(Names(*report) == std::vector<std::string>{"s1", "s2", ""});
  CHECK(report->documents[0].output == out + ".intermediates/s1");
  CHECK(report->documents[1].output == out + ".intermediates/s2");
  CHECK(report->documents[2].output == out);
  CHECK(LooksComplete(out + ".intermediates/s1"));
  CHECK(LooksComplete(out + ".intermediates/s2"));
  CHECK(LooksComplete(out));
  // Each output records its own document's text.
  auto parsed = ParseRecipeFile(recipe);
  REQUIRE(parsed.ok());
  CHECK(ReadFileBytes(out + ".intermediates/s2/mergekit_config.yml") ==
        parsed->documents[0].raw_text);
  CHECK(ReadFileBytes(out + ".intermediates/s1/mergekit_config.yml") ==
        parsed->documents[1].raw_text);
  CHECK(ReadFileBytes(out + "/mergekit_config.yml") == parsed->documents[2].raw_text);
  CHECK_FALSE(HasPartialDir(dir.path()));

  SECTION("--intermediate-dir puts them elsewhere") {
    MergeJobOptions job = Options();
    job.intermediate_dir = dir.Join("inter");
    auto again = RunMergeFile(recipe, dir.Join("out2"), job);
    INFO(again.status().ToString());
    REQUIRE(again.ok());
    CHECK(LooksComplete(dir.Join("inter/s1")));
    CHECK(LooksComplete(dir.Join("inter/s2")));
    CHECK_FALSE(fs::exists(dir.Join("out2.intermediates")));
    CHECK(TensorBytes(dir.Join("out2")) == TensorBytes(out));
  }
}

TEST_CASE("merge job: a complete intermediate is skipped unless lazy is off",
          "[merge][job][multi]") {
  TempDir dir;
  for (int i = 0; i < 3; ++i) Tiny(dir.Join("m" + std::to_string(i)), i);
  const std::string recipe = WriteRecipe(dir, "multi.yaml", kMultiDoc);
  MergeJobOptions job = Options();
  job.intermediate_dir = dir.Join("inter");
  REQUIRE(RunMergeFile(recipe, dir.Join("out1"), job).ok());
  const std::string marker = dir.Join("inter/s1/README.md");
  WriteFileBytes(marker, "kept by the lazy run\n");

  auto lazy = RunMergeFile(recipe, dir.Join("out2"), job);
  INFO(lazy.status().ToString());
  REQUIRE(lazy.ok());
  CHECK(Skipped(*lazy) == std::vector<bool>{true, true, false});
  CHECK(ReadFileBytes(marker) == "kept by the lazy run\n");
  CHECK(TensorBytes(dir.Join("out2")) == TensorBytes(dir.Join("out1")));

  SECTION("--no-lazy re-runs them, replacing them with overwrite (docs/merge.md)") {
    job.lazy = false;
    auto refused = RunMergeFile(recipe, dir.Join("out3"), job);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(refused.status().message(),
               Catch::Contains("intermediate 's1'") && Catch::Contains("--overwrite"));
    CHECK(ReadFileBytes(marker) == "kept by the lazy run\n");
    CHECK_FALSE(fs::exists(dir.Join("out3")));
    job.overwrite = true;
    auto eager = RunMergeFile(recipe, dir.Join("out3"), job);
    INFO(eager.status().ToString());
    REQUIRE(eager.ok());
    CHECK(Skipped(*eager) == std::vector<bool>{false, false, false});
    CHECK(ReadFileBytes(marker) != "kept by the lazy run\n");
    CHECK(TensorBytes(dir.Join("out3")) == TensorBytes(dir.Join("out1")));
  }
  SECTION("an incomplete intermediate is re-run") {
    fs::remove(dir.Join("inter/s2/config.json"));
    job.overwrite = true;
    auto again = RunMergeFile(recipe, dir.Join("out3"), job);
    INFO(again.status().ToString());
    REQUIRE(again.ok());
    CHECK(Skipped(*again) == std::vector<bool>{true, false, false});
    CHECK(LooksComplete(dir.Join("inter/s2")));
  }
}

// Restores the working directory at the end of a test.
struct ChangeDir {
  explicit ChangeDir(const std::string& dir) : old(fs::current_path()) { fs::current_path(dir); }
  ~ChangeDir() { fs::current_path(old); }
  fs::path old;
};

// §5.2: a reference *equal* to a document name is that document's output; a
// relative local path that merely starts with `<name>/` is not.
TEST_CASE("merge job: only exact document names refer to intermediates", "[merge][job][multi]") {
  TempDir dir;
  Tiny(dir.Join("stage/m0"), 0);
  Tiny(dir.Join("stage/m1"), 1);
  const std::string recipe = WriteRecipe(dir, "multi.yaml",
                                         "name: stage\n"
                                         "models:\n"
                                         "  - model: stage/m0\n"
                                         "    parameters: {weight: 1.0}\n"
                                         "  - model: stage/m1\n"
                                         "    parameters: {weight: 1.0}\n"
                                         "merge_method: linear\n"
                                         "---\n"
                                         "models:\n"
                                         "  - model: stage\n"
                                         "    parameters: {weight: 1.0}\n"
                                         "merge_method: task_arithmetic\n"
                                         "base_model: stage/m0\n");
  ChangeDir cd(dir.path());
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(Names(*report) == std::vector<std::string>{"stage", ""});
  CHECK(report->documents[1].n_models == 2);
  CHECK(LooksComplete(dir.Join("out.intermediates/stage")));
  CHECK(LooksComplete(dir.Join("out")));
}

TEST_CASE("merge job: mergekit_config.yml is the text plus a missing final newline",
          "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  std::string text = kTaskArithmetic;
  text.pop_back();  // no final newline, as corpus recipes 02 and 27
  const std::string recipe = WriteRecipe(dir, "r.yaml", text);
  REQUIRE(RunMergeFile(recipe, dir.Join("out"), Options()).ok());
  CHECK(ReadFileBytes(dir.Join("out/mergekit_config.yml")) == ReadFileBytes(recipe) + "\n");
}

TEST_CASE("merge job: an interrupted merge leaves no output and no temporary directory",
          "[merge][job][errors]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
  std::atomic<bool> cancel{false};
  size_t n_progress = 0;
  MergeJobOptions job = Options();
  job.execute.cancel = &cancel;
  // Stop after the first tensor: the writer has begun and holds data.
  job.execute.progress = [&](uint64_t, uint64_t, std::string_view) {
    ++n_progress;
    cancel = true;
  };

  SECTION("a new output") {
    auto report = RunMergeFile(recipe, dir.Join("out"), job);
    REQUIRE_FALSE(report.ok());
    CHECK(report.status().code() == ErrorCode::kIoError);
    CHECK_THAT(report.status().message(), Catch::Contains("interrupted"));
    CHECK(n_progress == 1);
    CHECK_FALSE(fs::exists(dir.Join("out")));
    CHECK_FALSE(HasPartialDir(dir.path()));
  }
  SECTION("a previous output replaced with overwrite stays as it was") {
    REQUIRE(RunMergeFile(recipe, dir.Join("out"), Options()).ok());
    WriteFileBytes(dir.Join("out/README.md"), "previous run\n");
    const std::vector<std::string> before = ListDir(dir.Join("out"));
    const auto tensors = TensorBytes(dir.Join("out"));
    job.overwrite = true;
    auto report = RunMergeFile(recipe, dir.Join("out"), job);
    REQUIRE_FALSE(report.ok());
    CHECK_THAT(report.status().message(), Catch::Contains("interrupted"));
    CHECK(n_progress == 1);
    CHECK(ListDir(dir.Join("out")) == before);
    CHECK(ReadFileBytes(dir.Join("out/README.md")) == "previous run\n");
    CHECK(TensorBytes(dir.Join("out")) == tensors);
    CHECK_FALSE(HasPartialDir(dir.path()));
  }
}

TEST_CASE("merge job: a failing final document keeps finished intermediates only",
          "[merge][job][errors][multi]") {
  TempDir dir;
  for (int i = 0; i < 3; ++i) Tiny(dir.Join("m" + std::to_string(i)), i);
  std::string text = kMultiDoc;
  text.replace(text.find("base_model: $D/m0"), 17, "base_model: $D/missing");
  const std::string recipe = WriteRecipe(dir, "multi.yaml", text);
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == ErrorCode::kNotFound);
  CHECK_THAT(report.status().message(), Catch::Contains(dir.Join("missing")));
  CHECK_FALSE(fs::exists(dir.Join("out")));
  CHECK(LooksComplete(dir.Join("out.intermediates/s1")));
  CHECK_FALSE(HasPartialDir(dir.path()));
}

TEST_CASE("merge job: a missing model fails before anything is written", "[merge][job][errors]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);  // no m2
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == ErrorCode::kNotFound);
  CHECK_THAT(report.status().message(), Catch::Contains(dir.Join("m2")) &&
                                            Catch::Contains("r.yaml:3:"));
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"m1", "r.yaml"});
}

TEST_CASE("merge job: an existing non-empty output needs overwrite", "[merge][job][errors]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
  WriteFileBytes(dir.Join("out/keep.txt"), "mine");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(report.status().message(), Catch::Contains(dir.Join("out")));
  CHECK(ListDir(dir.Join("out")) == std::vector<std::string>{"keep.txt"});

  // Not even with overwrite: it does not look like a model directory.
  MergeJobOptions job = Options();
  job.overwrite = true;
  report = RunMergeFile(recipe, dir.Join("out"), job);
  REQUIRE_FALSE(report.ok());
  CHECK_THAT(report.status().message(), Catch::Contains("refusing to replace it"));
  CHECK(ListDir(dir.Join("out")) == std::vector<std::string>{"keep.txt"});
}

TEST_CASE("merge job: overwrite replaces a previous merge output", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
  REQUIRE(RunMergeFile(recipe, dir.Join("out"), Options()).ok());
  WriteFileBytes(dir.Join("out/stale.txt"), "from the previous run");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(report.status().message(), Catch::Contains("--overwrite"));

  MergeJobOptions job = Options();
  job.overwrite = true;
  report = RunMergeFile(recipe, dir.Join("out"), job);
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(LooksComplete(dir.Join("out")));
  CHECK_FALSE(fs::exists(dir.Join("out/stale.txt")));
  CHECK_FALSE(HasPartialDir(dir.path()));
}

TEST_CASE("merge job: a dry run plans and writes nothing", "[merge][job]") {
  TempDir dir;
  for (int i = 0; i < 3; ++i) Tiny(dir.Join("m" + std::to_string(i)), i);
  const std::vector<std::string> before = ListDir(dir.path());
  MergeJobOptions job = Options();
  job.dry_run = true;

  SECTION("one document") {
    const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
    auto report = RunMergeFile(recipe, dir.Join("out"), job);
    INFO(report.status().ToString());
    REQUIRE(report.ok());
    REQUIRE(report->documents.size() == 1);
    CHECK(report->documents[0].planned);
    CHECK_THAT(report->documents[0].plan_summary, Catch::Contains("task_arithmetic"));
    CHECK(report->documents[0].merge.n_tensors == 0);
    CHECK(report->documents[0].planned_tensors > 0);
    CHECK(report->documents[0].planned_bytes > 0);
    CHECK(report->documents[0].files.empty());
  }
  SECTION("several documents: later ones wait for their intermediates") {
    const std::string recipe = WriteRecipe(dir, "r.yaml", kMultiDoc);
    auto report = RunMergeFile(recipe, dir.Join("out"), job);
    INFO(report.status().ToString());
    REQUIRE(report.ok());
    REQUIRE(report->documents.size() == 3);
    CHECK(report->documents[0].planned);  // s1 reads only existing models
    CHECK_FALSE(report->documents[1].planned);
    CHECK_FALSE(report->documents[2].planned);
  }
  std::vector<std::string> after = ListDir(dir.path());
  after.erase(std::remove(after.begin(), after.end(), "r.yaml"), after.end());
  CHECK(after == before);
}

// Parameter errors that need no tensor data are found before anything is
// written, so a dry run reports them too: one case per method check.
TEST_CASE("merge job: a dry run reports the parameter errors a merge would hit",
          "[merge][job][errors]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  struct Case {
    const char* recipe;
    const char* message;
  };
  const Case cases[] = {
      {"merge_method: linear\nmodels:\n  - model: $D/m1\n    parameters: {weight: 0.5}\n"
       "  - model: $D/m2\n    parameters: {weight: -0.5}\n",
       "sum to 0"},
      {"merge_method: ties\nbase_model: $D/m1\nmodels:\n  - model: $D/m2\n"
       "    parameters: {weight: 1, density: 0.00001}\n",
       "keeps 0 of"},
      {"merge_method: della\nbase_model: $D/m1\nmodels:\n  - model: $D/m2\n"
       "    parameters: {weight: 1, density: 0.5, epsilon: 0.6}\n",
       "density +/- epsilon"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.recipe);
    const std::string recipe = WriteRecipe(dir, "r.yaml", c.recipe);
    for (bool dry : {true, false}) {
      MergeJobOptions job = Options();
      job.dry_run = dry;
      auto report = RunMergeFile(recipe, dir.Join("out"), job);
      REQUIRE_FALSE(report.ok());
      CHECK(report.status().code() == ErrorCode::kInvalidArgument);
      CHECK_THAT(report.status().message(), Catch::Contains(c.message));
      CHECK_FALSE(fs::exists(dir.Join("out")));
      CHECK_FALSE(HasPartialDir(dir.path()));
    }
  }
}

TEST_CASE("merge job: a revision on a local path is ignored with a warning", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(
      dir, "r.yaml",
      "merge_method: linear\nmodels:\n  - model: $D/m1@main\n    parameters: {weight: 1}\n"
      "  - model: $D/m2\n    parameters: {weight: 1}\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  bool warned = false;
  for (const std::string& w : report->warnings) {
    warned |= w.find("revision 'main' is ignored for the local path") != std::string::npos;
  }
  CHECK(warned);
}

TEST_CASE("merge job: override_architecture reaches the plan and config.json", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(
      dir, "r.yaml",
      "merge_method: linear\nmodels:\n"
      "  - model: {model: {path: $D/m1}, override_architecture: MistralForCausalLM}\n"
      "    parameters: {weight: 1}\n"
      "  - model: {model: {path: $D/m2}, override_architecture: MistralForCausalLM}\n"
      "    parameters: {weight: 1}\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(ReadJson(dir.Join("out/config.json"))["architectures"][0] == "MistralForCausalLM");
}

TEST_CASE("merge job: slices rewrite layer_types and max_window_layers", "[merge][job][slices]") {
  TempDir dir;
  for (int i = 0; i < 2; ++i) {
    examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kQwen2);
    spec.hidden_size = 16;
    spec.intermediate_size = 32;
    spec.vocab_size = 64;
    spec.num_layers = 4;
    spec.model_index = i;
    const std::string path = dir.Join("q" + std::to_string(i));
    REQUIRE(examples::WriteTinyModel(spec, path).ok());
    nlohmann::json config = ReadJson(path + "/config.json");
    REQUIRE(config["max_window_layers"] == 4);
    config["layer_types"] = {i ? "b0" : "a0", i ? "b1" : "a1", i ? "b2" : "a2", i ? "b3" : "a3"};
    WriteFileBytes(path + "/config.json", config.dump(2));
  }
  const std::string recipe = WriteRecipe(dir, "r.yaml",
                                         "merge_method: passthrough\nslices:\n"
                                         "  - sources:\n      - model: $D/q0\n        layer_range: [0, 3]\n"
                                         "  - sources:\n      - model: $D/q1\n        layer_range: [1, 4]\n");
  auto report = RunMergeFile(recipe, dir.Join("out"), Options());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  const nlohmann::json out = ReadJson(dir.Join("out/config.json"));
  CHECK(out["num_hidden_layers"] == 6);
  CHECK(out["max_window_layers"] == 6);
  CHECK(out["layer_types"] == nlohmann::json({"a0", "a1", "a2", "b1", "b2", "b3"}));
}

TEST_CASE("merge job: tokenizer pad_to_multiple_of is refused with its line", "[merge][job][errors]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(
      dir, "r.yaml",
      "merge_method: linear\nmodels:\n  - model: $D/m1\n    parameters: {weight: 1}\n"
      "  - model: $D/m2\n    parameters: {weight: 1}\ntokenizer:\n  source: base\n"
      "  pad_to_multiple_of: 64\n");
  for (bool dry : {true, false}) {
    MergeJobOptions job = Options();
    job.dry_run = dry;
    auto report = RunMergeFile(recipe, dir.Join("out"), job);
    REQUIRE_FALSE(report.ok());
    CHECK(report.status().code() == ErrorCode::kUnsupported);
    CHECK_THAT(report.status().message(), Catch::Contains("r.yaml:7") &&
                                              Catch::Contains("pad_to_multiple_of"));
    CHECK_FALSE(fs::exists(dir.Join("out")));
  }
}

TEST_CASE("merge job: the seed is recorded in the model card", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
  MergeJobOptions job = Options();
  job.execute.seed = 424242;
  REQUIRE(RunMergeFile(recipe, dir.Join("out"), job).ok());
  CHECK_THAT(ReadFileBytes(dir.Join("out/README.md")), Catch::Contains("random seed 424242"));
}

TEST_CASE("merge job: a small shard size writes shards and an index", "[merge][job]") {
  TempDir dir;
  Tiny(dir.Join("m1"), 0);
  Tiny(dir.Join("m2"), 1);
  const std::string recipe = WriteRecipe(dir, "r.yaml", kTaskArithmetic);
  REQUIRE(RunMergeFile(recipe, dir.Join("whole"), Options()).ok());
  MergeJobOptions job = Options();
  job.max_shard_bytes = 4096;
  auto report = RunMergeFile(recipe, dir.Join("sharded"), job);
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  const std::vector<std::string>& files = report->documents[0].files;
  CHECK(files == ListDir(dir.Join("sharded")));
  CHECK(std::count(files.begin(), files.end(), "model.safetensors.index.json") == 1);
  CHECK(std::count(files.begin(), files.end(), "model.safetensors") == 0);
  const auto n_shards = std::count_if(files.begin(), files.end(), [](const std::string& f) {
    return f.rfind("model-0", 0) == 0 && f.find(".safetensors") != std::string::npos;
  });
  CHECK(n_shards > 1);
  CHECK(LooksComplete(dir.Join("sharded")));
  const nlohmann::json index = ReadJson(dir.Join("sharded/model.safetensors.index.json"));
  const auto tensors = TensorBytes(dir.Join("whole"));
  CHECK(index["weight_map"].size() == tensors.size());
  std::set<std::string> used;
  for (const auto& [name, file] : index["weight_map"].items()) {
    CHECK(tensors.count(name) == 1);
    used.insert(file.get<std::string>());
  }
  CHECK(used.size() == static_cast<size_t>(n_shards));
  // Same tensors, same bytes, whatever the sharding.
  CHECK(TensorBytes(dir.Join("sharded")) == tensors);
}

}  // namespace
}  // namespace alloy::merge
