// Tests for merge/lora_ops (`alloy lora concat | combine | extract`) and the
// adapters merge/lora_io writes: concat equals applying the sources in turn,
// combine scales each adapter once and truncates optimally, extract → apply
// reproduces the fine-tune within the Eckart–Young bound, written adapters
// load back, and one test per refusal.
#include "merge/lora_ops.h"

#include <catch2/catch.hpp>
#include <algorithm>
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
#include "merge/lora_io.h"
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
  combine.method = "ties";  // without --density
  CHECK(CombineLora({f.a1}, {}, combine, f.dir.Join("x"), {}).status().message().find(
            "needs --density") != std::string::npos);
  combine.method = "svd";
  combine.density = 0.5;
  CHECK(CombineLora({f.a1}, {}, combine, f.dir.Join("x"), {}).status().message().find(
            "--density") != std::string::npos);
}

// Every module's ΔW = B·A·scale of `adapter`, row-major out × in, float64
// (the orientation of B·A; none of the fixture's modules is transposed).
std::map<std::string, std::vector<double>> Deltas(const std::string& adapter) {
  auto a = formats::LoraAdapter::Open(adapter);
  REQUIRE(a.ok());
  std::map<std::string, std::vector<double>> out;
  for (const formats::LoraDelta& d : (*a)->deltas()) {
    auto f = ReadScaledFactors(**a, d);
    REQUIRE(f.ok());
    const size_t rows = static_cast<size_t>(f->out), cols = static_cast<size_t>(f->in);
    const size_t r = static_cast<size_t>(f->rank);
    std::vector<double> m(rows * cols, 0.0);
    for (size_t i = 0; i < rows; ++i) {
      for (size_t j = 0; j < cols; ++j) {
        double sum = 0.0;
        for (size_t k = 0; k < r; ++k) sum += f->b[i * r + k] * f->a[k * cols + j];
        m[i * cols + j] = static_cast<float>(sum);  // the engine sees float32 deltas
      }
    }
    out[d.module] = std::move(m);
  }
  return out;
}

// mergekit's top-k keep mask: the floor(density·n) largest |x|, ties by lowest index.
std::vector<bool> TopK(const std::vector<double>& x, double density) {
  std::vector<size_t> order(x.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return std::abs(x[a]) > std::abs(x[b]); });
  std::vector<bool> keep(x.size(), false);
  const size_t k = static_cast<size_t>(density * static_cast<double>(x.size()));
  for (size_t i = 0; i < k; ++i) keep[order[i]] = true;
  return keep;
}

double MaxAbs(const std::vector<double>& x) {
  double m = 0;
  for (double v : x) m = std::max(m, std::abs(v));
  return m;
}

TEST_CASE("lora combine ties and magnitude_prune equal the formulas at full rank",
          "[merge][lora_ops]") {
  Fixture f;
  examples::TinyLoraSpec l3 = f.l1;
  l3.rank = 3;
  l3.alpha = 3;
  l3.seed = 11;
  const std::string a3 = f.dir.Join("a3");
  REQUIRE(examples::WriteTinyLoraAdapter(f.spec, l3, a3).ok());
  const std::vector<double> w = {1.0, 0.6};
  const double density = 0.5;
  const auto d1 = Deltas(f.a1), d3 = Deltas(a3);
  for (const char* method : {"ties", "magnitude_prune"}) {
    CAPTURE(method);
    CombineOptions combine;
    combine.method = method;
    combine.rank = 64;  // full rank: the factors hold the combined delta exactly
    combine.density = density;
    const std::string out = f.dir.Join(method);
    auto report = CombineLora({f.a1, a3}, w, combine, out, LoraBuildOptions{});
    INFO(report.status().ToString());
    REQUIRE(report.ok());
    const auto got = Deltas(out);
    REQUIRE(got.size() == d1.size());
    for (const auto& [module, x1] : d1) {
      CAPTURE(module);
      const std::vector<double>& x3 = d3.at(module);
      const std::vector<bool> k1 = TopK(x1, density), k3 = TopK(x3, density);
      std::vector<double> want(x1.size());
      for (size_t i = 0; i < x1.size(); ++i) {
        const double w1 = w[0] * (k1[i] ? x1[i] : 0.0), w3 = w[1] * (k3[i] ? x3[i] : 0.0);
        if (std::string(method) == "magnitude_prune") {
          want[i] = w1 + w3;
          continue;
        }
        const double maj = w1 + w3 >= 0 ? 1.0 : -1.0;
        auto agrees = [&](double v) { return v != 0 && (v > 0) == (maj > 0); };
        const double mixed = (agrees(w1) ? w1 : 0.0) + (agrees(w3) ? w3 : 0.0);
        double div = (agrees(w1) ? w[0] : 0.0) + (agrees(w3) ? w[1] : 0.0);
        if (div == 0) div = 1;
        want[i] = mixed / div;
      }
      const std::vector<double>& m = got.at(module);
      double worst = 0;
      for (size_t i = 0; i < m.size(); ++i) worst = std::max(worst, std::abs(m[i] - want[i]));
      CHECK(worst < 1e-5 * MaxAbs(want));
    }
  }
}

TEST_CASE("lora combine dare keeps about density of each delta rescaled", "[merge][lora_ops]") {
  Fixture f;
  CombineOptions combine;
  combine.method = "dare_linear";
  combine.rank = 64;
  combine.density = 0.5;
  const std::string out = f.dir.Join("dare");
  LoraBuildOptions options;
  options.seed = 3;
  REQUIRE(CombineLora({f.a1}, {}, combine, out, options).ok());
  const auto want = Deltas(f.a1), got = Deltas(out);
  // mergekit's DARE rescale matches L1 norms: kept entries are δ·Σ|δ| / Σ|kept δ|.
  size_t kept = 0, total = 0, bad = 0;
  for (const auto& [module, x] : want) {
    const std::vector<double>& m = got.at(module);
    const double tol = 1e-5 * MaxAbs(x);
    double l1 = 0, l1_kept = 0;
    std::vector<bool> on(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      on[i] = std::abs(m[i]) > tol;
      l1 += std::abs(x[i]);
      if (on[i]) l1_kept += std::abs(x[i]);
    }
    const double c = l1 / l1_kept;
    CHECK(c == Approx(2.0).epsilon(0.25));
    for (size_t i = 0; i < x.size(); ++i) {
      ++total;
      kept += on[i];
      if (on[i]) bad += std::abs(m[i] - c * x[i]) > 4 * tol;
    }
  }
  CHECK(bad == 0);
  const double share = static_cast<double>(kept) / static_cast<double>(total);
  CHECK(share > 0.4);
  CHECK(share < 0.6);
  // The same seed gives the same adapter, at any thread count.
  options.threads = 2;
  REQUIRE(CombineLora({f.a1}, {}, combine, f.dir.Join("dare2"), options).ok());
  CHECK(Deltas(f.dir.Join("dare2")) == got);
  combine.method = "dare_ties";
  REQUIRE(CombineLora({f.a1}, {}, combine, f.dir.Join("dt"), options).ok());
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
