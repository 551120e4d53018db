// `alloy lora ...` on a tiny model and adapter: inspect (table and JSON),
// apply, concat, combine and extract through their Run* functions and the
// built binary, their error paths and help.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cmd_lora.h"
#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

using testing::TempDir;
using testing_support::Binary;
using testing_support::TensorBytes;
using testing_support::Run;

Run Inspect(const LoraCmdOptions& options) {
  return testing_support::RunCommand(RunLoraInspect, options);
}

void TinyAdapter(const TempDir& dir) {
  const examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  examples::TinyLoraSpec lora;
  REQUIRE(examples::WriteTinyLoraAdapter(spec, lora, dir.Join("adapter")).ok());
}

TEST_CASE("lora inspect prints one row per module", "[cli][lora]") {
  TempDir dir;
  TinyAdapter(dir);
  LoraCmdOptions o;
  o.adapter = dir.Join("adapter");
  o.base = dir.Join("base");
  const Run r = Inspect(o);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("r 4, lora_alpha 8, scale alpha/r") != std::string::npos);
  CHECK(r.out.find("model.layers.1.self_attn.v_proj [32, 64]") != std::string::npos);
  CHECK(r.out.find("|dW|/|W|") != std::string::npos);
  CHECK(r.out.find("4 modules; mean effective rank") != std::string::npos);
}

TEST_CASE("lora inspect --json holds every singular value", "[cli][lora]") {
  TempDir dir;
  TinyAdapter(dir);
  LoraCmdOptions o;
  o.adapter = dir.Join("adapter");
  o.json = true;
  o.top_k = 2;
  const Run r = Inspect(o);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["r"] == 4);
  CHECK(j["top_k"] == 2);
  REQUIRE(j["modules"].size() == 4);
  CHECK(j["modules"][0]["singular_values"].size() == 4);
  CHECK(j["modules"][0]["energy_top_k"].get<double>() < 1.0);
  CHECK_FALSE(j["modules"][0].contains("base_frobenius"));
}

TEST_CASE("lora inspect refuses a missing adapter with exit code 2", "[cli][lora]") {
  TempDir dir;
  LoraCmdOptions o;
  o.adapter = dir.Join("nothing");
  const Run r = Inspect(o);
  CHECK(r.code == 2);
  CHECK(r.err.find("adapter_config.json") != std::string::npos);
  const Run help = Binary("lora inspect --help", dir);
  CHECK(help.code == 0);
  CHECK(help.out.find("--top-k") != std::string::npos);
  const Run bare = Binary("lora", dir);  // a subcommand is required
  CHECK(bare.code == 2);
}


TEST_CASE("lora apply writes the merged model and --scale 0 gives the base back", "[cli][lora]") {
  TempDir dir;
  TinyAdapter(dir);
  LoraCmdOptions o;
  o.apply_base = dir.Join("base");
  o.adapter = dir.Join("adapter");
  o.output = dir.Join("merged");
  o.quiet = true;
  REQUIRE(testing_support::RunCommand(RunLoraApply, o).code == 0);
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  CHECK(TensorBytes(o.output, q) != TensorBytes(o.apply_base, q));
  o.output = dir.Join("zero");
  o.scale = 0;
  o.json = true;
  const Run r = testing_support::RunCommand(RunLoraApply, o);
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)["scale"] == 0.0);
  CHECK(TensorBytes(o.output, q) == TensorBytes(o.apply_base, q));
  // An existing output is refused without --overwrite.
  o.json = false;
  CHECK(testing_support::RunCommand(RunLoraApply, o).code == 2);
  o.adapter = dir.Join("missing");
  o.output = dir.Join("other");
  const Run bad = testing_support::RunCommand(RunLoraApply, o);
  CHECK(bad.code == 2);
  CHECK(bad.err.find("missing") != std::string::npos);
}

TEST_CASE("lora concat combine and extract through the binary", "[cli][lora]") {
  TempDir dir;
  TinyAdapter(dir);
  const std::string a = dir.Join("adapter");
  Run r = Binary("lora concat " + dir.Join("cat") + " " + a + " " + a + " --weights 1 0.5", dir);
  CHECK(r.code == 0);
  CHECK(r.out.find("4 LoRA modules (r = 8)") != std::string::npos);
  r = Binary("lora combine " + dir.Join("svd") + " " + a + " --method svd --rank 2 --json", dir);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["r"] == 2);
  CHECK(j["modules"][0]["kept_energy"].get<double>() < 1.0);
  r = Binary("lora apply " + dir.Join("base") + " " + a + " " + dir.Join("ft") + " -q", dir);
  REQUIRE(r.code == 0);
  r = Binary("lora extract --base " + dir.Join("base") + " --model " + dir.Join("ft") + " " +
                 dir.Join("x") + " --rank 4",
             dir);
  CHECK(r.code == 0);
  CHECK(r.out.find("wrote " + dir.Join("x") + ": 4 LoRA modules (r = 4)") != std::string::npos);
  CHECK(r.out.find("99.99%") != std::string::npos);
}

TEST_CASE("lora build commands refuse bad arguments with exit code 2", "[cli][lora]") {
  TempDir dir;
  TinyAdapter(dir);
  const std::string a = dir.Join("adapter");
  Run r = Binary("lora combine " + dir.Join("t") + " " + a + " --method ties --rank 2", dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("needs --density") != std::string::npos);
  r = Binary("lora combine " + dir.Join("t") + " " + a + " " + a +
                 " --method ties --rank 2 --density 0.4 --weights 1 1",
             dir);
  CHECK(r.code == 0);
  r = Binary("lora concat " + dir.Join("c") + " " + a + " --dtype int8", dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("--dtype 'int8'") != std::string::npos);
  r = Binary("lora extract --base " + dir.Join("base") + " --model " + dir.Join("base") + " " +
                 dir.Join("x") + " --rank 4",
             dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("nothing to extract") != std::string::npos);
  r = Binary("lora combine " + dir.Join("t") + " " + a + " --method svd", dir);  // --rank missing
  CHECK(r.code == 2);
  for (const char* cmd : {"apply", "concat", "combine", "extract"}) {
    const Run help = Binary(std::string("lora ") + cmd + " --help", dir);
    CHECK(help.code == 0);
    CHECK(help.out.find("Exit codes") != std::string::npos);
  }
}

}  // namespace
}  // namespace alloy::cli
