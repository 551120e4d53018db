// Tests for merge/lora_ops (`alloy lora concat | combine | extract`) and the
// adapters merge/lora_io writes: concat equals applying the sources in turn,
// combine scales each adapter once and truncates optimally, extract → apply
// reproduces the fine-tune within the Eckart–Young bound, written adapters
// load back, and one test per refusal.
#include "merge/lora_ops.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "formats/lora_adapter.h"
#include "formats/model_dir.h"
#include "merge/codec.h"
#include "merge/lora_inspect.h"
#include "merge/lora_source.h"
#include "merge/merge_job.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::ErrorCode;
using testing::TempDir;

using Values = std::map<std::string, std::vector<float>>;

examples::TinyModelSpec Spec(int64_t hidden = 16, int64_t intermediate = 32) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  spec.hidden_size = hidden;
  spec.intermediate_size = intermediate;
  spec.vocab_size = 24;
  spec.num_layers = 2;
  spec.dtype = DType::kF32;
  return spec;
}

Values ReadAll(formats::TensorSource& src) {
  Values out;
  for (const formats::TensorInfo& t : src.tensors()) {
    std::vector<uint8_t> bytes(t.nbytes);
    REQUIRE(src.Read(t, 0, bytes).ok());
    std::vector<float> v(t.numel());
    DecodeToF32(t.dtype, bytes, v);
    out[t.name] = std::move(v);
  }
  return out;
}

// `base` with each (adapter, scale multiplier) applied in turn, read whole.
Values Applied(const std::string& base, const std::vector<std::pair<std::string, double>>& loras) {
  auto src = formats::OpenModel(base);
  REQUIRE(src.ok());
  std::unique_ptr<formats::TensorSource> current = std::move(*src);
  for (const auto& [dir, scale] : loras) {
    auto adapter = formats::LoraAdapter::Open(dir);
    INFO(adapter.status().ToString());
    REQUIRE(adapter.ok());
    auto applied = ApplyLora(std::move(current), std::move(*adapter), scale);
    INFO(applied.status().ToString());
    REQUIRE(applied.ok());
    current = std::move(*applied);
  }
  return ReadAll(*current);
}

double Norm(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return std::sqrt(s);
}

// Largest |x − y| / (1 + |x|) over every tensor.
double MaxRelDiff(const Values& x, const Values& y) {
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (const auto& [name, a] : x) {
    const std::vector<float>& b = y.at(name);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / (1 + std::abs(a[i])));
    }
  }
  return worst;
}

nlohmann::json Config(const std::string& adapter) {
  std::ifstream in(adapter + "/adapter_config.json");
  return nlohmann::json::parse(in);
}

struct Fixture {
  TempDir dir;
  examples::TinyModelSpec spec = Spec();
  std::string base = dir.Join("base");
  std::string a1 = dir.Join("a1");  // rank 4, alpha 8: q, v
  std::string a2 = dir.Join("a2");  // rank 2, rsLoRA alpha 4: q, k, embeddings
  examples::TinyLoraSpec l1, l2;

  Fixture() {
    REQUIRE(examples::WriteTinyModel(spec, base).ok());
    l1.rank = 4;
    l1.alpha = 8;
    REQUIRE(examples::WriteTinyLoraAdapter(spec, l1, a1).ok());
    l2.rank = 2;
    l2.alpha = 4;
    l2.use_rslora = true;
    l2.target_modules = {"q_proj", "k_proj"};
    l2.embeddings = true;
    l2.seed = 7;
    REQUIRE(examples::WriteTinyLoraAdapter(spec, l2, a2).ok());
  }
};

TEST_CASE("lora concat equals applying the adapters in turn", "[merge][lora_ops]") {
  Fixture f;
  const std::string out = f.dir.Join("cat");
  auto report = ConcatLora({f.a1, f.a2}, {1.0, -0.5}, out, LoraBuildOptions{});
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  CHECK(report->max_rank == 6);  // q_proj: 4 + 2
  const Values want = Applied(f.base, {{f.a1, 1.0}, {f.a2, -0.5}});
  const Values got = Applied(f.base, {{out, 1.0}});
  CHECK(MaxRelDiff(want, got) < 2e-6);
  // The sources changed something: the check is not vacuous.
  CHECK(MaxRelDiff(want, Applied(f.base, {})) > 1e-3);

  // Scale 1 everywhere; ranks by module through rank_pattern.
  const nlohmann::json config = Config(out);
  CHECK(config["r"] == 6);
  CHECK(config["lora_alpha"] == 6);
  CHECK(config["use_rslora"] == false);
  CHECK(config["rank_pattern"]["model.layers.0.self_attn.v_proj"] == 4);
  CHECK(config["rank_pattern"]["model.layers.0.self_attn.k_proj"] == 2);
  CHECK(config["rank_pattern"]["model.embed_tokens"] == 2);
  CHECK(config["target_modules"] ==
        nlohmann::json({"embed_tokens", "k_proj", "q_proj", "v_proj"}));
  auto reloaded = formats::LoraAdapter::Open(out);
  REQUIRE(reloaded.ok());
  for (const formats::LoraDelta& d : (*reloaded)->deltas()) CHECK(d.scale == 1.0);
}

