// Tests for merge/lora_io: an adapter written by WriteLoraAdapter loads back
// through formats::LoraAdapter with the same factors, kinds, ranks (through
// rank_pattern), scale 1, biases and saved tensors; and its refusals.
#include "merge/lora_io.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::ErrorCode;
using testing::TempDir;

ModuleFactors Module(std::string name, bool embedding, int64_t rank, int64_t in, int64_t out,
                     double seed) {
  ModuleFactors m;
  m.module = std::move(name);
  m.embedding = embedding;
  m.rank = rank;
  m.in = in;
  m.out = out;
  for (int64_t i = 0; i < rank * in; ++i) m.a.push_back(seed + 0.25 * static_cast<double>(i));
  for (int64_t i = 0; i < out * rank; ++i) m.b.push_back(-seed + 0.5 * static_cast<double>(i));
  return m;
}

TEST_CASE("an adapter alloy writes loads back with the same factors", "[merge][lora_io]") {
  TempDir dir;
  const examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  auto base = formats::OpenModel(dir.Join("base"));
  REQUIRE(base.ok());
  const formats::TensorInfo* norm = (*base)->Find("model.norm.weight");
  REQUIRE(norm != nullptr);

  AdapterContents c;
  c.base_model = "org/base";
  c.modules.push_back(Module("model.layers.0.self_attn.q_proj", false, 4, 6, 5, 1));
  c.modules.push_back(Module("model.layers.1.self_attn.v_proj", false, 2, 6, 3, 2));
  c.modules.push_back(Module("model.embed_tokens", true, 3, 10, 6, 3));
  c.biases.emplace_back("model.layers.0.self_attn.q_proj", std::vector<double>{1, 2, 3, 4, 5});
  c.saved.push_back(SavedTensor{"model.norm.weight", base->get(), norm});
  const std::string out = dir.Join("adapter");
  auto report = WriteLoraAdapter(out, c, WriteAdapterOptions{false, false, "# card\n"});
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->max_rank == 4);
  CHECK(report->n_modules == 3);
  CHECK(std::filesystem::exists(out + "/README.md"));

  auto a = formats::LoraAdapter::Open(out);
  INFO(a.status().ToString());
  REQUIRE(a.ok());
  CHECK((*a)->base_model() == "org/base");
  CHECK((*a)->default_rank() == 4);
  CHECK((*a)->default_alpha() == 4);
  const auto& deltas = (*a)->deltas();
  REQUIRE(deltas.size() == 4);  // three modules and one bias
  size_t checked = 0;
  for (const formats::LoraDelta& d : deltas) {
    CHECK(d.scale == 1.0);
    if (d.kind == formats::LoraKind::kBias) {
      CHECK(d.base_name == "model.layers.0.self_attn.q_proj.bias");
      continue;
    }
    const ModuleFactors* want = nullptr;
    for (const ModuleFactors& m : c.modules) {
      if (m.module == d.module) want = &m;
    }
    REQUIRE(want != nullptr);
    CHECK(d.rank == want->rank);
    CHECK(d.embedding == want->embedding);
    CHECK(d.kind == (want->embedding ? formats::LoraKind::kTransposed
                                     : formats::LoraKind::kLinear));
    auto f = ReadScaledFactors(**a, d);
    REQUIRE(f.ok());
    CHECK(f->a == want->a);  // small integers and quarters: exact in float32
    CHECK(f->b == want->b);
    ++checked;
  }
  CHECK(checked == 3);
  REQUIRE((*a)->replacements().count("model.norm.weight") == 1);

  std::ifstream in(out + "/adapter_config.json");
  const nlohmann::json config = nlohmann::json::parse(in);
  CHECK(config["lora_bias"] == true);
  CHECK(config["modules_to_save"] == nlohmann::json({"model.norm"}));
  CHECK(config["rank_pattern"].size() == 2);
  CHECK(config["alpha_pattern"]["model.embed_tokens"] == 3);
}

TEST_CASE("WriteLoraAdapter refuses inconsistent contents", "[merge][lora_io]") {
  TempDir dir;
  AdapterContents c;
  SECTION("nothing to write") {
    CHECK(WriteLoraAdapter(dir.Join("a"), c, {}).status().code() == ErrorCode::kInvalidArgument);
  }
  SECTION("factors that do not match the rank") {
    ModuleFactors m = Module("m.q_proj", false, 2, 3, 4, 1);
    m.a.pop_back();
    c.modules.push_back(m);
    auto r = WriteLoraAdapter(dir.Join("a"), c, {});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("m.q_proj") != std::string::npos);
  }
  SECTION("the same module twice") {
    c.modules.push_back(Module("m.q_proj", false, 2, 3, 4, 1));
    c.modules.push_back(Module("m.q_proj", false, 2, 3, 4, 1));
    auto r = WriteLoraAdapter(dir.Join("a"), c, {});
    CHECK(r.status().message().find("two adapter tensors") != std::string::npos);
  }
  SECTION("float16 factors that overflow") {
    c.dtype = DType::kF16;
    ModuleFactors m = Module("m.q_proj", false, 1, 2, 2, 1);
    m.a[0] = 1e6;
    c.modules.push_back(m);
    auto r = WriteLoraAdapter(dir.Join("a"), c, {});
    CHECK(r.status().message().find("overflow") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.Join("a")));
  }
}

}  // namespace
}  // namespace alloy::merge
