// LoRA factors in memory and PEFT adapters written from them: what `alloy
// lora concat`, `combine` and `extract` share (merge/lora_ops.h).
//
// Factors are held in float64 in PEFT's orientation (A: rank × in, B: out ×
// rank; embeddings: A rank × num_embeddings, B dim × rank) and rounded once
// when written. An adapter alloy writes has scale 1 in every module
// (lora_alpha = r per module), its sources' scales and weights folded into
// the factors, so any PEFT version, llama.cpp's converter (which ignores
// rsLoRA and the patterns' alphas) and alloy apply it identically.
//
// Thread safety: pure functions of their arguments and the files they touch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "formats/lora_adapter.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::merge {

struct ModuleFactors {
  std::string module;  // model.layers.0.self_attn.q_proj
  bool embedding = false;
  int64_t rank = 0;
  int64_t in = 0;   // columns of A (embeddings: num_embeddings)
  int64_t out = 0;  // rows of B (embeddings: embedding_dim)
  std::vector<double> a;  // rank × in, row-major, scale included
  std::vector<double> b;  // out × rank, row-major
};

// A tensor stored whole (modules_to_save), copied from `source` when written.
struct SavedTensor {
  std::string name;  // the base tensor it replaces
  formats::TensorSource* source = nullptr;
  const formats::TensorInfo* info = nullptr;
};

struct AdapterContents {
  std::string base_model;  // base_model_name_or_path
  bool fan_in_fan_out = false;
  formats::DType dtype = formats::DType::kF32;  // of the factors and biases
  std::vector<ModuleFactors> modules;           // written in this order
  std::vector<std::pair<std::string, std::vector<double>>> biases;  // module → lora_B.bias
  std::vector<SavedTensor> saved;
};

struct WriteAdapterOptions {
  bool overwrite = false;
  bool fsync = false;
  std::string readme;  // README.md contents ("" writes none)
};

struct AdapterWriteReport {
  size_t n_modules = 0;
  int64_t max_rank = 0;
  uint64_t bytes = 0;  // adapter_model.safetensors payload
};

// Reads a whole tensor of `source` as float64 (floats only).
formats::Status ReadTensorF64(formats::TensorSource& source, const formats::TensorInfo& info,
                              std::vector<double>* out);

// The factors of `delta` (not kBias) with its scale folded in as
// a = scale·A, in PEFT orientation.
formats::Result<ModuleFactors> ReadScaledFactors(formats::LoraAdapter& adapter,
                                                 const formats::LoraDelta& delta);

// Writes `contents` as a PEFT adapter directory `out_dir` (adapter_config.json,
// adapter_model.safetensors, README.md), atomically: everything goes to a
// temporary sibling directory renamed into place when complete. Fails with
// kInvalidArgument when out_dir exists and is not empty (without overwrite),
// when a module has no rank or factors of the wrong size, or when two entries
// write the same key; kIoError on I/O.
formats::Result<AdapterWriteReport> WriteLoraAdapter(const std::string& out_dir,
                                                     const AdapterContents& contents,
                                                     const WriteAdapterOptions& options);

}  // namespace alloy::merge