TEST_CASE("lora concat of one adapter loads back as the same delta", "[merge][lora_ops]") {
  Fixture f;
  const std::string out = f.dir.Join("one");
  LoraBuildOptions options;
  options.dtype = DType::kBF16;
  REQUIRE(ConcatLora({f.a2}, {}, out, options).ok());
  auto reloaded = formats::LoraAdapter::Open(out);
  REQUIRE(reloaded.ok());
  CHECK((*reloaded)->tensors().tensors().front().dtype == DType::kBF16);
  // bf16 factors: within bf16 rounding of the delta.
  const Values want = Applied(f.base, {{f.a2, 1.0}});
  const Values got = Applied(f.base, {{out, 1.0}});
  CHECK(MaxRelDiff(want, got) < 2e-3);
}

TEST_CASE("lora concat refuses what it cannot do exactly", "[merge][lora_ops]") {
  Fixture f;
  SECTION("weights that do not match the adapters") {
    auto r = ConcatLora({f.a1, f.a2}, {1.0}, f.dir.Join("x"), LoraBuildOptions{});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("1 weights for 2 adapters") != std::string::npos);
  }
  SECTION("adapters for different base layouts") {
    nlohmann::json config = Config(f.a2);
    config["fan_in_fan_out"] = true;
    std::ofstream(f.a2 + "/adapter_config.json") << config.dump();
    auto r = ConcatLora({f.a1, f.a2}, {}, f.dir.Join("x"), LoraBuildOptions{});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("fan_in_fan_out") != std::string::npos);
  }
  SECTION("adapters for different models") {
    examples::TinyModelSpec other = Spec(8, 16);
    const std::string small = f.dir.Join("small");
    REQUIRE(examples::WriteTinyLoraAdapter(other, f.l1, small).ok());
    auto r = ConcatLora({f.a1, small}, {}, f.dir.Join("x"), LoraBuildOptions{});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("not for the same base model") != std::string::npos);
  }
  SECTION("a missing adapter") {
    auto r = ConcatLora({f.a1, f.dir.Join("nope")}, {}, f.dir.Join("x"), LoraBuildOptions{});
    CHECK_FALSE(r.ok());
    CHECK(r.status().message().find("nope") != std::string::npos);
  }
  SECTION("an output directory that is not empty") {
    auto r = ConcatLora({f.a1}, {}, f.a2, LoraBuildOptions{});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("not empty") != std::string::npos);
  }
}

TEST_CASE("lora combine svd enters each scale once", "[merge][lora_ops]") {
  Fixture f;
  // a1 has scale alpha / r = 2; PEFT's svd path would fold it in twice.
  const std::string out = f.dir.Join("svd");
  CombineOptions combine;
  combine.method = "svd";
  combine.rank = 4;
  auto report = CombineLora({f.a1}, {0.5}, combine, out, LoraBuildOptions{});
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  const Values base = Applied(f.base, {});
  const Values ours = Applied(f.base, {{out, 1.0}});
  const Values once = Applied(f.base, {{f.a1, 0.5}});    // w·s·B·A
  const Values twice = Applied(f.base, {{f.a1, 1.0}});   // w·s²·B·A = 0.5·2·2·B·A
  const std::string q = "model.layers.1.self_attn.q_proj.weight";
  const double delta = Norm(once.at(q), base.at(q));
  REQUIRE(delta > 1e-3);
  CHECK(Norm(ours.at(q), once.at(q)) < 1e-5 * delta);
  CHECK(Norm(ours.at(q), twice.at(q)) > 0.5 * delta);
  CHECK(MaxRelDiff(ours, once) < 2e-6);
  for (const LoraModuleSummary& m : report->modules) CHECK(m.kept == Approx(1.0));
}

