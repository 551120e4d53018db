// CLI tests: Run* called directly with option structs, and the built binary
// run as a user would (exit codes, messages).
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cmd_convert.h"
#include "cli/cmd_inspect.h"
#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "tests/testing/safetensors_builder.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

using testing::TempDir;

using testing_support::Binary;
using testing_support::Run;

Run Inspect(InspectOptions options) { return testing_support::RunCommand(RunInspect, options); }
Run Convert(ConvertCmdOptions options) { return testing_support::RunCommand(RunConvert, options); }

std::string WriteTiny(const TempDir& dir, examples::Family family, const std::string& name) {
  auto spec = examples::TinyModelPreset("tiny", family);
  REQUIRE(spec.has_value());
  REQUIRE(examples::WriteTinyModel(*spec, dir.Join(name)).ok());
  return dir.Join(name);
}

TEST_CASE("inspect describes a model", "[cli][inspect]") {
  TempDir dir;
  const std::string model = WriteTiny(dir, examples::Family::kQwen2, "qwen");
  Run r = Inspect({model, false, false, false});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("Qwen2ForCausalLM") && Catch::Contains("layers:       2") &&
                        Catch::Contains("tokenizer.json"));
  r = Inspect({model, true, true, false});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("model.layers.1.self_attn.q_proj.bias") &&
                        Catch::Contains("QLoRA") && Catch::Contains("16 B"));
}

TEST_CASE("inspect --json parameter count is the sum of shape products", "[cli][inspect]") {
  TempDir dir;
  const std::string model = WriteTiny(dir, examples::Family::kGemma, "gemma");
  Run r = Inspect({model, true, true, true});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  uint64_t params = 0;
  for (const auto& t : j["tensors"]) {
    uint64_t n = 1;
    for (const auto& d : t["shape"]) n *= d.get<uint64_t>();
    params += n;
  }
  CHECK(j["parameters"].get<uint64_t>() == params);
  CHECK(j["tensor_count"].get<size_t>() == j["tensors"].size());
  CHECK(j["tied_embeddings"] == true);
  CHECK(j["layers"]["detected"] == 2);
  REQUIRE(j["memory"].is_array());
  for (const auto& row : j["memory"]) {
    if (row["scenario"] == "inference weights" && row["setting"] == "bf16") {
      CHECK(row["bytes"].get<double>() == Approx(2.0 * static_cast<double>(params)));
    }
  }
}

TEST_CASE("inspect lists the weights of an fp8 block-scaled model as F32 without scale tensors",
          "[cli][inspect][fp8]") {
  TempDir dir;
  const std::string m = dir.Join("fp8");
  testing::WriteFileBytes(m + "/config.json",
                          R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                              "quantization_config": {"quant_method": "fp8",
                                                      "weight_block_size": [128, 128]}})");
  testing::SafetensorsBuilder b;
  b.Add("model.layers.0.mlp.up_proj.weight", "F8_E4M3", {4, 3}, std::string(12, '\x38'));
  b.Add("model.layers.0.mlp.up_proj.weight_scale_inv", "F32", {1, 1},
        testing::F32Bytes({0.25f}));
  b.Add("model.norm.weight", "F32", {3}, testing::F32Bytes({1.0f, 1.0f, 1.0f}));
  testing::WriteFileBytes(m + "/model.safetensors", b.Build());
  Run r = Inspect({m, true, false, true});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["tensors"].size() == 2);
  for (const auto& t : j["tensors"]) {
    CHECK(t["dtype"] == "F32");
    CHECK(t["name"].get<std::string>().find("_scale_inv") == std::string::npos);
  }
  CHECK(j["tensors"][0]["name"] == "model.layers.0.mlp.up_proj.weight");
  CHECK(j["tensors"][0]["bytes"] == 48);
  r = Binary("inspect --tensors " + testing_support::Q(m), dir);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("model.layers.0.mlp.up_proj.weight  F32  [4, 3]") &&
                        !Catch::Contains("scale_inv") && !Catch::Contains("F8_E4M3"));
}

TEST_CASE("every malformed safetensors case exits 2 with its reason", "[cli][malformed]") {
  TempDir dir;
  const auto cases = testing::MalformedSafetensorsCases();
  REQUIRE(cases.size() >= 40);
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.id) {
      const std::string path = dir.Join(c.id + ".safetensors");
      testing::WriteFileBytes(path, c.bytes);
      Run direct = Inspect({path, false, false, false});
      CHECK(direct.code == 2);
      CHECK_THAT(direct.err, Catch::Contains(c.expected_substring));
      CHECK_THAT(direct.err, Catch::Contains(path));
      Run bin = Binary("inspect " + path, dir);
      CHECK(bin.code == 2);
      CHECK_THAT(bin.err, Catch::Contains(c.expected_substring));
    }
  }
}

