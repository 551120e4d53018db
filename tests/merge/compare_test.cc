// Tests for merge/compare: every figure against a reference computed here
// from the definitions, on hand-made mini models.
#include "merge/compare.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/merge/merge_test_support.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::merge {
namespace {

using testing_support::MiniModel;
using testing_support::ValuesTensor;
using testing_support::WriteMiniModel;

std::vector<float> Normals(size_t n, unsigned seed, float mean = 0, float sd = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, sd);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// A model with one tensor per (name, values) pair, all 1-D unless shaped.
MiniModel Model(const std::string& name,
                const std::vector<std::pair<std::string, std::vector<float>>>& tensors,
                int layers = 2) {
  MiniModel m;
  m.name = name;
  m.layers = layers;
  for (const auto& [tensor, values] : tensors) {
    m.tensors.push_back(ValuesTensor(tensor, {static_cast<int64_t>(values.size())}, values));
  }
  return m;
}

const MetricDef& Metric(const CompareReport& r, const std::string& key) {
  for (const MetricDef& m : r.metrics) {
    if (m.key == key) return m;
  }
  FAIL("no metric " << key);
  return r.metrics.front();
}

double Value(const CompareReport& r, const std::string& key, size_t tensor, size_t series = 0) {
  return Metric(r, key).value(r.tensors.at(tensor).sums, series);
}

CompareReport Compare(const std::vector<std::string>& models, std::optional<std::string> base = {},
                      int threads = 1, int rank = 0, std::string regex = "", size_t wave = 256) {
  CompareOptions options;
  options.wave_chunks = wave;
  options.models = models;
  options.base = std::move(base);
  options.threads = threads;
  options.rank = rank;
  options.tensor_regex = std::move(regex);
  auto r = CompareModels(options);
  REQUIRE(r.ok());
  return std::move(*r);
}

constexpr const char* kW = "model.layers.0.mlp.down_proj.weight";

TEST_CASE("compare gives cosine 1 for identical tensors and -1 for negated ones", "[compare]") {
  alloy::testing::TempDir dir;
  std::vector<float> a = Normals(3000, 1);
  std::vector<float> neg(a.size());
  std::transform(a.begin(), a.end(), neg.begin(), [](float x) { return -x; });
  const std::string pa = WriteMiniModel(dir, Model("a", {{kW, a}}));
  const std::string pb = WriteMiniModel(dir, Model("b", {{kW, a}}));
  const std::string pn = WriteMiniModel(dir, Model("n", {{kW, neg}}));
  const CompareReport r = Compare({pa, pb, pn});
  REQUIRE(r.tensors.size() == 1);
  REQUIRE(r.pairs.size() == 3);  // A~B, A~C, B~C
  CHECK(Value(r, "cosine", 0, 0) == Approx(1.0).epsilon(1e-15));
  CHECK(Value(r, "rel_l2", 0, 0) == 0);
  CHECK(Value(r, "max_abs_diff", 0, 0) == 0);
  CHECK(Value(r, "sign_agreement", 0, 0) == 1);
  CHECK(Value(r, "cosine", 0, 1) == Approx(-1.0).epsilon(1e-15));
  CHECK(Value(r, "rel_l2", 0, 1) == Approx(2.0).epsilon(1e-15));
  CHECK(Value(r, "sign_agreement", 0, 1) == 0);
  CHECK(r.SeriesLabel(SeriesKind::kPairs, 2) == "B~C");
}

TEST_CASE("compare figures equal the definitions", "[compare]") {
  alloy::testing::TempDir dir;
  const size_t n = 200000;  // several chunks
  std::vector<float> a = Normals(n, 2), b = Normals(n, 3);
  for (size_t i = 0; i < n; i += 11) b[i] = a[i];  // some correlation and equal entries
  a[5] = 0;
  const std::string pa = WriteMiniModel(dir, Model("a", {{kW, a}}));
  const std::string pb = WriteMiniModel(dir, Model("b", {{kW, b}}));
  double aa = 0, bb = 0, ab = 0, dd = 0, mx = 0;
  uint64_t same = 0;
  for (size_t i = 0; i < n; ++i) {
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
    ab += double(a[i]) * b[i];
    const double d = double(a[i]) - b[i];
    dd += d * d;
    mx = std::max(mx, double(std::fabs(a[i] - b[i])));  // float32 differences
    same += ((a[i] > 0) - (a[i] < 0)) == ((b[i] > 0) - (b[i] < 0));
  }
  const CompareReport r = Compare({pa, pb});
  CHECK(Value(r, "cosine", 0) == Approx(ab / std::sqrt(aa * bb)).epsilon(1e-12));
  CHECK(Value(r, "rel_l2", 0) == Approx(std::sqrt(dd / bb)).epsilon(1e-12));
  CHECK(Value(r, "max_abs_diff", 0) == mx);
  CHECK(Value(r, "sign_agreement", 0) == Approx(double(same) / n).epsilon(1e-15));
  CHECK(r.bytes_read == 2 * n * 4);
}

TEST_CASE("compare task vector figures against a base", "[compare]") {
  alloy::testing::TempDir dir;
  const size_t n = 100000;
  const std::vector<float> base = Normals(n, 4);
  std::vector<float> t1 = Normals(n, 5, 0, 0.01f), t2 = Normals(n, 6, 0, 0.01f);
  for (size_t i = 0; i < n; i += 4) t2[i] = 0;  // sparse in places
  std::vector<float> m1(n), m2(n), m3(n);
  for (size_t i = 0; i < n; ++i) {
    m1[i] = base[i] + t1[i];
    m2[i] = base[i] + t2[i];
    m3[i] = base[i] + 0.5f * t1[i];  // τ_3 parallel to τ_1
  }
  const std::string pbase = WriteMiniModel(dir, Model("base", {{kW, base}}));
  const std::string p1 = WriteMiniModel(dir, Model("m1", {{kW, m1}}));
  const std::string p2 = WriteMiniModel(dir, Model("m2", {{kW, m2}}));
  const std::string p3 = WriteMiniModel(dir, Model("m3", {{kW, m3}}));
  const CompareReport r = Compare({p1, p2, p3}, pbase);
  // The task vectors as the comparison sees them: float32 differences of the stored values.
  std::vector<std::vector<float>> tau(3, std::vector<float>(n));
  for (size_t i = 0; i < n; ++i) {
    tau[0][i] = m1[i] - base[i];
    tau[1][i] = m2[i] - base[i];
    tau[2][i] = m3[i] - base[i];
  }
  double base_sq = 0;
  for (float x : base) base_sq += double(x) * x;
  for (size_t m = 0; m < 3; ++m) {
    double sq = 0;
    std::vector<double> mags(n);
    for (size_t i = 0; i < n; ++i) {
      sq += double(tau[m][i]) * tau[m][i];
      mags[i] = std::fabs(double(tau[m][i]));
    }
    CHECK(Value(r, "tau_norm", 0, m) == Approx(std::sqrt(sq)).epsilon(1e-12));
    CHECK(Value(r, "tau_rel_norm", 0, m) == Approx(std::sqrt(sq / base_sq)).epsilon(1e-12));
    std::sort(mags.rbegin(), mags.rend());
    double top = 0, total = 0;
    for (size_t i = 0; i < n; ++i) (i < n / 5 ? top : total) += mags[i];
    total += top;
    CHECK(Value(r, "top20_mass", 0, m) == Approx(top / total).epsilon(1.0 / 128));
  }
  // Independent random task vectors disagree in sign half of the time (±4 standard errors).
  const double conflict = Value(r, "sign_conflict", 0, 0);
  CHECK(std::fabs(conflict - 0.5) < 4 * std::sqrt(0.25 / (0.75 * n)));
  CHECK(std::fabs(Value(r, "tau_cosine", 0, 0)) < 0.02);
  // Parallel task vectors: cosine 1 (up to the float32 differences), no conflict.
  CHECK(Value(r, "tau_cosine", 0, 1) == Approx(1.0).epsilon(1e-3));
  CHECK(Value(r, "sign_conflict", 0, 1) == 0);
  // All three: positions with ≥ 2 non-zero τ and both signs, by the definition.
  uint64_t multi = 0, mixed = 0;
  for (size_t i = 0; i < n; ++i) {
    int pos = 0, neg = 0;
    for (size_t m = 0; m < 3; ++m) {
      pos += tau[m][i] > 0;
      neg += tau[m][i] < 0;
    }
    multi += pos + neg >= 2;
    mixed += pos > 0 && neg > 0;
  }
  CHECK(Value(r, "sign_conflict_all", 0) == Approx(double(mixed) / double(multi)).epsilon(1e-15));
}

TEST_CASE("compare figures do not depend on the thread count", "[compare]") {
  alloy::testing::TempDir dir;
  const size_t n = 300001;  // 5 chunks
  const std::vector<float> base = Normals(n, 7);
  std::vector<float> m1 = Normals(n, 8), m2 = Normals(n, 9);
  const std::string pbase = WriteMiniModel(dir, Model("base", {{kW, base}}));
  const std::string p1 = WriteMiniModel(dir, Model("m1", {{kW, m1}}));
  const std::string p2 = WriteMiniModel(dir, Model("m2", {{kW, m2}}));
  const nlohmann::json one = CompareReportJson(Compare({p1, p2}, pbase, 1), "");
  const nlohmann::json two = CompareReportJson(Compare({p1, p2}, pbase, 2), "");
  CHECK(one.dump() == two.dump());
  // Nor on how many chunks are reduced before they are folded.
  const nlohmann::json waves = CompareReportJson(Compare({p1, p2}, pbase, 2, 0, "", 2), "");
  CHECK(one.dump() == waves.dump());
}

TEST_CASE("compare --rank gives the rank of a task vector with equal singular values", "[compare]") {
  alloy::testing::TempDir dir;
  const int64_t rows = 64, cols = 48;
  const size_t r = 3;
  // Orthonormal u (rows × r) and v (cols × r) by Gram–Schmidt of random columns.
  auto orthonormal = [](size_t n, size_t k, unsigned seed) {
    std::vector<std::vector<double>> q;
    std::vector<float> g = Normals(n * k, seed);
    for (size_t j = 0; j < k; ++j) {
      std::vector<double> c(n);
      for (size_t i = 0; i < n; ++i) c[i] = g[j * n + i];
      for (const auto& p : q) {
        double d = 0;
        for (size_t i = 0; i < n; ++i) d += p[i] * c[i];
        for (size_t i = 0; i < n; ++i) c[i] -= d * p[i];
      }
      double norm = 0;
      for (double x : c) norm += x * x;
      for (double& x : c) x /= std::sqrt(norm);
      q.push_back(c);
    }
    return q;
  };
  const auto u = orthonormal(rows, r, 21), v = orthonormal(cols, r, 22);
  const std::vector<float> base = Normals(rows * cols, 23);
  std::vector<float> ft(base.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double delta = 0;
      for (size_t k = 0; k < r; ++k) delta += 10.0 * u[k][i] * v[k][j];  // σ = 10, three times
      ft[i * cols + j] = static_cast<float>(base[i * cols + j] + delta);
    }
  }
  const MiniModel mb{"base", {ValuesTensor(kW, {rows, cols}, base)}, 1};
  const MiniModel mf{"ft", {ValuesTensor(kW, {rows, cols}, ft)}, 1};
  const std::string pb = WriteMiniModel(dir, mb), pf = WriteMiniModel(dir, mf);
  const CompareReport one = Compare({pf}, pb, 1, 8);
  CHECK(Value(one, "effective_rank", 0) == Approx(3.0).epsilon(1e-4));
  CHECK(Value(one, "energy_top_k", 0) == Approx(1.0).epsilon(1e-6));
  const CompareReport two = Compare({pf}, pb, 2, 8);
  CHECK(Value(two, "effective_rank", 0) == Value(one, "effective_rank", 0));
  // A rank smaller than the task vector's: the energy is the top-2 share.
  const CompareReport small = Compare({pf}, pb, 1, 2);
  CHECK(Value(small, "energy_top_k", 0) == Approx(2.0 / 3.0).epsilon(1e-4));
  CHECK(Value(small, "effective_rank", 0) == Approx(4.0 / 3.0).epsilon(1e-4));
}

