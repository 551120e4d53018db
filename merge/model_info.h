// ModelSummary: what a checkpoint is — architecture from config.json, layer
// count from config and from tensor names, parameter and byte counts per
// dtype — and the memory estimates `alloy inspect --memory` prints.
//
// The memory formulas are documented in docs/inspect.md; keep them in sync.
// Reads config.json but no tensor data.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/dtype.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::merge {

struct DTypeTotals {
  uint64_t n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t n_bytes = 0;
};

struct ModelSummary {
  std::string path;
  std::string architecture;  // config.json architectures[0], or ""
  std::string model_type;    // config.json model_type, or ""
  std::optional<int64_t> config_layers;  // num_hidden_layers / n_layer / text_config.*
  int64_t detected_layers = 0;           // 1 + max N in "<prefix>.layers.N." names
  std::optional<int64_t> hidden_size, intermediate_size, num_heads, num_kv_heads, vocab_size;
  bool tied_embeddings = false;  // no lm_head.weight, or config says so
  uint64_t n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t n_bytes = 0;
  std::map<formats::DType, DTypeTotals> by_dtype;
  std::vector<std::string> files;       // weight files
  std::vector<std::string> companions;  // config/tokenizer/... present
  uint64_t n_attention_params = 0;      // q/k/v/o projection weights
  uint64_t n_linear_params = 0;         // 2-D weights other than embeddings/lm_head
  std::vector<std::pair<int64_t, int64_t>> attention_shapes;  // [out, in] of each q/k/v/o
};

// Layer index of a tensor name ("model.layers.12.mlp..." → 12; also "h.N.",
// "blocks.N."), or -1.
int64_t LayerIndexOf(const std::string& tensor_name);

// Summarizes `src`; `config` may be null (no config.json).
ModelSummary SummarizeModel(const formats::TensorSource& src, const nlohmann::json* config,
                            const std::string& path);

struct MemoryRow {
  std::string scenario;  // "inference", "full fine-tune (Adam, mixed precision)", ...
  std::string setting;   // "bf16", "rank 16", ...
  double bytes = 0;
  std::string formula;   // the formula with this model's numbers
};

// The memory table (docs/inspect.md gives the formulas).
std::vector<MemoryRow> EstimateMemory(const ModelSummary& summary);

}  // namespace alloy::merge
