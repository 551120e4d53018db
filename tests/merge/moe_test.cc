// Tests for merge/moe (`alloy moe`, `alloy upcycle`): experts are the
// source models' MLPs byte for byte, layouts hold the same numbers, routers
// have the right shapes and laws, each architecture's names and config
// fields, a tied-embedding base, and one test per refusal.
#include "merge/moe.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "merge/codec.h"
#include "formats/file_util.h"
#include "tests/merge/corpus_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::ErrorCode;
using testing::TempDir;

struct Model {
  std::map<std::string, std::string> bytes;  // raw tensor bytes
  std::map<std::string, formats::TensorInfo> infos;
  nlohmann::json config;
};

Model Load(const std::string& dir) {
  auto src = formats::OpenModel(dir);
  REQUIRE(src.ok());
  Model m;
  for (const formats::TensorInfo& t : (*src)->tensors()) {
    std::string b(t.nbytes, '\0');
    REQUIRE((*src)->Read(t, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(b.data()), b.size()))
                .ok());
    m.bytes[t.name] = b;
    m.infos[t.name] = t;
  }
  std::ifstream in(dir + "/config.json");
  m.config = nlohmann::json::parse(in);
  return m;
}

std::vector<float> Floats(const Model& m, const std::string& name) {
  const formats::TensorInfo& t = m.infos.at(name);
  std::vector<float> v(t.numel());
  const std::string& b = m.bytes.at(name);
  DecodeToF32(t.dtype, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()),
              v);
  return v;
}

examples::TinyModelSpec Spec(examples::Family family = examples::Family::kLlama) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", family);
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.vocab_size = 40;
  return spec;
}

struct Fixture {
  TempDir dir;
  examples::TinyModelSpec spec = Spec();
  std::string base = dir.Join("base"), ft1 = dir.Join("ft1"), ft2 = dir.Join("ft2");
  Fixture() {
    REQUIRE(examples::WriteTinyModel(spec, base).ok());
    examples::TinyModelSpec f = spec;
    f.model_index = 1;
    REQUIRE(examples::WriteTinyModel(f, ft1).ok());
    f.model_index = 2;
    REQUIRE(examples::WriteTinyModel(f, ft2).ok());
  }
  formats::Result<MoeReport> Run(const std::string& recipe, const std::string& out,
                        MoeOptions options = {}) {
    return RunMoeText(recipe, "test.yaml", dir.Join(out), options);
  }
};

std::string Experts(const std::vector<std::string>& models, const std::string& extra = "") {
  std::string y = "experts:\n";
  for (const std::string& m : models) y += "  - source_model: " + m + "\n" + extra;
  return y;
}