TEST_CASE("compare aggregates a layer as the concatenation of its tensors", "[compare]") {
  alloy::testing::TempDir dir;
  const std::vector<float> q1 = Normals(500, 10), q2 = Normals(500, 11);
  const std::vector<float> k1 = Normals(300, 12), k2 = Normals(300, 13, 0, 3);
  const std::string qn = "model.layers.1.self_attn.q_proj.weight";
  const std::string kn = "model.layers.1.self_attn.k_proj.weight";
  const std::string pa = WriteMiniModel(dir, Model("a", {{qn, q1}, {kn, k1}}));
  const std::string pb = WriteMiniModel(dir, Model("b", {{qn, q2}, {kn, k2}}));
  const CompareReport r = Compare({pa, pb});
  REQUIRE(r.tensors.size() == 2);
  CHECK(r.tensors[0].layer == 1);
  // In file order: safetensors files list tensors by name.
  CHECK(r.tensors[0].kind == ModuleKind::kAttnK);
  CHECK(r.tensors[1].kind == ModuleKind::kAttnQ);
  std::vector<float> a = q1, b = q2;
  a.insert(a.end(), k1.begin(), k1.end());
  b.insert(b.end(), k2.begin(), k2.end());
  double aa = 0, bb = 0, ab = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
    ab += double(a[i]) * b[i];
  }
  const std::vector<CompareCell> layers = AggregateLayers(r);
  REQUIRE(layers.size() == 1);
  CHECK(layers[0].layer == 1);
  CHECK(layers[0].sums.n_tensors == 2);
  CHECK(Metric(r, "cosine").value(layers[0].sums, 0) == Approx(ab / std::sqrt(aa * bb)).epsilon(1e-12));
  CHECK(AggregateCells(r).size() == 2);
}

