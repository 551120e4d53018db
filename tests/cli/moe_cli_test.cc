// `alloy moe` and `alloy upcycle` on tiny llama models: the generated
// upcycling recipe, the Mixtral config.json and tensors written, the --json
// summary, shared-expert architectures, the refusals (prompt-based gates,
// all-same experts, --top-k above --experts) and the help texts.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "cli/cmd_moe.h"
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

Run Upcycle(const MoeCmdOptions& options) {
  return testing_support::RunCommand(RunUpcycle, options);
}
Run Moe(const MoeCmdOptions& options) { return testing_support::RunCommand(RunMoe, options); }

// A tiny llama base at dir/base and `finetunes` fine-tunes at dir/ft<i>.
void TinyModels(const TempDir& dir, int finetunes = 0) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  for (int i = 1; i <= finetunes; ++i) {
    spec.model_index = i;
    REQUIRE(examples::WriteTinyModel(spec, dir.Join("ft" + std::to_string(i))).ok());
  }
}

MoeCmdOptions UpcycleOptions(const TempDir& dir, int64_t experts) {
  MoeCmdOptions o;
  o.model = dir.Join("base");
  o.output = dir.Join("out");
  o.experts = experts;
  o.quiet = true;
  o.threads = 2;
  return o;
}

// A recipe file at dir/name; returns its path.
std::string Recipe(const TempDir& dir, const std::string& name, const std::string& text) {
  testing::WriteFileBytes(dir.Join(name), text);
  return dir.Join(name);
}

nlohmann::json Config(const std::string& model_dir) {
  return nlohmann::json::parse(testing::ReadFileBytes(model_dir + "/config.json"));
}


bool HasTensor(const std::string& dir, const std::string& tensor) {
  auto src = formats::OpenModel(dir);
  REQUIRE(src.ok());
  return (*src)->Find(tensor) != nullptr;
}

TEST_CASE("upcycle --print-recipe prints the mergekit-moe recipe it runs", "[cli][moe]") {
  TempDir dir;
  MoeCmdOptions o;
  o.model = "models/llama-base";  // not opened: the recipe is only printed
  o.experts = 3;
  o.top_k = 1;
  o.print_recipe = true;
  Run r = Upcycle(o);
  REQUIRE(r.code == 0);
  CHECK(r.out ==
        "# alloy upcycle: sparse upcycling of one dense model\n"
        "base_model: models/llama-base\n"
        "gate_mode: random\n"
        "experts_per_token: 1\n"
        "experts:\n"
        "  - source_model: models/llama-base\n"
        "  - source_model: models/llama-base\n"
        "  - source_model: models/llama-base\n");
  CHECK(r.err.empty());

  // --noise and --gate reach the recipe; the binary prints the same text.
  r = Binary("upcycle models/llama-base --experts 2 --noise 0.001 --gate orthogonal --print-recipe",
             dir);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("gate_mode: orthogonal\n") != std::string::npos);
  CHECK(r.out.find("experts_per_token: 2\n") != std::string::npos);
  CHECK(r.out.find("  - source_model: models/llama-base\n    noise_scale: 0.001\n") !=
        std::string::npos);
}