TEST_CASE("moe: Mixtral experts are the sources' MLPs byte for byte", "[merge][moe]") {
  Fixture f;
  const std::string recipe = "base_model: " + f.base + "\ngate_mode: random\n" +
                             Experts({f.ft1, f.ft2, f.base});
  auto report = f.Run(recipe, "mix");
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->architecture == "MixtralForCausalLM");
  CHECK(report->n_experts == 3);
  CHECK_FALSE(report->warnings.empty());  // 3 is not a power of two
  const Model out = Load(f.dir.Join("mix"));
  const Model base = Load(f.base), m1 = Load(f.ft1), m2 = Load(f.ft2);
  const std::vector<const Model*> sources = {&m1, &m2, &base};
  for (int layer = 0; layer < 2; ++layer) {
    const std::string l = "model.layers." + std::to_string(layer) + ".";
    const formats::TensorInfo& gate = out.infos.at(l + "block_sparse_moe.gate.weight");
    CHECK(gate.shape == std::vector<int64_t>{3, 32});
    CHECK(gate.dtype == DType::kBF16);
    CHECK(out.infos.count(l + "mlp.gate_proj.weight") == 0);
    for (size_t e = 0; e < 3; ++e) {
      const std::string x = l + "block_sparse_moe.experts." + std::to_string(e) + ".";
      CHECK(out.bytes.at(x + "w1.weight") == sources[e]->bytes.at(l + "mlp.gate_proj.weight"));
      CHECK(out.bytes.at(x + "w2.weight") == sources[e]->bytes.at(l + "mlp.down_proj.weight"));
      CHECK(out.bytes.at(x + "w3.weight") == sources[e]->bytes.at(l + "mlp.up_proj.weight"));
    }
    // Everything else is the base's.
    CHECK(out.bytes.at(l + "self_attn.q_proj.weight") == base.bytes.at(l + "self_attn.q_proj.weight"));
    CHECK(out.bytes.at(l + "input_layernorm.weight") == base.bytes.at(l + "input_layernorm.weight"));
  }
  CHECK(out.bytes.at("model.embed_tokens.weight") == base.bytes.at("model.embed_tokens.weight"));
  CHECK(out.config["architectures"] == nlohmann::json({"MixtralForCausalLM"}));
  CHECK(out.config["model_type"] == "mixtral");
  CHECK(out.config["num_local_experts"] == 3);
  CHECK(out.config["num_experts_per_tok"] == 2);
  CHECK(out.config["sliding_window"].is_null());
  CHECK(out.config["hidden_size"] == 32);
}

TEST_CASE("moe: fused and legacy layouts hold the same numbers", "[merge][moe]") {
  Fixture f;
  const std::string recipe = "base_model: " + f.base + "\ngate_mode: random\n" +
                             Experts({f.ft1, f.ft2}, "    noise_scale: 0.01\n") +
                             "dtype: float32\n";
  REQUIRE(f.Run(recipe, "legacy").ok());
  MoeOptions fused;
  fused.layout = "fused";
  REQUIRE(f.Run(recipe, "fused", fused).ok());
  const Model a = Load(f.dir.Join("legacy")), b = Load(f.dir.Join("fused"));
  const Model m1 = Load(f.ft1);
  for (int layer = 0; layer < 2; ++layer) {
    const std::string l = "model.layers." + std::to_string(layer) + ".";
    CHECK(a.bytes.at(l + "block_sparse_moe.gate.weight") == b.bytes.at(l + "mlp.gate.weight"));
    const formats::TensorInfo& gu = b.infos.at(l + "mlp.experts.gate_up_proj");
    CHECK(gu.shape == std::vector<int64_t>{2, 96, 32});
    CHECK(b.infos.at(l + "mlp.experts.down_proj").shape == std::vector<int64_t>{2, 32, 48});
    std::string want_gu, want_down;
    for (int e = 0; e < 2; ++e) {
      const std::string x = l + "block_sparse_moe.experts." + std::to_string(e) + ".";
      want_gu += a.bytes.at(x + "w1.weight") + a.bytes.at(x + "w3.weight");
      want_down += a.bytes.at(x + "w2.weight");
    }
    CHECK(b.bytes.at(l + "mlp.experts.gate_up_proj") == want_gu);
    CHECK(b.bytes.at(l + "mlp.experts.down_proj") == want_down);
    // The noise is there, and small.
    const std::vector<float> noisy = Floats(a, l + "block_sparse_moe.experts.0.w1.weight");
    const std::vector<float> clean = Floats(m1, l + "mlp.gate_proj.weight");
    double sq = 0;
    for (size_t i = 0; i < clean.size(); ++i) sq += std::pow(noisy[i] - clean[i], 2);
    CHECK(std::sqrt(sq / static_cast<double>(clean.size())) == Approx(0.01).epsilon(0.1));
  }
}