TEST_CASE("compare lists tensors it cannot compare and goes on", "[compare]") {
  alloy::testing::TempDir dir;
  const std::vector<float> v = Normals(64, 14);
  const std::vector<float> w = Normals(32, 15);
  const std::string pa = WriteMiniModel(
      dir, Model("a", {{kW, v}, {"model.norm.weight", w}, {"lm_head.weight", v}}));
  const std::string pb = WriteMiniModel(
      dir, Model("b", {{kW, v}, {"model.norm.weight", v}, {"model.embed_tokens.weight", v}}));
  const CompareReport r = Compare({pa, pb});
  REQUIRE(r.tensors.size() == 1);
  REQUIRE(r.mismatches.size() == 3);
  // A's tensors in A's file order (by name), then B's own.
  CHECK(r.mismatches[0].name == "lm_head.weight");
  CHECK(r.mismatches[0].reason == "only in A");
  CHECK(r.mismatches[1].name == "model.norm.weight");
  CHECK(r.mismatches[1].reason == "shapes differ");
  CHECK(r.mismatches[2].name == "model.embed_tokens.weight");
  CHECK(r.mismatches[2].reason == "only in B");
  const nlohmann::json j = CompareReportJson(r, "cmd");
  CHECK(j["mismatches"][0]["shapes"][1].is_null());
  CHECK(j["mismatches"][1]["shapes"][0] == nlohmann::json({32}));
}

