// Synthetic `alloy compare` reports (the JSON of CompareReportJson) for the
// HTML renderer's tests: the Catch test (compare_html_test.cc) and the
// headless-Chromium fixture (compare_html_fixture.cc). Built by hand rather
// than by CompareModels so the page can be tested with every metric, nulls,
// mismatches and hostile strings without any checkpoint on disk.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace alloy::merge::testing_support {

// A tensor name that tries to end the data <script> element, open a comment
// (which would put the tokenizer in the double-escaped state), and carries a
// U+2028 (a line terminator in pre-ES2019 JavaScript).
inline const std::string kHostileTensorName =
    "model.layers.1.mlp.</script><script>alert(1)</script><!--<script>.x\xE2\x80\xA8y.weight";
// A warning with an upper-case closing tag, which the tokenizer also honours.
inline const std::string kHostileWarning = "odd name </SCRIPT ><b>bold</b> \xE2\x80\xA9 end";

namespace compare_html_detail {

struct MetricSpec {
  const char* key;
  const char* label;
  const char* description;
  const char* series;
  int better;
  double lo, hi;  // range of the synthetic values
  bool matrix_only;  // undefined for 1-D tensors (spectrum metrics)
};

inline const std::vector<MetricSpec>& Metrics() {
  static const std::vector<MetricSpec> metrics = {
      {"cosine", "cosine similarity", "Cosine of the angle between the two weight tensors.",
       "pairs", 1, 0.80, 0.9995, false},
      {"rel_l2", "relative L2 distance", "||a - b|| / sqrt(||a|| ||b||).", "pairs", -1, 0.01, 0.6,
       false},
      {"max_abs_diff", "max |a - b|", "Largest absolute difference of one element.", "pairs", -1,
       0.002, 0.4, false},
      {"sign_agreement", "sign agreement", "Share of elements whose signs agree.", "pairs", 1,
       0.6, 0.99, false},
      {"tau_norm", "task vector norm", "||model - base||.", "models", 0, 0.5, 30.0, false},
      {"tau_rel_norm", "relative task vector norm", "||model - base|| / ||base||.", "models", 0,
       0.0005, 0.05, false},
      {"top20_mass", "top-20% mass", "Share of sum |tau| held by the largest 20% of entries.",
       "models", 0, 0.4, 0.8, false},
      {"tau_cosine", "task vector cosine", "Cosine between two task vectors.", "pairs", 0, -0.05,
       0.45, false},
      {"sign_conflict", "sign conflict", "Share of shared non-zero entries with opposite signs.",
       "pairs", -1, 0.3, 0.5, false},
      {"sign_conflict_all", "sign conflict (all)",
       "Share of entries changed by two or more models where both signs occur.", "all", -1, 0.35,
       0.6, false},
      {"effective_rank", "effective rank", "(sum sigma)^2 / ||tau||^2 of the top-k spectrum.",
       "models", 0, 1.5, 8.0, true},
      {"energy_top_k", "top-k energy", "Share of ||tau||^2 in the top-k singular values.",
       "models", 0, 0.2, 0.9, true},
  };
  return metrics;
}

inline size_t SeriesCount(const std::string& series) {
  return series == "all" ? 1 : 3;  // 3 models, so 3 pairs too
}

struct SyntheticTensor {
  std::string name;
  int layer;  // -1: outside the layers
  std::string kind;
  std::vector<int64_t> shape;
};

// A smooth, deterministic value in [lo, hi] that varies with layer, kind and
// series, so the charts and the heatmap have something to show.
inline double SyntheticValue(const MetricSpec& m, size_t metric_index, int layer,
                             size_t kind_index, size_t s, int layers) {
  const double x = layer < 0 ? 0.5 : (layer + 0.5) / std::max(layers, 1);
  const double wave = 0.5 + 0.32 * std::sin(3.1 * x + 0.9 * static_cast<double>(kind_index) +
                                            1.7 * static_cast<double>(s) +
                                            0.8 * static_cast<double>(metric_index)) +
                      0.12 * std::cos(7.0 * x * static_cast<double>(s + 1));
  const double t = std::min(1.0, std::max(0.0, wave));
  return m.lo + (m.hi - m.lo) * t;
}

inline nlohmann::json Values(const std::map<std::string, std::vector<double>>& sums,
                             const std::map<std::string, std::vector<double>>& weights) {
  nlohmann::json values = nlohmann::json::object();
  for (const MetricSpec& m : Metrics()) {
    nlohmann::json list = nlohmann::json::array();
    const auto& sum = sums.at(m.key);
    const auto& weight = weights.at(m.key);
    for (size_t s = 0; s < sum.size(); ++s) {
      if (weight[s] > 0) {
        list.push_back(sum[s] / weight[s]);
      } else {
        list.push_back(nullptr);
      }
    }
    values[m.key] = std::move(list);
  }
  return values;
}

// Accumulates numel-weighted means of the tensors' values; a null is skipped.
struct Group {
  int64_t tensors = 0;
  int64_t numel = 0;
  std::map<std::string, std::vector<double>> sums, weights;
  void Add(const nlohmann::json& values, int64_t n) {
    ++tensors;
    numel += n;
    for (const MetricSpec& m : Metrics()) {
      auto& sum = sums[m.key];
      auto& weight = weights[m.key];
      const size_t count = SeriesCount(m.series);
      sum.resize(count, 0.0);
      weight.resize(count, 0.0);
      for (size_t s = 0; s < count; ++s) {
        const nlohmann::json& v = values[m.key][s];
        if (v.is_null()) continue;
        sum[s] += v.get<double>() * static_cast<double>(n);
        weight[s] += static_cast<double>(n);
      }
    }
  }
  nlohmann::json Json() const {
    nlohmann::json values = nlohmann::json::object();
    if (!sums.empty()) values = Values(sums, weights);
    return values;
  }
};

}  // namespace compare_html_detail

