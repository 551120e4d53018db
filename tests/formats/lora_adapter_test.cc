// Tests for formats/lora_adapter: what is read from adapter_config.json and
// the safetensors keys, and one test per refusal.
#include "formats/lora_adapter.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

using testing::FixtureTensor;
using testing::PatternTensor;
using testing::TempDir;

const char* const kQ = "base_model.model.model.layers.0.self_attn.q_proj";
const char* const kV = "base_model.model.model.layers.1.self_attn.v_proj";

// The factors of one module of rank `r` (in 6, out 5), F32.
std::vector<FixtureTensor> Module(const std::string& key, int64_t r) {
  return {PatternTensor(key + ".lora_A.weight", DType::kF32, {r, 6}, 1),
          PatternTensor(key + ".lora_B.weight", DType::kF32, {5, r}, 2)};
}

// Writes an adapter directory: `config` as adapter_config.json, `tensors` as
// adapter_model.safetensors.
std::string Adapter(const TempDir& dir, const std::string& config,
                    const std::vector<FixtureTensor>& tensors) {
  const std::string path = dir.Join("adapter");
  testing::WriteFileBytes(path + "/adapter_config.json", config);
  testing::WriteSafetensorsFixture(path + "/adapter_model.safetensors", tensors);
  return path;
}

std::vector<FixtureTensor> Join(std::vector<FixtureTensor> a, const std::vector<FixtureTensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void ExpectError(const Result<std::unique_ptr<LoraAdapter>>& r, ErrorCode code,
                 const std::string& needle) {
  REQUIRE_FALSE(r.ok());
  INFO(r.status().ToString());
  CHECK(r.status().code() == code);
  CHECK_THAT(r.status().message(), Catch::Contains(needle));
}

TEST_CASE("lora adapter: modules, ranks and scales", "[formats][lora]") {
  TempDir dir;
  const std::string path = Adapter(
      dir,
      R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "base_model_name_or_path": "org/base",
          "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"layers.1.self_attn.v_proj": 6,
          "v_proj": 100}, "some_future_field": {"x": 1}})",
      Join(Join(Module(kQ, 4), Module(kV, 2)),
           {PatternTensor("base_model.model.lm_head.weight", DType::kF32, {7, 6}, 3),
            PatternTensor(std::string(kQ) + ".lora_B.bias", DType::kF32, {5}, 4)}));
  auto adapter = LoraAdapter::Open(path);
  INFO(adapter.status().ToString());
  REQUIRE(adapter.ok());
  const auto& deltas = (*adapter)->deltas();
  REQUIRE(deltas.size() == 3);
  CHECK(deltas[0].base_name == "model.layers.0.self_attn.q_proj.weight");
  CHECK(deltas[0].kind == LoraKind::kLinear);
  CHECK(deltas[0].rank == 4);
  CHECK(deltas[0].scale == 2.0);
  CHECK(deltas[1].base_name == "model.layers.0.self_attn.q_proj.bias");
  CHECK(deltas[1].kind == LoraKind::kBias);
  CHECK(deltas[1].scale == 2.0);
  CHECK(deltas[2].base_name == "model.layers.1.self_attn.v_proj.weight");
  CHECK(deltas[2].rank == 2);
  CHECK(deltas[2].scale == 3.0);  // the first matching alpha_pattern key wins: 6 / 2
  REQUIRE((*adapter)->replacements().size() == 1);
  CHECK((*adapter)->replacements().count("lm_head.weight") == 1);
  CHECK((*adapter)->base_model() == "org/base");
}

TEST_CASE("lora adapter: rsLoRA, fan_in_fan_out and embeddings", "[formats][lora]") {
  TempDir dir;
  const std::string emb = "base_model.model.model.embed_tokens";
  const std::string path = Adapter(
      dir, R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true,
               "fan_in_fan_out": true})",
      Join(Module(kQ, 4), {PatternTensor(emb + ".lora_embedding_A", DType::kBF16, {4, 9}, 5),
                           PatternTensor(emb + ".lora_embedding_B", DType::kBF16, {3, 4}, 6)}));
  auto adapter = LoraAdapter::Open(path);
  INFO(adapter.status().ToString());
  REQUIRE(adapter.ok());
  const auto& deltas = (*adapter)->deltas();
  REQUIRE(deltas.size() == 2);
  CHECK(deltas[0].kind == LoraKind::kTransposed);  // fan_in_fan_out
  CHECK(deltas[0].scale == 4.0);                   // 8 / sqrt(4)
  CHECK(deltas[1].base_name == "model.embed_tokens.weight");
  CHECK(deltas[1].kind == LoraKind::kTransposed);
}