TEST_CASE("compare refuses what it cannot do with a hint", "[compare]") {
  alloy::testing::TempDir dir;
  const std::string pa = WriteMiniModel(dir, Model("a", {{kW, Normals(8, 1)}}));
  const std::string pb = WriteMiniModel(dir, Model("b", {{"model.norm.weight", Normals(8, 2)}}));
  auto run = [&](CompareOptions o) { return CompareModels(o).status(); };
  CompareOptions one;
  one.models = {pa};
  CHECK(run(one).code() == formats::ErrorCode::kInvalidArgument);
  CHECK(run(one).message().find("--base") != std::string::npos);
  CompareOptions disjoint;
  disjoint.models = {pa, pb};
  CHECK(run(disjoint).message().find("share no tensor") != std::string::npos);
  CompareOptions rank = disjoint;
  rank.models = {pa, pa};
  rank.rank = 4;
  CHECK(run(rank).message().find("--base") != std::string::npos);
  CompareOptions regex;
  regex.models = {pa, pa};
  regex.tensor_regex = "([";
  CHECK(run(regex).message().find("not a valid regular expression") != std::string::npos);
  regex.tensor_regex = "nothing-matches";
  CHECK(run(regex).message().find("matches --tensors") != std::string::npos);
  CompareOptions missing;
  missing.models = {pa, dir.Join("nope")};
  CHECK(run(missing).code() == formats::ErrorCode::kNotFound);
}

TEST_CASE("compare reports NaN as undefined and skips integer tensors", "[compare]") {
  alloy::testing::TempDir dir;
  std::vector<float> a = Normals(5000, 30), b = Normals(5000, 31);
  b[4321] = std::nanf("");
  MiniModel ma = Model("a", {{kW, a}}), mb = Model("b", {{kW, b}});
  ma.tensors.push_back(alloy::testing::PatternTensor("model.pos_ids", formats::DType::kI32, {16}, 1));
  mb.tensors.push_back(alloy::testing::PatternTensor("model.pos_ids", formats::DType::kI32, {16}, 2));
  const CompareReport r = Compare({WriteMiniModel(dir, ma), WriteMiniModel(dir, mb)});
  REQUIRE(r.tensors.size() == 1);
  CHECK(std::isnan(Value(r, "max_abs_diff", 0)));
  CHECK(std::isnan(Value(r, "cosine", 0)));
  CHECK(std::isnan(Metric(r, "max_abs_diff").value(AggregateAll(r), 0)));
  REQUIRE(r.mismatches.size() == 1);
  CHECK(r.mismatches[0].name == "model.pos_ids");
  CHECK(r.mismatches[0].reason == "not a float dtype");
}