// A report of 3 models (A, B, C) against a base, `layers` Llama-like layers,
// the spectrum metrics at rank 8, every module kind, scattered nulls, one
// mismatch, two warnings, and the hostile strings above.
inline nlohmann::json SyntheticCompareReport(int layers = 4) {
  using namespace compare_html_detail;
  using nlohmann::json;
  const std::vector<std::string> kinds = {"embed", "q",    "k",    "v",    "o",    "gate",
                                          "up",    "down", "norm", "head", "other"};
  std::vector<SyntheticTensor> list;
  list.push_back({"model.embed_tokens.weight", -1, "embed", {32000, 2048}});
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    list.push_back({p + "input_layernorm.weight", l, "norm", {2048}});
    list.push_back({p + "self_attn.q_proj.weight", l, "q", {2048, 2048}});
    list.push_back({p + "self_attn.k_proj.weight", l, "k", {512, 2048}});
    list.push_back({p + "self_attn.v_proj.weight", l, "v", {512, 2048}});
    list.push_back({p + "self_attn.o_proj.weight", l, "o", {2048, 2048}});
    list.push_back({p + "post_attention_layernorm.weight", l, "norm", {2048}});
    list.push_back({p + "mlp.gate_proj.weight", l, "gate", {5632, 2048}});
    list.push_back({p + "mlp.up_proj.weight", l, "up", {5632, 2048}});
    list.push_back({p + "mlp.down_proj.weight", l, "down", {2048, 5632}});
    if (l == 1) list.push_back({kHostileTensorName, l, "other", {64}});
  }
  list.push_back({"model.norm.weight", -1, "norm", {2048}});
  list.push_back({"lm_head.weight", -1, "head", {32000, 2048}});

  json tensors = json::array();
  std::map<std::pair<int, size_t>, Group> cells;  // (layer, kind index)
  std::map<int, Group> per_layer;
  Group whole;
  for (const SyntheticTensor& t : list) {
    const size_t kind_index =
        static_cast<size_t>(std::find(kinds.begin(), kinds.end(), t.kind) - kinds.begin());
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    json values = json::object();
    for (size_t mi = 0; mi < Metrics().size(); ++mi) {
      const MetricSpec& m = Metrics()[mi];
      json series = json::array();
      for (size_t s = 0; s < SeriesCount(m.series); ++s) {
        // Nulls: spectrum figures of 1-D tensors, and a few scattered holes.
        const bool hole = (m.matrix_only && t.shape.size() != 2) ||
                          (std::string(m.key) == "cosine" && t.layer == 0 && t.kind == "k" &&
                           s == 2) ||
                          (std::string(m.key) == "tau_cosine" && t.layer == 2 && t.kind == "v");
        if (hole) {
          series.push_back(nullptr);
        } else {
          series.push_back(SyntheticValue(m, mi, t.layer, kind_index, s, layers));
        }
      }
      values[m.key] = std::move(series);
    }
    std::vector<std::string> dtypes = {"bf16", "bf16", "bf16", "bf16"};
    if (t.kind == "norm") dtypes[2] = "f32";
    tensors.push_back({{"name", t.name},
                       {"layer", t.layer < 0 ? json(nullptr) : json(t.layer)},
                       {"kind", t.kind},
                       {"shape", t.shape},
                       {"dtypes", dtypes},
                       {"numel", numel},
                       {"values", values}});
    cells[{t.layer, kind_index}].Add(values, numel);
    if (t.layer >= 0) per_layer[t.layer].Add(values, numel);
    whole.Add(values, numel);
  }

  json cell_list = json::array();
  for (const auto& [key, group] : cells) {  // layer -1 first, then by kind: as AggregateCells
    cell_list.push_back({{"layer", key.first < 0 ? json(nullptr) : json(key.first)},
                         {"kind", kinds[key.second]},
                         {"tensors", group.tensors},
                         {"numel", group.numel},
                         {"values", group.Json()}});
  }
  json layers_values = json::array();
  for (const auto& [layer, group] : per_layer) {
    layers_values.push_back({{"layer", layer},
                             {"tensors", group.tensors},
                             {"numel", group.numel},
                             {"values", group.Json()}});
  }
  json metrics = json::array();
  for (const MetricSpec& m : Metrics()) {
    metrics.push_back({{"key", m.key},
                       {"label", m.label},
                       {"description", m.description},
                       {"series", m.series},
                       {"better", m.better}});
  }
  return json{
      {"format", "alloy-compare/1"},
      {"alloy_version", "0.4.0"},
      {"command", "alloy compare merged/ ft1/ ft2/ --base base/ --rank 8 --html r.html"},
      {"models",
       {{{"label", "A"}, {"path", "merged/"}},
        {{"label", "B"}, {"path", "ft1/"}},
        {{"label", "C"}, {"path", "ft2/"}}}},
      {"base", {{"label", "base"}, {"path", "base/"}}},
      {"rank", 8},
      {"series", {{"pairs", {"A~B", "A~C", "B~C"}}, {"models", {"A", "B", "C"}}, {"all", {"all"}}}},
      {"metrics", metrics},
      {"kinds", kinds},
      {"layers", layers},
      {"cells", cell_list},
      {"layers_values", layers_values},
      {"tensors", tensors},
      {"mismatches",
       {{{"name", "model.layers.0.self_attn.rotary_emb.inv_freq"},
         {"reason", "only in A"},
         {"shapes", {{64}, nullptr, nullptr, nullptr}},
         {"dtypes", {"f32", nullptr, nullptr, nullptr}}}}},
      {"warnings",
       {"B and C have different tokenizer files; embeddings are compared row by row",
        kHostileWarning}},
      {"summary",
       {{"tensors", whole.tensors}, {"numel", whole.numel}, {"values", whole.Json()}}},
  };
}