TEST_CASE("lora adapter: refusals", "[formats][lora][errors]") {
  TempDir dir;
  const std::string ok_config = R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})";
  SECTION("no adapter_config.json") {
    ExpectError(LoraAdapter::Open(dir.path()), ErrorCode::kNotFound, "no adapter_config.json");
  }
  SECTION("peft_type missing") {
    ExpectError(LoraAdapter::Open(Adapter(dir, R"({"r": 4})", Module(kQ, 4))),
                ErrorCode::kCorrupt, "`peft_type` is missing");
  }
  SECTION("another PEFT type") {
    ExpectError(LoraAdapter::Open(Adapter(dir, R"({"peft_type": "IA3"})", Module(kQ, 4))),
                ErrorCode::kUnsupported, "peft_type 'IA3' is not LoRA");
  }
  SECTION("DoRA") {
    ExpectError(LoraAdapter::Open(Adapter(
                    dir, R"({"peft_type": "LORA", "r": 4, "use_dora": true})", Module(kQ, 4))),
                ErrorCode::kUnsupported, "DoRA");
  }
  SECTION("a DoRA magnitude without use_dora") {
    ExpectError(LoraAdapter::Open(Adapter(
                    dir, ok_config,
                    Join(Module(kQ, 4), {PatternTensor(std::string(kQ) + ".lora_magnitude_vector",
                                                       DType::kF32, {5}, 7)}))),
                ErrorCode::kUnsupported, "DoRA magnitude");
  }
  SECTION("an initialisation that changed the base") {
    ExpectError(
        LoraAdapter::Open(Adapter(
            dir, R"({"peft_type": "LORA", "r": 4, "init_lora_weights": "pissa_niter_4"})",
            Module(kQ, 4))),
        ErrorCode::kUnsupported, "init_lora_weights 'pissa_niter_4'");
  }
  SECTION("layer_replication") {
    ExpectError(LoraAdapter::Open(Adapter(
                    dir, R"({"peft_type": "LORA", "r": 4, "layer_replication": [[0, 2]]})",
                    Module(kQ, 4))),
                ErrorCode::kUnsupported, "layer_replication");
  }
  SECTION("only adapter_model.bin") {
    testing::WriteFileBytes(dir.Join("bin/adapter_config.json"), ok_config);
    testing::WriteFileBytes(dir.Join("bin/adapter_model.bin"), "PK");
    ExpectError(LoraAdapter::Open(dir.Join("bin")), ErrorCode::kUnsupported,
                "adapter_model.bin");
  }
  SECTION("lora_A without lora_B") {
    ExpectError(LoraAdapter::Open(Adapter(dir, ok_config, {Module(kQ, 4)[0]})),
                ErrorCode::kCorrupt, "lora_A without lora_B");
  }
  SECTION("ranks of A and B disagree") {
    ExpectError(LoraAdapter::Open(Adapter(dir, ok_config,
                                          {Module(kQ, 4)[0], Module(kQ, 3)[1]})),
                ErrorCode::kCorrupt, "are not [r, in] and [out, r] of one rank r");
  }
  SECTION("the factors' rank is not the config's") {
    ExpectError(LoraAdapter::Open(Adapter(dir, ok_config, Module(kQ, 2))), ErrorCode::kCorrupt,
                "lora_A has rank 2 but adapter_config.json says r = 4");
  }
  SECTION("a key outside base_model.model.") {
    ExpectError(LoraAdapter::Open(Adapter(
                    dir, ok_config, {PatternTensor("model.x.lora_A.weight", DType::kF32, {4, 6}, 1)})),
                ErrorCode::kCorrupt, "is not under `base_model.model.`");
  }
  SECTION("an integer factor") {
    ExpectError(LoraAdapter::Open(Adapter(
                    dir, ok_config,
                    {PatternTensor(std::string(kQ) + ".lora_A.weight", DType::kI32, {4, 6}, 1),
                     Module(kQ, 4)[1]})),
                ErrorCode::kCorrupt, "LoRA factors are floats");
  }
  SECTION("a broken rank_pattern regex") {
    ExpectError(LoraAdapter::Open(Adapter(
                    dir, R"({"peft_type": "LORA", "r": 4, "rank_pattern": {"(": 2}})",
                    Module(kQ, 4))),
                ErrorCode::kCorrupt, "is not a valid regex");
  }
  SECTION("rank_pattern regexes that could take exponential time") {
    // The first is what lora_config_fuzz found (minutes in std::regex).
    for (const char* key :
         {R"(q_pro0.self_attnqv||||||||$||||mo....*+....du|||_proj)", R"((a+)+b)", R"((a|aa)*)",
          R"(v_proj|)", R"(a**)"}) {
      INFO(key);
      nlohmann::json config = {{"peft_type", "LORA"}, {"r", 4}, {"rank_pattern", {{key, 2}}}};
      ExpectError(LoraAdapter::Open(Adapter(dir, config.dump(), Module(kQ, 4))),
                  ErrorCode::kUnsupported, "could take exponential time");
    }
    // Ordinary keys still work.
    for (const char* key : {"v_proj", R"(layers\.1\.self_attn\.(q|v)_proj)", R"(layers\.[0-9]+\.mlp)",
                            R"(q_proj.*)"}) {
      INFO(key);
      nlohmann::json config = {{"peft_type", "LORA"}, {"r", 4}, {"rank_pattern", {{key, 4}}}};
      CHECK(LoraAdapter::Open(Adapter(dir, config.dump(), Module(kQ, 4))).ok());
    }
  }
  SECTION("invalid JSON") {
    ExpectError(LoraAdapter::Open(Adapter(dir, R"({"peft_type": "LORA",)", Module(kQ, 4))),
                ErrorCode::kCorrupt, "invalid JSON");
  }
}

}  // namespace
}  // namespace alloy::formats