TEST_CASE("compare of one model against a base and a frozen tensor's spectrum", "[compare]") {
  alloy::testing::TempDir dir;
  const std::vector<float> base = Normals(64 * 32, 40);
  std::vector<float> ft = base;
  const MiniModel mb{"base", {ValuesTensor(kW, {64, 32}, base)}, 1};
  const MiniModel mf{"ft", {ValuesTensor(kW, {64, 32}, ft)}, 1};
  const CompareReport r = Compare({WriteMiniModel(dir, mf)}, WriteMiniModel(dir, mb), 1, 4);
  REQUIRE(r.pairs.empty());
  CHECK(r.metrics.front().key == "tau_norm");
  CHECK(Value(r, "tau_norm", 0) == 0);
  // A frozen tensor has rank 0 and keeps the group's figure defined.
  CHECK(Value(r, "effective_rank", 0) == 0);
  CHECK(Value(r, "energy_top_k", 0) == 1);
  CHECK(Metric(r, "effective_rank").value(AggregateAll(r), 0) == 0);
}

TEST_CASE("compare --tensors keeps only matching names", "[compare]") {
  alloy::testing::TempDir dir;
  const std::vector<float> v = Normals(16, 3);
  const std::string pa = WriteMiniModel(dir, Model("a", {{kW, v}, {"model.norm.weight", v}}));
  const CompareReport r = Compare({pa, pa}, {}, 1, 0, "mlp");
  REQUIRE(r.tensors.size() == 1);
  CHECK(r.tensors[0].name == kW);
}

TEST_CASE("compare undefined figures are null in JSON and empty in CSV", "[compare]") {
  alloy::testing::TempDir dir;
  const std::vector<float> v = Normals(16, 3);
  const std::string pa = WriteMiniModel(dir, Model("a", {{kW, v}}));
  const CompareReport r = Compare({pa, pa}, pa);  // both task vectors are zero
  CHECK(std::isnan(Value(r, "tau_cosine", 0)));
  CHECK(std::isnan(Value(r, "sign_conflict", 0)));
  const nlohmann::json j = CompareReportJson(r, "alloy compare a a --base a");
  CHECK(j["format"] == "alloy-compare/1");
  CHECK(j["command"] == "alloy compare a a --base a");
  CHECK(j["tensors"][0]["values"]["tau_cosine"][0].is_null());
  CHECK(j["tensors"][0]["values"]["cosine"][0] == 1.0);
  CHECK(j["series"]["pairs"] == nlohmann::json({"A~B"}));
  CHECK(j["layers_values"].size() == 1);
  CHECK(j["summary"]["tensors"] == 1);
  const std::string csv = CompareReportCsv(r);
  CHECK(csv.rfind("tensor,layer,kind,shape,dtypes,numel,cosine[A~B],", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 2);
  CHECK(csv.find(",,") != std::string::npos);  // the undefined figures
}

TEST_CASE("ModuleKindOf sorts common tensor names", "[compare]") {
  CHECK(ModuleKindOf("model.embed_tokens.weight") == ModuleKind::kEmbedding);
  CHECK(ModuleKindOf("lm_head.weight") == ModuleKind::kHead);
  CHECK(ModuleKindOf("model.layers.3.self_attn.q_proj.weight") == ModuleKind::kAttnQ);
  CHECK(ModuleKindOf("model.layers.3.self_attn.k_proj.bias") == ModuleKind::kAttnK);
  CHECK(ModuleKindOf("model.layers.3.self_attn.v_proj.weight") == ModuleKind::kAttnV);
  CHECK(ModuleKindOf("model.layers.3.self_attn.o_proj.weight") == ModuleKind::kAttnO);
  CHECK(ModuleKindOf("model.layers.3.mlp.gate_proj.weight") == ModuleKind::kMlpGate);
  CHECK(ModuleKindOf("model.layers.3.mlp.up_proj.weight") == ModuleKind::kMlpUp);
  CHECK(ModuleKindOf("model.layers.3.mlp.down_proj.weight") == ModuleKind::kMlpDown);
  CHECK(ModuleKindOf("model.layers.3.post_attention_layernorm.weight") == ModuleKind::kNorm);
  CHECK(ModuleKindOf("model.layers.3.self_attn.q_norm.weight") == ModuleKind::kNorm);
  CHECK(ModuleKindOf("model.norm.weight") == ModuleKind::kNorm);
  CHECK(ModuleKindOf("model.layers.3.block_sparse_moe.experts.0.w1.weight") == ModuleKind::kMlpGate);
  CHECK(ModuleKindOf("model.rotary_emb.inv_freq") == ModuleKind::kOther);
}

}  // namespace
}  // namespace alloy::merge