TEST_CASE("upcycle writes a Mixtral model with exact expert copies", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir);
  MoeCmdOptions o = UpcycleOptions(dir, 4);
  const Run r = Upcycle(o);
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());  // --quiet
  const nlohmann::json c = Config(o.output);
  CHECK(c["architectures"] == nlohmann::json::array({"MixtralForCausalLM"}));
  CHECK(c["model_type"] == "mixtral");
  CHECK(c["num_local_experts"] == 4);
  CHECK(c["num_experts_per_tok"] == 2);
  CHECK(c["sliding_window"].is_null());
  CHECK(c["intermediate_size"] == 128);
  CHECK(c["torch_dtype"] == "bfloat16");

  // Legacy layout: per-expert w1/w2/w3 and the router; no dense MLP left.
  const std::string pre = "model.layers.1.block_sparse_moe.";
  CHECK(HasTensor(o.output, pre + "gate.weight"));
  CHECK_FALSE(HasTensor(o.output, "model.layers.1.mlp.gate_proj.weight"));
  const std::string base = dir.Join("base");
  for (int e = 0; e < 4; ++e) {
    const std::string x = pre + "experts." + std::to_string(e) + ".";
    CHECK(TensorBytes(o.output, x + "w1.weight") ==
          TensorBytes(base, "model.layers.1.mlp.gate_proj.weight"));
    CHECK(TensorBytes(o.output, x + "w2.weight") ==
          TensorBytes(base, "model.layers.1.mlp.down_proj.weight"));
    CHECK(TensorBytes(o.output, x + "w3.weight") ==
          TensorBytes(base, "model.layers.1.mlp.up_proj.weight"));
  }
  CHECK(TensorBytes(o.output, "model.layers.0.self_attn.q_proj.weight") ==
        TensorBytes(base, "model.layers.0.self_attn.q_proj.weight"));
  // The base's tokenizer files are copied unchanged; the recipe is kept.
  CHECK(testing::ReadFileBytes(o.output + "/tokenizer_config.json") ==
        testing::ReadFileBytes(base + "/tokenizer_config.json"));
  CHECK(testing::ReadFileBytes(o.output + "/mergekit_moe_config.yml") == UpcycleRecipe(o));
  CHECK(testing::ReadFileBytes(o.output + "/README.md").find("routers are not trained") !=
        std::string::npos);

  // An existing output is refused without --overwrite.
  const Run again = Upcycle(o);
  CHECK(again.code == 2);
  CHECK(again.err.find("--overwrite") != std::string::npos);
}

TEST_CASE("upcycle --json reports the fused layout summary", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir);
  MoeCmdOptions o = UpcycleOptions(dir, 4);
  o.layout = "fused";
  o.noise = 0.001;
  o.json = true;
  const Run r = Upcycle(o);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["output"] == o.output);
  CHECK(j["architecture"] == "MixtralForCausalLM");
  CHECK(j["layout"] == "fused");
  CHECK(j["experts"] == 4);
  CHECK(j["shared_experts"] == 0);
  CHECK(j["layers"] == 2);
  CHECK(j["tensors"] == 21);  // 3 + 2 × (4 attention + 2 norms + router + gate_up + down)
  CHECK(j["bytes_written"].get<uint64_t>() > 0);
  CHECK(j["warnings"].empty());
  CHECK(j["seconds"].is_number());
  CHECK(j["peak_rss_bytes"].is_number());
  const auto files = j["files"].get<std::vector<std::string>>();
  for (const char* f : {"README.md", "config.json", "mergekit_moe_config.yml", "model.safetensors",
                        "tokenizer.json", "tokenizer_config.json"}) {
    CHECK(std::find(files.begin(), files.end(), f) != files.end());
  }
  CHECK(HasTensor(o.output, "model.layers.0.mlp.experts.gate_up_proj"));
  CHECK(HasTensor(o.output, "model.layers.0.mlp.experts.down_proj"));
  CHECK(HasTensor(o.output, "model.layers.0.mlp.gate.weight"));
  auto src = formats::OpenModel(o.output);
  REQUIRE(src.ok());
  CHECK((*src)->Find("model.layers.0.mlp.experts.gate_up_proj")->shape ==
        std::vector<int64_t>{4, 256, 64});
  CHECK((*src)->Find("model.layers.0.mlp.experts.down_proj")->shape ==
        std::vector<int64_t>{4, 64, 128});

  // Three experts: a Mixtral that older llama.cpp cannot load, with a warning.
  o = UpcycleOptions(dir, 3);
  o.output = dir.Join("three");
  o.json = true;
  const Run three = Upcycle(o);
  REQUIRE(three.code == 0);
  const nlohmann::json w = nlohmann::json::parse(three.out)["warnings"];
  REQUIRE(w.size() == 1);
  CHECK(w[0].get<std::string>().find("not a power of two") != std::string::npos);
}