TEST_CASE("moe: residual_scale multiplies only the expert's down_proj", "[merge][moe]") {
  Fixture f;
  const std::string recipe = "base_model: " + f.base + "\ngate_mode: random\ndtype: float32\n" +
                             Experts({f.ft1, f.ft2}, "    residual_scale: 0.5\n");
  REQUIRE(f.Run(recipe, "res").ok());
  const Model out = Load(f.dir.Join("res")), m1 = Load(f.ft1);
  const std::string l = "model.layers.1.";
  const std::vector<float> down = Floats(out, l + "block_sparse_moe.experts.0.w2.weight");
  const std::vector<float> src = Floats(m1, l + "mlp.down_proj.weight");
  for (size_t i = 0; i < src.size(); ++i) REQUIRE(down[i] == 0.5f * src[i]);
  CHECK(Floats(out, l + "block_sparse_moe.experts.0.w1.weight") ==
        Floats(m1, l + "mlp.gate_proj.weight"));
}

TEST_CASE("moe: router laws and seeds", "[merge][moe]") {
  Fixture f;
  auto gate = [&](const std::string& mode, uint64_t seed, const std::string& out) {
    MoeOptions o;
    o.seed = seed;
    std::string recipe = "base_model: " + f.base + "\ngate_mode: " + mode +
                         "\ndtype: float32\nexperts:\n";
    int i = 0;
    for (const std::string& m : {f.ft1, f.ft2, f.base, f.ft1}) {
      recipe += "  - source_model: " + m + "\n    positive_prompts: [\"p" +
                std::to_string(i++) + "\"]\n";
    }
    auto r = f.Run(recipe, out, o);
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    return Floats(Load(f.dir.Join(out)), "model.layers.0.block_sparse_moe.gate.weight");
  };
  const std::vector<float> a = gate("random", 1, "r1"), b = gate("random", 1, "r1b"),
                           c = gate("random", 2, "r2");
  CHECK(a == b);
  CHECK(a != c);
  double mean = 0, sq = 0;
  for (float v : a) mean += v, sq += static_cast<double>(v) * v;
  CHECK(std::abs(mean / 128) < 0.3);
  CHECK(std::sqrt(sq / 128) == Approx(1.0).epsilon(0.25));
  const double bound = 1 / std::sqrt(32.0);
  for (float v : gate("uniform_random", 1, "u")) REQUIRE(std::abs(v) <= bound);
  const std::vector<float> o = gate("orthogonal", 1, "o");
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      double dot = 0;
      for (int k = 0; k < 32; ++k) dot += static_cast<double>(o[i * 32 + k]) * o[j * 32 + k];
      CHECK(dot == Approx(i == j ? 32.0 : 0.0).margin(1e-4));
    }
  }
}

TEST_CASE("moe: Qwen2-MoE gets its shared expert and zero q/k/v biases", "[merge][moe]") {
  Fixture f;
  // DeepSeek-MoE comes first for a shared expert without prompts (mergekit's
  // order); `architecture: qwen` asks for Qwen2-MoE.
  const std::string recipe = "base_model: " + f.base + "\ngate_mode: random\narchitecture: qwen\n" +
                             Experts({f.ft1, f.ft2}) + "shared_experts:\n  - source_model: " +
                             f.base + "\n";
  auto report = f.Run(recipe, "qwen");
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->architecture == "Qwen2MoeForCausalLM");
  const Model out = Load(f.dir.Join("qwen")), base = Load(f.base), m2 = Load(f.ft2);
  const std::string l = "model.layers.0.";
  CHECK(out.infos.at(l + "mlp.gate.weight").shape == std::vector<int64_t>{2, 32});
  CHECK(out.infos.at(l + "mlp.shared_expert_gate.weight").shape == std::vector<int64_t>{1, 32});
  CHECK(out.bytes.at(l + "mlp.experts.1.up_proj.weight") == m2.bytes.at(l + "mlp.up_proj.weight"));
  CHECK(out.bytes.at(l + "mlp.shared_expert.down_proj.weight") ==
        base.bytes.at(l + "mlp.down_proj.weight"));
  for (const char* p : {"q_proj", "k_proj", "v_proj"}) {
    const std::string bias = l + "self_attn." + p + ".bias";
    REQUIRE(out.infos.count(bias) == 1);
    CHECK(out.infos.at(bias).shape[0] == out.infos.at(l + "self_attn." + p + ".weight").shape[0]);
    for (float v : Floats(out, bias)) CHECK(v == 0.0f);
  }
  CHECK(out.config["model_type"] == "qwen2_moe");
  CHECK(out.config["num_experts"] == 2);
  CHECK(out.config["shared_expert_intermediate_size"] == 48);
  CHECK(out.config["moe_intermediate_size"] == 48);
  CHECK(out.config["use_sliding_window"] == false);
}