// A report in which nothing could be compared: two models, no base, the four
// weight metrics, and empty cells, layers and tensors.
inline nlohmann::json EmptyCompareReport() {
  using nlohmann::json;
  json metrics = json::array();
  json summary_values = json::object();
  for (const compare_html_detail::MetricSpec& m : compare_html_detail::Metrics()) {
    if (std::string(m.series) != "pairs" || std::string(m.key) == "tau_cosine" ||
        std::string(m.key) == "sign_conflict") {
      continue;
    }
    metrics.push_back({{"key", m.key},
                       {"label", m.label},
                       {"description", m.description},
                       {"series", "pairs"},
                       {"better", m.better}});
    summary_values[m.key] = {nullptr};
  }
  return json{
      {"format", "alloy-compare/1"},
      {"alloy_version", "0.4.0"},
      {"command", "alloy compare a/ b/ --html r.html"},
      {"models", {{{"label", "A"}, {"path", "a/"}}, {{"label", "B"}, {"path", "b/"}}}},
      {"base", nullptr},
      {"rank", 0},
      {"series", {{"pairs", {"A~B"}}, {"models", {"A", "B"}}, {"all", {"all"}}}},
      {"metrics", metrics},
      {"kinds", {"embed", "q", "k", "v", "o", "gate", "up", "down", "norm", "head", "other"}},
      {"layers", 0},
      {"cells", json::array()},
      {"layers_values", json::array()},
      {"tensors", json::array()},
      {"mismatches", json::array()},
      {"warnings", json::array()},
      {"summary", {{"tensors", 0}, {"numel", 0}, {"values", summary_values}}},
  };
}

}  // namespace alloy::merge::testing_support