TEST_CASE("moe picks DeepSeek-MoE or Qwen2-MoE for a shared expert", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir, 2);
  const std::string experts = "experts:\n  - source_model: " + dir.Join("ft1") +
                              "\n  - source_model: " + dir.Join("ft2") +
                              "\nshared_experts:\n  - source_model: " + dir.Join("base") + "\n";
  MoeCmdOptions o;
  o.recipe = Recipe(dir, "ds.yaml",
                    "base_model: " + dir.Join("base") + "\ngate_mode: random\n" + experts);
  o.output = dir.Join("ds");
  o.quiet = true;
  REQUIRE(Moe(o).code == 0);
  nlohmann::json c = Config(o.output);
  CHECK(c["architectures"][0] == "DeepseekForCausalLM");
  CHECK(c["n_routed_experts"] == 2);
  CHECK(c["n_shared_experts"] == 1);
  CHECK(c["moe_intermediate_size"] == 128);
  CHECK(HasTensor(o.output, "model.layers.0.mlp.shared_experts.down_proj.weight"));
  CHECK(HasTensor(o.output, "model.layers.0.mlp.experts.1.up_proj.weight"));

  o.recipe = Recipe(dir, "qwen.yaml",
                    "base_model: " + dir.Join("base") +
                        "\ngate_mode: random\narchitecture: qwen\n" + experts);
  o.output = dir.Join("qwen");
  REQUIRE(Moe(o).code == 0);
  c = Config(o.output);
  CHECK(c["architectures"][0] == "Qwen2MoeForCausalLM");
  CHECK(c["num_experts"] == 2);
  CHECK(c["shared_expert_intermediate_size"] == 128);
  CHECK(HasTensor(o.output, "model.layers.1.mlp.shared_expert.gate_proj.weight"));
  CHECK(HasTensor(o.output, "model.layers.1.mlp.shared_expert_gate.weight"));
  // The llama base has no q/k/v biases; Qwen2-MoE gets zero ones.
  const std::string bias = TensorBytes(o.output, "model.layers.1.self_attn.k_proj.bias");
  CHECK(bias == std::string(bias.size(), '\0'));

  // The fused layout exists for Mixtral and Qwen3-MoE only.
  o.output = dir.Join("qwen-fused");
  o.layout = "fused";
  const Run fused = Moe(o);
  CHECK(fused.code == 2);
  CHECK(fused.err.find("--layout fused exists for Mixtral and Qwen3-MoE") != std::string::npos);
}

TEST_CASE("moe refuses prompt-based gates with exit code 2", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir, 2);
  MoeCmdOptions o;
  o.recipe = Recipe(dir, "hidden.yaml",
                    "base_model: " + dir.Join("base") +
                        "\ngate_mode: hidden\nexperts:\n"
                        "  - source_model: " + dir.Join("ft1") +
                        "\n    positive_prompts: [\"Write a poem\"]\n"
                        "  - source_model: " + dir.Join("ft2") +
                        "\n    positive_prompts: [\"Solve 12 * 7\"]\n");
  o.output = dir.Join("out");
  const Run r = Moe(o);
  CHECK(r.code == 2);
  CHECK(r.err.find("gate_mode 'hidden' computes the routers from the prompts") !=
        std::string::npos);
  CHECK(r.err.find("forward pass of the base model, which alloy does not have yet") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(o.output));

  // Without prompts the recipe itself is invalid (as mergekit's is_bad_config).
  o.recipe = Recipe(dir, "noprompt.yaml",
                    "base_model: " + dir.Join("base") + "\nexperts:\n  - source_model: " +
                        dir.Join("ft1") + "\n  - source_model: " + dir.Join("ft2") + "\n");
  const Run bare = Moe(o);
  CHECK(bare.code == 2);
  CHECK(bare.err.find("noprompt.yaml:3:1: expert") != std::string::npos);
  CHECK(bare.err.find("has no `positive_prompts`") != std::string::npos);
}