TEST_CASE("moe: DeepSeek-MoE when the recipe asks for it", "[merge][moe]") {
  Fixture f;
  const std::string recipe = "base_model: " + f.base + "\ngate_mode: random\narchitecture: deepseek\n" +
                             Experts({f.ft1, f.ft2}) + "shared_experts:\n  - source_model: " +
                             f.base + "\n";
  auto report = f.Run(recipe, "ds");
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->architecture == "DeepseekForCausalLM");
  const Model out = Load(f.dir.Join("ds"));
  CHECK(out.infos.count("model.layers.1.mlp.shared_experts.gate_proj.weight") == 1);
  CHECK(out.infos.count("model.layers.1.mlp.experts.0.gate_proj.weight") == 1);
  CHECK(out.config["n_routed_experts"] == 2);
  CHECK(out.config["n_shared_experts"] == 1);
  CHECK(out.config["first_k_dense_replace"] == 0);
  CHECK(out.config["scoring_func"] == "softmax");
}

TEST_CASE("moe: Qwen3-MoE for qwen3 models in both layouts", "[merge][moe]") {
  Fixture f;
  // Stand-ins: the tiny llama checkpoints relabelled as qwen3.
  for (const std::string& dir : {f.base, f.ft1, f.ft2}) {
    std::ifstream in(dir + "/config.json");
    nlohmann::json c = nlohmann::json::parse(in);
    c["model_type"] = "qwen3";
    c["architectures"] = {"Qwen3ForCausalLM"};
    std::ofstream(dir + "/config.json") << c.dump();
  }
  const std::string recipe =
      "base_model: " + f.base + "\ngate_mode: random\n" + Experts({f.ft1, f.ft2});
  auto legacy = f.Run(recipe, "q3");
  INFO(legacy.status().ToString());
  REQUIRE(legacy.ok());
  CHECK(legacy->architecture == "Qwen3MoeForCausalLM");
  MoeOptions fused;
  fused.layout = "fused";
  REQUIRE(f.Run(recipe, "q3f", fused).ok());
  const Model a = Load(f.dir.Join("q3")), b = Load(f.dir.Join("q3f"));
  const std::string l = "model.layers.0.mlp.";
  CHECK(b.bytes.at(l + "experts.down_proj") ==
        a.bytes.at(l + "experts.0.down_proj.weight") + a.bytes.at(l + "experts.1.down_proj.weight"));
  CHECK(a.bytes.at(l + "gate.weight") == b.bytes.at(l + "gate.weight"));
  CHECK(a.config["model_type"] == "qwen3_moe");
  CHECK(a.config["num_experts"] == 2);
  CHECK(a.config["moe_intermediate_size"] == 48);
}

TEST_CASE("moe: a tied-embedding base without lm_head works", "[merge][moe]") {
  TempDir dir;
  examples::TinyModelSpec spec = Spec();
  spec.tie_embeddings = true;
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("tied")).ok());
  const std::string recipe = "base_model: " + dir.Join("tied") + "\ngate_mode: random\n" +
                             Experts({dir.Join("tied"), dir.Join("tied")});
  MoeOptions o;
  o.allow_all_same_experts = true;
  auto report = RunMoeText(recipe, "t.yaml", dir.Join("out"), o);
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  const Model out = Load(dir.Join("out"));
  CHECK(out.infos.count("lm_head.weight") == 0);
  CHECK(out.config["tie_word_embeddings"] == true);
}

