// GGUF through the built binary: `alloy convert` both ways (and its errors),
// `alloy inspect` of a GGUF file, `alloy merge` of GGUF inputs, and a
// malformed GGUF file refused with exit code 2 naming the file and byte.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

using testing::TempDir;
using testing_support::Binary;
using testing_support::Q;
using testing_support::Run;

std::string Tiny(const TempDir& dir, const std::string& name, int index) {
  examples::TinyModelSpec spec;
  spec.dtype = formats::DType::kF32;
  spec.model_index = index;
  const std::string out = dir.Join(name);
  REQUIRE(examples::WriteTinyModel(spec, out).ok());
  return out;
}

TEST_CASE("alloy convert writes GGUF and reads it back", "[cli][gguf]") {
  TempDir dir;
  const std::string base = Tiny(dir, "base", 0);
  Run r = Binary("convert " + Q(base) + " " + Q(dir.Join("m.gguf")) + " --dtype q8_0", dir);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("wrote"));
  CHECK(formats::IsRegularFile(dir.Join("m.gguf")));

  r = Binary("inspect " + Q(dir.Join("m.gguf")) + " --json --tensors", dir);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["architecture"] == "LlamaForCausalLM");
  CHECK(j["layers"]["config"] == 2);
  CHECK(j["gguf"]["metadata"]["general.architecture"] == "llama");
  CHECK(j["gguf"]["stored_types"].contains("Q8_0"));
  CHECK(j["tensors"][0]["stored_type"].is_string());

  r = Binary("inspect " + Q(dir.Join("m.gguf")), dir);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("stored Q8_0"));

  r = Binary("convert " + Q(dir.Join("m.gguf")) + " " + Q(dir.Join("back")) + " --dtype bf16", dir);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Catch::Contains("vocabulary is not converted"));
  CHECK(formats::IsRegularFile(dir.Join("back/config.json")));
  CHECK(formats::IsRegularFile(dir.Join("back/model.safetensors")));

  // An existing output needs --overwrite.
  r = Binary("convert " + Q(base) + " " + Q(dir.Join("m.gguf")) + " --dtype f16", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--overwrite"));
  // Quantized types only go to GGUF.
  r = Binary("convert " + Q(base) + " " + Q(dir.Join("q8dir")) + " --dtype q8_0", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("ending in .gguf"));
}

TEST_CASE("alloy merge of GGUF inputs writes a GGUF file", "[cli][gguf]") {
  TempDir dir;
  Tiny(dir, "base", 0);
  Tiny(dir, "ft1", 1);
  for (const std::string m : {"base", "ft1"}) {
    REQUIRE(Binary("convert " + Q(dir.Join(m)) + " " + Q(dir.Join(m + ".gguf")) + " --dtype f16",
                   dir)
                .code == 0);
  }
  testing::WriteFileBytes(dir.Join("r.yml"), "merge_method: slerp\nbase_model: " +
                                                 dir.Join("base.gguf") + "\nmodels:\n  - model: " +
                                                 dir.Join("base.gguf") + "\n  - model: " +
                                                 dir.Join("ft1.gguf") + "\nparameters: {t: 0.5}\n");
  Run r = Binary("merge " + Q(dir.Join("r.yml")) + " " + Q(dir.Join("out.gguf")), dir);
  INFO(r.err);
  REQUIRE(r.code == 0);
  r = Binary("inspect " + Q(dir.Join("out.gguf")) + " --json", dir);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["gguf"]["stored_types"].contains("F16"));
  CHECK(j["gguf"]["metadata"].contains("general.source.alloy_recipe"));
}

TEST_CASE("a truncated GGUF file exits 2 naming the file and the byte", "[cli][gguf][malformed]") {
  TempDir dir;
  Tiny(dir, "base", 0);
  REQUIRE(Binary("convert " + Q(dir.Join("base")) + " " + Q(dir.Join("m.gguf")) + " --dtype f32",
                 dir)
              .code == 0);
  const std::string bytes = testing::ReadFileBytes(dir.Join("m.gguf"));
  testing::WriteFileBytes(dir.Join("cut.gguf"), bytes.substr(0, 300));
  Run r = Binary("inspect " + Q(dir.Join("cut.gguf")), dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("cut.gguf") && Catch::Contains("byte"));
  testing::WriteFileBytes(dir.Join("short.gguf"), bytes.substr(0, bytes.size() - 100));
  r = Binary("convert " + Q(dir.Join("short.gguf")) + " " + Q(dir.Join("o")) + " --dtype f32", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("not within the file"));
  CHECK_FALSE(formats::IsDirectory(dir.Join("o")));
}

}  // namespace
}  // namespace alloy::cli