TEST_CASE("lora combine svd truncates to the best rank-R factors", "[merge][lora_ops]") {
  Fixture f;
  auto inspected = InspectLora(f.a1, std::nullopt);
  REQUIRE(inspected.ok());
  const std::string out = f.dir.Join("r2");
  CombineOptions combine;
  combine.method = "svd";
  combine.rank = 2;
  REQUIRE(CombineLora({f.a1}, {}, combine, out, LoraBuildOptions{}).ok());
  const Values full = Applied(f.base, {{f.a1, 1.0}});
  const Values cut = Applied(f.base, {{out, 1.0}});
  for (const LoraModuleReport& m : inspected->modules) {
    CAPTURE(m.module);
    REQUIRE(m.singular_values.size() == 4);
    const double discarded = std::hypot(m.singular_values[2], m.singular_values[3]);
    CHECK(Norm(cut.at(m.base_name), full.at(m.base_name)) ==
          Approx(discarded).epsilon(1e-3));
  }
}

TEST_CASE("lora combine linear at full rank equals concat", "[merge][lora_ops]") {
  Fixture f;
  CombineOptions combine;
  combine.method = "linear";
  combine.rank = 6;
  REQUIRE(CombineLora({f.a1, f.a2}, {2.0, 0.5}, combine, f.dir.Join("lin"), LoraBuildOptions{})
              .ok());
  REQUIRE(ConcatLora({f.a1, f.a2}, {2.0, 0.5}, f.dir.Join("cat"), LoraBuildOptions{}).ok());
  CHECK(MaxRelDiff(Applied(f.base, {{f.dir.Join("lin"), 1.0}}),
                   Applied(f.base, {{f.dir.Join("cat"), 1.0}})) < 2e-6);
}

TEST_CASE("lora combine refuses unknown methods and misplaced options", "[merge][lora_ops]") {
  Fixture f;
  CombineOptions combine;
  combine.rank = 2;
  combine.method = "cat";
  CHECK(CombineLora({f.a1}, {}, combine, f.dir.Join("x"), {}).status().code() ==
        ErrorCode::kInvalidArgument);
  combine.method = "ties";
  combine.density = 0.5;
  CHECK(CombineLora({f.a1}, {}, combine, f.dir.Join("x"), {}).status().code() ==
        ErrorCode::kUnsupported);
  combine.method = "svd";
  CHECK(CombineLora({f.a1}, {}, combine, f.dir.Join("x"), {}).status().message().find(
            "--density") != std::string::npos);
}

// base + adapter written as a model (what `alloy lora apply` writes).
std::string WriteApplied(const TempDir& dir, const std::string& base, const std::string& adapter,
                         const std::string& name) {
  const std::string out = dir.Join(name);
  const std::string recipe = "merge_method: passthrough\ndtype: float32\nmodels:\n  - model: " +
                             base + "+" + adapter + "\n";
  auto r = RunMergeText(recipe, "test recipe", out, MergeJobOptions{});
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return out;
}