TEST_CASE("moe: refusals", "[merge][moe]") {
  Fixture f;
  SECTION("gates from prompts need a forward pass") {
    const std::string recipe = "base_model: " + f.base + "\n" +
                               Experts({f.ft1, f.ft2}, "") ;
    std::string with_prompts = "base_model: " + f.base +
                               "\nexperts:\n  - source_model: " + f.ft1 +
                               "\n    positive_prompts: [\"code\"]\n  - source_model: " + f.ft2 +
                               "\n    positive_prompts: [\"math\"]\n";
    auto r = f.Run(with_prompts, "x");
    CHECK(r.status().code() == ErrorCode::kUnsupported);
    CHECK(r.status().message().find(f.ft1) != std::string::npos);
    CHECK(r.status().message().find("gate_mode: random") != std::string::npos);
    (void)recipe;
  }
  SECTION("every expert the same model") {
    auto r = f.Run("base_model: " + f.base + "\ngate_mode: random\n" + Experts({f.ft1, f.ft1}),
                   "x");
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("not useful without training") != std::string::npos);
  }
  SECTION("an expert with other shapes") {
    examples::TinyModelSpec other = Spec();
    other.intermediate_size = 64;
    REQUIRE(examples::WriteTinyModel(other, f.dir.Join("wide")).ok());
    auto r = f.Run("base_model: " + f.base + "\ngate_mode: random\n" +
                       Experts({f.ft1, f.dir.Join("wide")}),
                   "x");
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("mlp.gate_proj.weight") != std::string::npos);
  }
  SECTION("an architecture the models cannot have") {
    auto r = f.Run("base_model: " + f.base + "\ngate_mode: random\narchitecture: qwen3\n" +
                       Experts({f.ft1, f.ft2}),
                   "x");
    CHECK(r.status().code() == ErrorCode::kUnsupported);
    CHECK(r.status().message().find("qwen3") != std::string::npos);
  }
  SECTION("fused layout for Qwen2-MoE") {
    MoeOptions o;
    o.layout = "fused";
    auto r = f.Run("base_model: " + f.base + "\ngate_mode: random\n" + Experts({f.ft1, f.ft2}) +
                       "shared_experts:\n  - source_model: " + f.base + "\n",
                   "x", o);
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  }
  CHECK_FALSE(std::filesystem::exists(f.dir.Join("x")));
}

TEST_CASE("moe: the corpus's MoE recipes are refused with a precise message", "[merge][moe]") {
  // None of them uses a random gate: 66-68 need gates from prompts, 69 is
  // invalid (every expert the same model with the same empty prompt).
  TempDir dir;
  const std::string root = std::string(corpus::kRecipesDir) + "/real-world/";
  const std::map<std::string, ErrorCode> expected = {
      {"66-moe-default-gate-beyonder-4x7b.yaml", ErrorCode::kUnsupported},
      {"67-moe-hidden-long-prompts-everyone-coder.yaml", ErrorCode::kUnsupported},
      {"68-moe-negative-prompts-helion-4x34b.yaml", ErrorCode::kUnsupported},
      {"69-moe-self-clone-empty-prompts-sonya-x8.yaml", ErrorCode::kInvalidArgument}};
  for (const auto& [file, code] : expected) {
    CAPTURE(file);
    auto text = formats::ReadSmallFile(root + file);
    REQUIRE(text.ok());
    auto r = RunMoeText(*text, file, dir.Join("out"), MoeOptions{});
    CHECK(r.status().code() == code);
    if (code == ErrorCode::kUnsupported) {
      CHECK(r.status().message().find("forward pass") != std::string::npos);
      CHECK(r.status().message().find("gate_mode: random") != std::string::npos);
    } else {
      CHECK(r.status().message().find(file + ":") == 0);
    }
  }
}

}  // namespace
}  // namespace alloy::merge
