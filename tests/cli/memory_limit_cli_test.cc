// --memory-limit (cli/memory_limit.h): bad values are refused, a merge runs
// within a small limit, and a job that needs more fails with exit code 3, a
// message naming the limit, and no output or temporaries left behind.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli/memory_limit.h"
#include "examples/tiny_models.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFileBytes;
using testing_support::Binary;
using testing_support::Q;
using testing_support::TinyLlama;


// One layer whose MLP matrices are 16384 x 1024: a ΔW of 64 MiB in float32.
std::string WideLlama(const TempDir& dir, const std::string& name, int index) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  spec.hidden_size = 1024;
  spec.intermediate_size = 16384;
  spec.num_layers = 1;
  spec.num_heads = 8;
  spec.num_kv_heads = 8;
  spec.model_index = index;
  REQUIRE(examples::WriteTinyModel(spec, dir.Join(name)).ok());
  return dir.Join(name);
}

// Files in `dir` whose name starts with `stem` (the output and its temporaries).
std::vector<std::string> EntriesStartingWith(const std::string& dir, const std::string& stem) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(stem, 0) == 0) names.push_back(n);
  }
  return names;
}

TEST_CASE("ParseMemoryLimit reads sizes and refuses nonsense", "[cli][memory]") {
  CHECK(**ParseMemoryLimit("8GiB") == (uint64_t{8} << 30));
  CHECK(**ParseMemoryLimit("512MiB") == (uint64_t{512} << 20));
  CHECK(**ParseMemoryLimit("1.5GB") == 1'500'000'000ULL);
  CHECK_FALSE(ParseMemoryLimit("none")->has_value());
  CHECK_FALSE(ParseMemoryLimit("0")->has_value());
  CHECK_FALSE(ParseMemoryLimit("OFF")->has_value());
  CHECK_THAT(ParseMemoryLimit("lots").status().message(), Catch::Contains("--memory-limit"));
  CHECK_THAT(ParseMemoryLimit("1MiB").status().message(),
             Catch::Contains("below the smallest usable limit of 64 MiB"));
}

TEST_CASE("a bad --memory-limit exits 2 before anything runs", "[cli][memory]") {
  TempDir dir;
  const std::string a = TinyLlama(dir, "a", 0);
  for (const char* value : {"lots", "1MiB", "-5"}) {
    INFO(value);
    const auto r = Binary("inspect --memory-limit " + std::string(value) + " " + Q(a), dir);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--memory-limit"));
  }
  ::setenv("ALLOY_MEMORY_LIMIT", "lots", 1);
  const auto env = Binary("inspect " + Q(a), dir);
  ::unsetenv("ALLOY_MEMORY_LIMIT");
  CHECK(env.code == 2);
  CHECK_THAT(env.err, Catch::Contains("--memory-limit"));
}

TEST_CASE("every command takes --memory-limit", "[cli][memory]") {
  TempDir dir;
  for (const char* cmd : {"merge", "moe", "upscale", "convert", "compare", "inspect",
                          "lora extract", "lora apply", "lora inspect", "tokenize"}) {
    INFO(cmd);
    const auto r = Binary(std::string(cmd) + " --help", dir);
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("--memory-limit"));
  }
}

TEST_CASE("a merge runs within a 128 MiB --memory-limit", "[cli][memory]") {
  if (testing_support::kSanitizedBuild) {
    WARN("skipped: sanitizer runtimes cannot run under RLIMIT_DATA");
    return;
  }
  TempDir dir;
  const std::string a = TinyLlama(dir, "a", 0);
  const std::string b = TinyLlama(dir, "b", 1);
  WriteFileBytes(dir.Join("r.yaml"), "merge_method: ties\nbase_model: " + a +
                                         "\nmodels:\n  - model: " + b +
                                         "\n    parameters: {weight: 1.0, density: 0.5}\n");
  const auto r = Binary("merge -q --memory-limit 128MiB " + Q(dir.Join("r.yaml")) + " " +
                            Q(dir.Join("out")),
                        dir);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(fs::exists(dir.Join("out/model.safetensors")));
}

TEST_CASE("a job past its --memory-limit exits 3 and leaves no output", "[cli][memory]") {
  if (testing_support::kSanitizedBuild) {
    WARN("skipped: sanitizer runtimes cannot run under RLIMIT_DATA");
    return;
  }
  TempDir dir;
  const std::string base = WideLlama(dir, "base", 0);
  const std::string ft = WideLlama(dir, "ft", 1);
  const std::string args = "lora extract -q --base " + Q(base) + " --model " + Q(ft) +
                           " --rank 8 --include down_proj ";
  const auto r = Binary(args + "--memory-limit 64MiB " + Q(dir.Join("adapter")), dir);
  INFO(r.err);
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Catch::Contains("the --memory-limit of 64 MiB was reached"));
  CHECK(EntriesStartingWith(dir.path(), "adapter").empty());
  // The same job with room to spare succeeds: the limit is what stopped it.
  const auto ok = Binary(args + "--memory-limit 1GiB " + Q(dir.Join("adapter")), dir);
  INFO(ok.err);
  CHECK(ok.code == 0);
  CHECK(fs::exists(dir.Join("adapter/adapter_model.safetensors")));
}

}  // namespace
}  // namespace alloy::cli