TEST_CASE("lora extract then apply reproduces the fine-tune", "[merge][lora_ops]") {
  Fixture f;
  examples::TinyLoraSpec l = f.l2;
  l.rank = 3;
  l.target_modules = {"q_proj", "v_proj", "down_proj"};
  const std::string adapter = f.dir.Join("src");
  REQUIRE(examples::WriteTinyLoraAdapter(f.spec, l, adapter).ok());
  const std::string ft = WriteApplied(f.dir, f.base, adapter, "ft");
  const Values want = ReadAll(**formats::OpenModel(ft));

  SECTION("at the adapter's rank: to float32 rounding, embeddings saved whole") {
    ExtractOptions extract;
    extract.rank = 3;
    const std::string out = f.dir.Join("x3");
    auto report = ExtractLora(f.base, ft, extract, out, LoraBuildOptions{});
    INFO(report.status().ToString());
    REQUIRE(report.ok());
    CHECK(report->n_modules == 6);  // q, v, down in 2 layers
    CHECK(report->n_saved == 1);    // embed_tokens
    const Values got = Applied(f.base, {{out, 1.0}});
    CHECK(MaxRelDiff(want, got) < 1e-5);
    CHECK(got.at("model.embed_tokens.weight") == want.at("model.embed_tokens.weight"));
    const nlohmann::json config = Config(out);
    CHECK(config["r"] == 3);
    CHECK(config["modules_to_save"] == nlohmann::json({"model.embed_tokens"}));
    CHECK(config["target_modules"] == nlohmann::json({"down_proj", "q_proj", "v_proj"}));
  }
  SECTION("with --embed-lora the embedding becomes factors too") {
    ExtractOptions extract;
    extract.rank = 3;
    extract.embed_lora = true;
    const std::string out = f.dir.Join("xe");
    auto report = ExtractLora(f.base, ft, extract, out, LoraBuildOptions{});
    REQUIRE(report.ok());
    CHECK(report->n_saved == 0);
    CHECK(report->n_modules == 7);
    CHECK(MaxRelDiff(want, Applied(f.base, {{out, 1.0}})) < 1e-5);
  }
  SECTION("below it: the error is the norm of the discarded singular values") {
    auto inspected = InspectLora(adapter, std::nullopt);
    REQUIRE(inspected.ok());
    ExtractOptions extract;
    extract.rank = 1;
    const std::string out = f.dir.Join("x1");
    REQUIRE(ExtractLora(f.base, ft, extract, out, LoraBuildOptions{}).ok());
    const Values got = Applied(f.base, {{out, 1.0}});
    for (const LoraModuleReport& m : inspected->modules) {
      if (m.base_name == "model.embed_tokens.weight") continue;
      CAPTURE(m.module);
      const double discarded = std::hypot(m.singular_values[1], m.singular_values[2]);
      CHECK(Norm(got.at(m.base_name), want.at(m.base_name)) == Approx(discarded).epsilon(1e-3));
    }
  }
  SECTION("--sv-epsilon lowers a module's rank, and rank_pattern records it") {
    ExtractOptions extract;
    extract.rank = 8;  // more than the delta has: realized ranks are 3 (f32 noise aside)
    extract.sv_epsilon = 1e-4;
    const std::string out = f.dir.Join("xeps");
    auto report = ExtractLora(f.base, ft, extract, out, LoraBuildOptions{});
    REQUIRE(report.ok());
    for (const LoraModuleSummary& m : report->modules) CHECK(m.rank == 3);
    CHECK(Config(out)["r"] == 3);
  }
  SECTION("--include and --exclude pick tensors") {
    ExtractOptions extract;
    extract.rank = 3;
    extract.include = {"layers\\.1\\."};
    extract.exclude = {"down_proj"};
    const std::string out = f.dir.Join("xsel");
    auto report = ExtractLora(f.base, ft, extract, out, LoraBuildOptions{});
    REQUIRE(report.ok());
    CHECK(report->n_modules == 2);
    CHECK(report->n_saved == 0);
  }
}

TEST_CASE("lora extract uses the randomized SVD on larger matrices", "[merge][lora_ops]") {
  TempDir dir;
  const examples::TinyModelSpec spec = Spec(320, 640);
  const std::string base = dir.Join("base");
  REQUIRE(examples::WriteTinyModel(spec, base).ok());
  examples::TinyLoraSpec l;
  l.rank = 8;
  l.alpha = 8;
  l.target_modules = {"up_proj"};
  const std::string adapter = dir.Join("src");
  REQUIRE(examples::WriteTinyLoraAdapter(spec, l, adapter).ok());
  const std::string ft = WriteApplied(dir, base, adapter, "ft");
  ExtractOptions extract;
  extract.rank = 8;
  const std::string out = dir.Join("x");
  for (int threads : {1, 2}) {
    LoraBuildOptions options;
    options.threads = threads;
    options.overwrite = true;
    auto report = ExtractLora(base, ft, extract, out, options);
    INFO(report.status().ToString());
    REQUIRE(report.ok());
    CHECK(report->n_modules == 2);
    const Values want = ReadAll(**formats::OpenModel(ft));
    CHECK(MaxRelDiff(want, Applied(base, {{out, 1.0}})) < 1e-5);
  }
}

TEST_CASE("lora extract refuses what it cannot extract", "[merge][lora_ops]") {
  Fixture f;
  SECTION("identical models") {
    auto r = ExtractLora(f.base, f.base, ExtractOptions{}, f.dir.Join("x"), {});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("nothing to extract") != std::string::npos);
  }
  SECTION("a fine-tune with another shape") {
    examples::TinyModelSpec other = f.spec;
    other.vocab_size = 32;
    REQUIRE(examples::WriteTinyModel(other, f.dir.Join("big")).ok());
    auto r = ExtractLora(f.base, f.dir.Join("big"), ExtractOptions{}, f.dir.Join("x"), {});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("cannot change a tensor's shape") != std::string::npos);
  }
  SECTION("a bad regex") {
    ExtractOptions extract;
    extract.include = {"("};
    auto r = ExtractLora(f.base, f.base, extract, f.dir.Join("x"), {});
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("--include") != std::string::npos);
  }
}

}  // namespace
}  // namespace alloy::merge