TEST_CASE("moe refuses all-same experts unless the flag is given", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir, 1);
  const std::string recipe =
      Recipe(dir, "same.yaml",
             "base_model: " + dir.Join("base") + "\ngate_mode: random\nexperts:\n" +
                 "  - source_model: " + dir.Join("ft1") + "\n  - source_model: " +
                 dir.Join("ft1") + "\n");
  MoeCmdOptions o;
  o.recipe = recipe;
  o.output = dir.Join("out");
  o.quiet = true;
  const Run refused = Moe(o);
  CHECK(refused.code == 2);
  CHECK(refused.err.find("same.yaml:4:1: every expert is the same model") != std::string::npos);
  CHECK(refused.err.find("--i-understand-this-is-not-useful-without-training") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(o.output));

  o.allow_all_same = true;
  REQUIRE(Moe(o).code == 0);
  CHECK(Config(o.output)["num_local_experts"] == 2);

  const Run flagged = Binary("moe " + recipe + " " + dir.Join("bin") +
                                 " --i-understand-this-is-not-useful-without-training -q",
                             dir);
  CHECK(flagged.code == 0);
  CHECK(TensorBytes(dir.Join("bin"), "model.layers.0.block_sparse_moe.gate.weight") ==
        TensorBytes(o.output, "model.layers.0.block_sparse_moe.gate.weight"));
}

TEST_CASE("upcycle refuses --top-k above --experts with exit code 2", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir);
  MoeCmdOptions o = UpcycleOptions(dir, 2);
  o.top_k = 3;
  const Run r = Upcycle(o);
  CHECK(r.code == 2);
  CHECK(r.err == "alloy: error: --top-k 3 is more than --experts 2\n");
  CHECK_FALSE(std::filesystem::exists(o.output));
  const Run bin = Binary("upcycle " + dir.Join("base") + " " + dir.Join("out") +
                             " --experts 2 --top-k 4",
                         dir);
  CHECK(bin.code == 2);
  CHECK(bin.err.find("--top-k 4 is more than --experts 2") != std::string::npos);
  CHECK(Binary("upcycle " + dir.Join("base") + " " + dir.Join("out") + " --experts 0", dir).code ==
        2);
}

TEST_CASE("upcycle draws uniform_random and orthogonal routers without prompts", "[cli][moe]") {
  TempDir dir;
  TinyModels(dir);
  for (const char* gate : {"uniform_random", "orthogonal"}) {
    MoeCmdOptions o = UpcycleOptions(dir, 4);
    o.gate = gate;
    o.output = dir.Join(std::string("up-") + gate);
    const Run r = Upcycle(o);
    CAPTURE(gate, r.err);
    CHECK(r.code == 0);
  }
}

TEST_CASE("moe and upcycle help texts give the exit codes", "[cli][moe]") {
  TempDir dir;
  for (const char* cmd : {"moe --help", "upcycle --help"}) {
    const Run r = Binary(cmd, dir);
    CHECK(r.code == 0);
    CHECK(r.out.find("Exit codes: 0 ok, 1 internal error, 2 bad input, 3 I/O failure") !=
          std::string::npos);
    CHECK(r.out.find("--layout") != std::string::npos);
  }
  const Run moe = Binary("moe --help", dir);
  CHECK(moe.out.find("--i-understand-this-is-not-useful-without-training") != std::string::npos);
  CHECK(moe.out.find("docs/moe.md") != std::string::npos);
  const Run up = Binary("upcycle --help", dir);
  CHECK(up.out.find("--experts") != std::string::npos);
  CHECK(up.out.find("--print-recipe") != std::string::npos);
}

}  // namespace
}  // namespace alloy::cli
