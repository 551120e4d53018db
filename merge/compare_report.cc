// The figures of `alloy compare` (CompareMetrics), their aggregation by layer
// and module kind, and the JSON and CSV forms of a report.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "merge/compare.h"

namespace alloy::merge {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double Ratio(double num, double den) { return den > 0 ? num / den : kNaN; }

// Cosine of two vectors from their sums; two zero vectors are identical (1),
// a zero and a non-zero vector are unrelated (0).
double Cosine(double ab, double aa, double bb) {
  if (aa == 0 && bb == 0) return 1;
  if (aa == 0 || bb == 0) return 0;
  return ab / std::sqrt(aa * bb);
}

template <typename T>
void AddVector(std::vector<T>& into, const std::vector<T>& from,
               const std::function<void(T&, const T&)>& add) {
  if (into.empty()) {
    into = from;
    return;
  }
  for (size_t i = 0; i < into.size() && i < from.size(); ++i) add(into[i], from[i]);
}

nlohmann::json Number(double v) {
  if (!std::isfinite(v)) return nullptr;
  return v;
}

nlohmann::json Values(const CompareReport& report, const TensorSums& sums) {
  nlohmann::json values = nlohmann::json::object();
  for (const MetricDef& m : report.metrics) {
    nlohmann::json arr = nlohmann::json::array();
    for (size_t s = 0; s < report.SeriesCount(m.series); ++s) arr.push_back(Number(m.value(sums, s)));
    values[m.key] = std::move(arr);
  }
  return values;
}

nlohmann::json Layer(int64_t layer) {
  if (layer < 0) return nullptr;
  return layer;
}

std::string_view SeriesName(SeriesKind kind) {
  switch (kind) {
    case SeriesKind::kPairs: return "pairs";
    case SeriesKind::kModels: return "models";
    case SeriesKind::kAll: return "all";
  }
  return "all";
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? " " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string CsvNumber(double v) {
  if (!std::isfinite(v)) return "";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

void TensorSums::Add(const TensorSums& o) {
  numel += o.numel;
  n_tensors += o.n_tensors;
  base_sq += o.base_sq;
  multi_nonzero += o.multi_nonzero;
  mixed_sign += o.mixed_sign;
  rank_count += o.rank_count;
  AddVector<double>(sq, o.sq, [](double& a, const double& b) { a += b; });
  AddVector<PairSums>(pairs, o.pairs, [](PairSums& a, const PairSums& b) {
    a.dot += b.dot;
    a.diff_sq += b.diff_sq;
    a.max_abs_diff = std::isnan(a.max_abs_diff) || b.max_abs_diff <= a.max_abs_diff
                         ? a.max_abs_diff
                         : b.max_abs_diff;  // NaN wins, as per tensor
    a.same_sign += b.same_sign;
  });
  AddVector<double>(tau_sq, o.tau_sq, [](double& a, const double& b) { a += b; });
  AddVector<double>(tau_abs, o.tau_abs, [](double& a, const double& b) { a += b; });
  AddVector<double>(tau_top_abs, o.tau_top_abs, [](double& a, const double& b) { a += b; });
  AddVector<TaskPairSums>(tau_pairs, o.tau_pairs, [](TaskPairSums& a, const TaskPairSums& b) {
    a.dot += b.dot;
    a.both_nonzero += b.both_nonzero;
    a.opposite += b.opposite;
  });
  AddVector<RankStats>(rank, o.rank, [](RankStats& a, const RankStats& b) {
    a.effective_rank += b.effective_rank;
    a.energy_top_k += b.energy_top_k;
  });
}

void CompareReport::SetModels(size_t n) {
  labels.clear();
  pairs.clear();
  for (size_t i = 0; i < n; ++i) labels.push_back(std::string(1, static_cast<char>('A' + i)));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) pairs.emplace_back(i, j);
  }
}

size_t CompareReport::SeriesCount(SeriesKind kind) const {
  switch (kind) {
    case SeriesKind::kPairs: return pairs.size();
    case SeriesKind::kModels: return labels.size();
    case SeriesKind::kAll: return 1;
  }
  return 0;
}

std::string CompareReport::SeriesLabel(SeriesKind kind, size_t s) const {
  switch (kind) {
    case SeriesKind::kPairs: return labels[pairs[s].first] + "~" + labels[pairs[s].second];
    case SeriesKind::kModels: return labels[s];
    case SeriesKind::kAll: return "all";
  }
  return "";
}

std::vector<MetricDef> CompareMetrics(size_t n_models, bool has_base, bool has_rank) {
  // Pair index → (i, j), as CompareModels orders them.
  CompareReport shape;
  shape.SetModels(n_models);
  const std::vector<std::pair<size_t, size_t>> pairs = shape.pairs;
  std::vector<MetricDef> m;
  const bool has_pairs = !pairs.empty();  // one model with a base has no pairs
  if (has_pairs) {
    m.push_back({"cosine", "cosine similarity",
                 "cos(A, B) = A·B / (‖A‖‖B‖): 1 for identical directions, −1 for negated",
                 SeriesKind::kPairs, +1, [pairs](const TensorSums& s, size_t p) {
                   return Cosine(s.pairs[p].dot, s.sq[pairs[p].first], s.sq[pairs[p].second]);
                 }});
    m.push_back({"rel_l2", "relative L2 distance",
                 "‖A − B‖ / ‖B‖: 0 for equal tensors", SeriesKind::kPairs, -1,
                 [pairs](const TensorSums& s, size_t p) {
                   const double bb = s.sq[pairs[p].second];
                   if (bb == 0) return s.pairs[p].diff_sq == 0 ? 0.0 : kNaN;
                   return std::sqrt(s.pairs[p].diff_sq / bb);
                 }});
    m.push_back({"max_abs_diff", "max |A − B|", "the largest elementwise difference",
                 SeriesKind::kPairs, -1,
                 [](const TensorSums& s, size_t p) { return s.pairs[p].max_abs_diff; }});
    m.push_back({"sign_agreement", "equal signs",
                 "share of positions where A and B have the same sign (0 counts as its own sign)",
                 SeriesKind::kPairs, +1, [](const TensorSums& s, size_t p) {
                   return Ratio(static_cast<double>(s.pairs[p].same_sign),
                                static_cast<double>(s.numel));
                 }});
  }
  if (has_base) {
    m.push_back({"tau_norm", "task vector norm ‖τ‖", "‖M − base‖, the size of the fine-tune",
                 SeriesKind::kModels, 0,
                 [](const TensorSums& s, size_t i) { return std::sqrt(s.tau_sq[i]); }});
    m.push_back({"tau_rel_norm", "relative task vector norm", "‖M − base‖ / ‖base‖",
                 SeriesKind::kModels, 0, [](const TensorSums& s, size_t i) {
                   if (s.base_sq == 0) return s.tau_sq[i] == 0 ? 0.0 : kNaN;
                   return std::sqrt(s.tau_sq[i] / s.base_sq);
                 }});
    m.push_back({"top20_mass", "|τ| mass in the top 20%",
                 "share of Σ|τ| held by the 20% largest-magnitude entries: near 1 means "
                 "trimming (TIES, DARE) loses little",
                 SeriesKind::kModels, 0,
                 [](const TensorSums& s, size_t i) {
                   return Ratio(s.tau_top_abs[i], s.tau_abs[i]);
                 }});
    if (has_pairs) {
      m.push_back({"tau_cosine", "task vector cosine",
                   "cos(τ_A, τ_B): whether two fine-tunes moved the base the same way",
                   SeriesKind::kPairs, +1, [pairs](const TensorSums& s, size_t p) {
                     const double aa = s.tau_sq[pairs[p].first], bb = s.tau_sq[pairs[p].second];
                     if (aa == 0 || bb == 0) return kNaN;
                     return s.tau_pairs[p].dot / std::sqrt(aa * bb);
                   }});
      m.push_back({"sign_conflict", "sign conflict",
                   "share of positions where τ_A and τ_B are both non-zero and disagree in sign: "
                   "the interference TIES resolves (0.5 for unrelated task vectors)",
                   SeriesKind::kPairs, -1, [](const TensorSums& s, size_t p) {
                     return Ratio(static_cast<double>(s.tau_pairs[p].opposite),
                                  static_cast<double>(s.tau_pairs[p].both_nonzero));
                   }});
    }
    if (n_models >= 3) {
      m.push_back({"sign_conflict_all", "sign conflict (all models)",
                   "share of positions with at least two non-zero task vectors where both "
                   "signs occur",
                   SeriesKind::kAll, -1, [](const TensorSums& s, size_t) {
                     return Ratio(static_cast<double>(s.mixed_sign),
                                  static_cast<double>(s.multi_nonzero));
                   }});
    }
  }
  if (has_rank) {
    m.push_back({"effective_rank", "effective rank (top k)",
                 "(Σσ)² / ‖τ‖²_F over the top-k singular values σ of a 2-D task vector: the "
                 "rank when those values are equal; a lower bound when energy_top_k < 1",
                 SeriesKind::kModels, 0, [](const TensorSums& s, size_t i) {
                   if (s.rank.empty() || s.rank_count == 0) return kNaN;
                   return s.rank[i].effective_rank / static_cast<double>(s.rank_count);
                 }});
    m.push_back({"energy_top_k", "energy in the top k",
                 "Σ_{i<k} σ_i² / ‖τ‖²_F: how much of a 2-D task vector a rank-k LoRA can hold",
                 SeriesKind::kModels, +1, [](const TensorSums& s, size_t i) {
                   if (s.rank.empty() || s.rank_count == 0) return kNaN;
                   return s.rank[i].energy_top_k / static_cast<double>(s.rank_count);
                 }});
  }
  return m;
}

std::vector<CompareCell> AggregateCells(const CompareReport& report) {
  std::map<std::pair<int64_t, int>, TensorSums> groups;
  for (const TensorComparison& t : report.tensors) {
    groups[{t.layer, static_cast<int>(t.kind)}].Add(t.sums);
  }
  std::vector<CompareCell> cells;
  for (auto& [key, sums] : groups) {
    cells.push_back({key.first, static_cast<ModuleKind>(key.second), std::move(sums)});
  }
  return cells;
}

std::vector<CompareCell> AggregateLayers(const CompareReport& report) {
  std::map<int64_t, TensorSums> groups;
  for (const TensorComparison& t : report.tensors) {
    if (t.layer >= 0) groups[t.layer].Add(t.sums);
  }
  std::vector<CompareCell> layers;
  for (auto& [layer, sums] : groups) layers.push_back({layer, ModuleKind::kOther, std::move(sums)});
  return layers;
}

TensorSums AggregateAll(const CompareReport& report) {
  TensorSums all;
  for (const TensorComparison& t : report.tensors) all.Add(t.sums);
  return all;
}

nlohmann::json CompareReportJson(const CompareReport& report, const std::string& command) {
  using nlohmann::json;
  json j;
  j["format"] = "alloy-compare/1";
#ifdef ALLOY_VERSION
  j["alloy_version"] = ALLOY_VERSION;
#endif
  j["command"] = command;
  j["models"] = json::array();
  for (size_t i = 0; i < report.models.size(); ++i) {
    j["models"].push_back({{"label", report.labels[i]}, {"path", report.models[i]}});
  }
  j["base"] = report.base ? json{{"label", "base"}, {"path", *report.base}} : json(nullptr);
  j["rank"] = report.rank;
  j["bytes_read"] = report.bytes_read;
  json series = json::object();
  for (SeriesKind kind : {SeriesKind::kPairs, SeriesKind::kModels, SeriesKind::kAll}) {
    json labels = json::array();
    for (size_t s = 0; s < report.SeriesCount(kind); ++s) labels.push_back(report.SeriesLabel(kind, s));
    series[std::string(SeriesName(kind))] = std::move(labels);
  }
  j["series"] = std::move(series);
  j["metrics"] = json::array();
  for (const MetricDef& m : report.metrics) {
    j["metrics"].push_back({{"key", m.key},
                            {"label", m.label},
                            {"description", m.description},
                            {"series", SeriesName(m.series)},
                            {"better", m.better}});
  }
  j["kinds"] = json::array();
  for (int k = 0; k < kNumModuleKinds; ++k) {
    j["kinds"].push_back(ModuleKindName(static_cast<ModuleKind>(k)));
  }
  int64_t n_layers = 0;
  for (const TensorComparison& t : report.tensors) n_layers = std::max(n_layers, t.layer + 1);
  j["layers"] = n_layers;
  j["cells"] = json::array();
  for (const CompareCell& c : AggregateCells(report)) {
    j["cells"].push_back({{"layer", Layer(c.layer)},
                          {"kind", ModuleKindName(c.kind)},
                          {"tensors", c.sums.n_tensors},
                          {"numel", c.sums.numel},
                          {"values", Values(report, c.sums)}});
  }
  j["layers_values"] = json::array();
  for (const CompareCell& c : AggregateLayers(report)) {
    j["layers_values"].push_back({{"layer", c.layer},
                                  {"tensors", c.sums.n_tensors},
                                  {"numel", c.sums.numel},
                                  {"values", Values(report, c.sums)}});
  }
  j["tensors"] = json::array();
  for (const TensorComparison& t : report.tensors) {
    json dtypes = json::array();
    for (formats::DType d : t.dtypes) dtypes.push_back(formats::DTypeName(d));
    j["tensors"].push_back({{"name", t.name},
                            {"layer", Layer(t.layer)},
                            {"kind", ModuleKindName(t.kind)},
                            {"shape", t.shape},
                            {"dtypes", std::move(dtypes)},
                            {"numel", t.sums.numel},
                            {"values", Values(report, t.sums)}});
  }
  j["mismatches"] = json::array();
  for (const TensorMismatch& m : report.mismatches) {
    json shapes = json::array(), dtypes = json::array();
    for (size_t i = 0; i < m.present.size(); ++i) {
      shapes.push_back(m.present[i] ? json(m.shapes[i]) : json(nullptr));
      dtypes.push_back(m.present[i] ? json(m.dtypes[i]) : json(nullptr));
    }
    j["mismatches"].push_back(
        {{"name", m.name}, {"reason", m.reason}, {"shapes", std::move(shapes)}, {"dtypes", std::move(dtypes)}});
  }
  j["warnings"] = report.warnings;
  const TensorSums all = AggregateAll(report);
  j["summary"] = {{"tensors", all.n_tensors}, {"numel", all.numel}, {"values", Values(report, all)}};
  return j;
}

std::string CompareReportCsv(const CompareReport& report) {
  std::string out = "tensor,layer,kind,shape,dtypes,numel";
  for (const MetricDef& m : report.metrics) {
    for (size_t s = 0; s < report.SeriesCount(m.series); ++s) {
      out += "," + CsvField(m.key + "[" + report.SeriesLabel(m.series, s) + "]");
    }
  }
  out += "\n";
  for (const TensorComparison& t : report.tensors) {
    std::string dtypes;
    for (formats::DType d : t.dtypes) dtypes += (dtypes.empty() ? "" : " ") + std::string(formats::DTypeName(d));
    out += CsvField(t.name) + "," + (t.layer >= 0 ? std::to_string(t.layer) : "") + "," +
           std::string(ModuleKindName(t.kind)) + "," + ShapeString(t.shape) + "," + dtypes + "," +
           std::to_string(t.sums.numel);
    for (const MetricDef& m : report.metrics) {
      for (size_t s = 0; s < report.SeriesCount(m.series); ++s) out += "," + CsvNumber(m.value(t.sums, s));
    }
    out += "\n";
  }
  return out;
}

}  // namespace alloy::merge
