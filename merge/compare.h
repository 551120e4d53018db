// CompareModels: per-tensor weight comparison of two or more checkpoints, and
// task-vector analysis against a base (`alloy compare`).
//
// Every tensor shared by all models (same name and shape) is streamed once in
// fixed chunks, decoded to float32, and reduced into float64 sums per chunk;
// the chunk sums are combined in chunk order, so every figure is
// bit-identical at any thread count. Memory: a chunk per model and thread,
// the sums of one wave of 256 chunks, plus one 32 Ki-bin magnitude histogram
// per model and thread when a base is given. The optional spectrum (`rank`)
// streams each 2-D task vector a few more times (kernels/sketch.h).
//
// Figures are derived from the sums (TensorSums) by the metric table
// (CompareMetrics), so a cell of the layer × module table is computed from the
// summed sums of its tensors: its cosine is the cosine of the concatenated
// tensors, not a mean of cosines.
//
// Thread safety: one CompareModels at a time per process (it sets the kernel
// thread count).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/dtype.h"
#include "formats/path_guard.h"
#include "formats/status.h"

namespace alloy::merge {

// What a tensor is, for the layer × module aggregation.
enum class ModuleKind {
  kEmbedding,  // embed_tokens, wte, word_embeddings
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnO,
  kMlpGate,
  kMlpUp,
  kMlpDown,
  kNorm,  // any *norm* / ln_* weight or bias
  kHead,  // lm_head
  kOther,
};
inline constexpr int kNumModuleKinds = 11;

// Short names used in tables, JSON and CSV: "embed", "q", "k", "v", "o",
// "gate", "up", "down", "norm", "head", "other".
std::string_view ModuleKindName(ModuleKind kind);
ModuleKind ModuleKindOf(std::string_view tensor_name);

// Raw sums over a tensor (or, summed, over a group of tensors). Pairs are
// (i, j) with i < j in the order of CompareReport::pairs.
struct PairSums {
  double dot = 0;           // Σ a·b
  double diff_sq = 0;       // Σ (a − b)²
  double max_abs_diff = 0;  // max |a − b|
  uint64_t same_sign = 0;   // positions where sign(a) = sign(b) (0 has sign 0)
};
struct TaskPairSums {
  double dot = 0;             // Σ τ_a·τ_b
  uint64_t both_nonzero = 0;  // positions where τ_a ≠ 0 and τ_b ≠ 0
  uint64_t opposite = 0;      // ... and their signs differ
};
struct RankStats {
  double effective_rank = 0;  // (Σσ)² / ‖τ‖_F², σ = the sketch's singular values
  double energy_top_k = 0;    // Σ_{i<k} σ_i² / ‖τ‖_F²
};
struct TensorSums {
  uint64_t numel = 0;
  uint64_t n_tensors = 0;       // 1 for a tensor; the count for a group
  std::vector<double> sq;       // per model: Σ x²
  std::vector<PairSums> pairs;  // per pair
  // With a base (empty otherwise):
  double base_sq = 0;                  // Σ base²
  std::vector<double> tau_sq;          // per model: Σ τ²
  std::vector<double> tau_abs;         // per model: Σ |τ|
  std::vector<double> tau_top_abs;     // per model: Σ |τ| over the top 20% entries by |τ|
  std::vector<TaskPairSums> tau_pairs;  // per pair
  uint64_t multi_nonzero = 0;  // positions where ≥ 2 models have τ ≠ 0
  uint64_t mixed_sign = 0;     // ... and both signs occur among them
  // With a rank (empty otherwise, and for tensors that are not 2-D): per
  // model. For a group: the sums of the members' figures, and rank_count
  // members.
  std::vector<RankStats> rank;
  uint64_t rank_count = 0;