TEST_CASE("a missing model exits 2 and says where it looked", "[cli][errors]") {
  TempDir dir;
  Run r = Inspect({"no-such-org/no-such-model", false, false, false});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("no-such-org/no-such-model"));
}

TEST_CASE("inspect and convert resolve org/name@revision from the hub cache", "[cli][hub]") {
  TempDir dir;
  const std::string sha = "0123456789abcdef0123456789abcdef01234567";
  const std::string repo = dir.Join("hub/models--acme--tiny-llama");
  WriteTiny(dir, examples::Family::kLlama, "hub/models--acme--tiny-llama/snapshots/" + sha);
  testing::WriteFileBytes(repo + "/refs/main", sha);
  testing::WriteFileBytes(repo + "/refs/v1", sha + "\n");
  ::setenv("HF_HUB_CACHE", dir.Join("hub").c_str(), 1);
  Run r = Inspect({"acme/tiny-llama", false, false, false});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("LlamaForCausalLM"));
  r = Inspect({"acme/tiny-llama@v1", false, false, false});
  CHECK(r.code == 0);
  ConvertCmdOptions convert;
  convert.input = "acme/tiny-llama@" + sha;
  convert.output = dir.Join("out");
  convert.dtype = "f32";
  convert.quiet = true;
  CHECK(Convert(convert).code == 0);
  r = Inspect({"acme/tiny-llama@v2", false, false, false});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("v2"));
  ::unsetenv("HF_HUB_CACHE");
}

TEST_CASE("a malicious shard path in an index exits 2", "[cli][errors]") {
  TempDir dir;
  testing::WriteFileBytes(dir.Join("m/model.safetensors.index.json"),
                          R"({"metadata":{},"weight_map":{"w":"../x.safetensors"}})");
  Run r = Inspect({dir.Join("m"), false, false, false});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("invalid shard path"));
}

TEST_CASE("convert: success, bad dtype, existing output, I/O failure", "[cli][convert]") {
  TempDir dir;
  const std::string model = WriteTiny(dir, examples::Family::kLlama, "llama");
  ConvertCmdOptions ok;
  ok.input = model;
  ok.output = dir.Join("f16");
  ok.dtype = "float16";
  ok.shard_size = "20KB";
  ok.json = true;
  Run r = Convert(ok);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["dtype"] == "F16");
  CHECK(j["tensors"].get<int>() > 0);
  CHECK(formats::IsRegularFile(dir.Join("f16/model.safetensors.index.json")));
  Run back = Inspect({dir.Join("f16"), false, false, true});
  REQUIRE(back.code == 0);
  CHECK(nlohmann::json::parse(back.out)["dtypes"].contains("F16"));

  SECTION("unknown dtype") {
    ConvertCmdOptions bad = ok;
    bad.output = dir.Join("x");
    bad.dtype = "int3";
    r = Convert(bad);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--dtype 'int3'"));
  }
  SECTION("bad shard size") {
    ConvertCmdOptions bad = ok;
    bad.output = dir.Join("x");
    bad.shard_size = "lots";
    r = Convert(bad);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--out-shard-size"));
  }
  SECTION("existing output") {
    r = Convert(ok);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--overwrite"));
  }
  SECTION("output below a regular file is an I/O failure") {
    testing::WriteFileBytes(dir.Join("plainfile"), "x");
    ConvertCmdOptions bad = ok;
    bad.output = dir.Join("plainfile/out");
    r = Convert(bad);
    CHECK(r.code == 3);
  }
}

TEST_CASE("the binary: --version, --help, per-command help, bad arguments", "[cli][binary]") {
  TempDir dir;
  Run r = Binary("--version", dir);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("alloy " ALLOY_VERSION));
  r = Binary("--help", dir);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("inspect") && Catch::Contains("convert"));
  r = Binary("convert --help", dir);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("Examples:") && Catch::Contains("--out-shard-size"));
  r = Binary("inspect --help", dir);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("--memory"));
  r = Binary("", dir);
  CHECK(r.code == 2);
  r = Binary("frobnicate", dir);
  CHECK(r.code == 2);
  r = Binary("convert a b", dir);  // --dtype missing
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--dtype"));
}

}  // namespace
}  // namespace alloy::cli
