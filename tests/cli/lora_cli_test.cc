// `alloy lora inspect`: RunLoraInspect on a tiny adapter (table and JSON), its
// error paths, and the built binary's help.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cmd_lora.h"
#include "examples/tiny_models.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

using testing::TempDir;
using testing_support::Binary;
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

}  // namespace
}  // namespace alloy::cli