  // Adds a tensor's sums into a group's (sizes must agree; empty adopts).
  void Add(const TensorSums& other);
};

struct TensorComparison {
  std::string name;
  int64_t layer = -1;  // LayerIndexOf(name)
  ModuleKind kind = ModuleKind::kOther;
  std::vector<int64_t> shape;
  std::vector<formats::DType> dtypes;  // per model, then the base's last when given
  TensorSums sums;
};

// A tensor that could not be compared.
struct TensorMismatch {
  std::string name;
  std::vector<bool> present;                   // per model (then base)
  std::vector<std::vector<int64_t>> shapes;    // per model (then base); empty when absent
  std::vector<std::string> dtypes;             // per model (then base); "" when absent
  std::string reason;                          // "only in A, C", "shapes differ", "not a float dtype"
};

// What each figure series is indexed by.
enum class SeriesKind { kPairs, kModels, kAll };

struct MetricDef {
  std::string key;          // "cosine", "rel_l2", ...
  std::string label;        // "cosine similarity"
  std::string description;  // one sentence, for --help and the report
  SeriesKind series = SeriesKind::kPairs;
  int better = 0;           // +1 higher is more similar/better, −1 lower, 0 neither
  // The figure for series index s, or NaN when undefined (shown as "–", null in JSON).
  std::function<double(const TensorSums&, size_t s)> value;
};

struct CompareReport {
  std::vector<std::string> models;      // paths as given
  std::vector<std::string> labels;      // "A", "B", ...
  std::optional<std::string> base;      // path as given
  std::vector<std::pair<size_t, size_t>> pairs;  // (i, j), i < j, in order
  int rank = 0;                          // k of the spectrum, 0 = not computed
  std::vector<TensorComparison> tensors;  // in the first model's order
  std::vector<TensorMismatch> mismatches;
  std::vector<std::string> warnings;
  uint64_t bytes_read = 0;
  std::vector<MetricDef> metrics;  // CompareMetrics(...) for this report

  // Sets labels ("A", "B", ...) and pairs for n models: what the series
  // labels depend on, known before anything is read.
  void SetModels(size_t n);
  // Label of series index s of `kind`: "A~B", "A", "all".
  std::string SeriesLabel(SeriesKind kind, size_t s) const;
  size_t SeriesCount(SeriesKind kind) const;
};

// The figures a report holds: the weight metrics; the task-vector metrics
// when there is a base; the spectrum metrics when rank > 0.
std::vector<MetricDef> CompareMetrics(size_t n_models, bool has_base, bool has_rank);

using CompareProgressFn =
    std::function<void(uint64_t bytes_done, uint64_t bytes_total, std::string_view tensor)>;

struct CompareOptions {
  std::vector<std::string> models;  // paths or hub ids; ≥ 2, or ≥ 1 with a base
  std::optional<std::string> base;
  std::string tensor_regex;  // ECMAScript, searched in each name; "" = all
  int rank = 0;              // top-k spectrum of 2-D task vectors (needs a base); 0 = off
  int threads = 0;           // 0 = all cores; figures do not depend on it
  // Chunks (of 64 Ki elements) whose sums are held at once before they are
  // folded in order: memory against synchronization. Figures do not depend on it.
  size_t wave_chunks = 256;
  CompareProgressFn progress;
  const std::atomic<bool>* cancel = nullptr;  // stops with kIoError "interrupted"
  // Whether a model directory's weight files may be symlinks leading outside it.
  formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside;
};

// Opens every model (formats::ResolveModelReference + OpenModel) and compares
// them. Fails with kInvalidArgument (too few models, bad regex, rank without a
// base, nothing left to compare), the readers' errors (kNotFound, kCorrupt,
// ...), or kIoError.
formats::Result<CompareReport> CompareModels(const CompareOptions& options);

// One group of the layer × module table.
struct CompareCell {
  int64_t layer = -1;  // -1: tensors outside the numbered layers
  ModuleKind kind = ModuleKind::kOther;
  TensorSums sums;
};
// Groups the report's tensors by (layer, kind), ordered by layer (−1 first)
// then kind.
std::vector<CompareCell> AggregateCells(const CompareReport& report);
// Groups the report's tensors by numbered layer (kind is kOther and unused),
// in layer order; tensors outside the numbered layers are left out.
std::vector<CompareCell> AggregateLayers(const CompareReport& report);
// Every compared tensor as one group.
TensorSums AggregateAll(const CompareReport& report);

// The whole report as JSON (schema in docs/compare.md). `command` is the
// command line that produced it.
nlohmann::json CompareReportJson(const CompareReport& report, const std::string& command);

// One row per compared tensor, one column per metric and series.
std::string CompareReportCsv(const CompareReport& report);

// A self-contained HTML page (no external assets) drawn from
// CompareReportJson's output: heatmaps of layer × module per metric, a line
// chart per metric across layers, a sortable tensor table, the command.
std::string RenderCompareHtml(const nlohmann::json& report);

}  // namespace alloy::merge
