// PEFT LoRA adapters (checkpoint-formats.md §6, methods-beyond.md §1): a
// directory with adapter_config.json and adapter_model.safetensors, validated
// and resolved into one entry per base tensor the adapter changes.
//
// What is refused, with a message naming the file and the field or tensor:
// a missing or non-LORA `peft_type`; DoRA (`use_dora`, magnitude vectors),
// `layer_replication`, initialisations that modify the base (`pissa`,
// `olora`, `corda`, `loftq`) and `adapter_model.bin` (kUnsupported); a factor
// without its partner, factors whose ranks disagree with each other or with
// the config's rank for that module, non-float factors, keys outside
// `base_model.model.` (kCorrupt).
//
// Thread safety: immutable after Open; tensors() is a TensorSource (safe to
// read concurrently).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/byte_source.h"
#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::formats {

// How a module's product B·A lands on its base tensor.
enum class LoraKind : uint8_t {
  kLinear,          // base [out, in] += s · B·A
  kTransposed,      // base [in, out] += s · (B·A)ᵀ (fan_in_fan_out, and embeddings)
  kBias,            // base bias [out] += s · lora_B.bias (lora_bias)
};

struct LoraDelta {
  std::string base_name;  // the base tensor, e.g. model.layers.0.self_attn.q_proj.weight
  std::string module;     // model.layers.0.self_attn.q_proj
  LoraKind kind = LoraKind::kLinear;
  const TensorInfo* a = nullptr;     // [r, in] (embedding: [r, num_embeddings]); kBias: null
  const TensorInfo* b = nullptr;     // [out, r] (embedding: [dim, r]); kBias: the bias [out]
  int64_t rank = 0;
  double alpha = 0;
  double scale = 0;  // alpha / r, or alpha / √r with use_rslora
  bool embedding = false;  // lora_embedding_A/B (kTransposed, whatever fan_in_fan_out says)
};

class LoraAdapter {
 public:
  // Opens the adapter in directory `dir`. kNotFound when it has no
  // adapter_config.json (the message says what a PEFT adapter holds);
  // kInvalidArgument when one of its files is a symlink leading outside `dir`
  // and `symlinks` is not kFollow (path_guard.h).
  static Result<std::unique_ptr<LoraAdapter>> Open(
      const std::string& dir, FileAccess access = FileAccess::kPread,
      SymlinkPolicy symlinks = SymlinkPolicy::kStayInside);

  // Open's work once adapter_config.json's text is read: parses `text` (named
  // `dir`/adapter_config.json in messages), then calls `open_weights` for
  // adapter_model.safetensors and resolves the deltas. The fuzz target passes
  // an in-memory adapter.
  using WeightsOpener = std::function<Result<std::unique_ptr<TensorSource>>()>;
  static Result<std::unique_ptr<LoraAdapter>> OpenFromConfigText(const std::string& dir,
                                                                 std::string_view text,
                                                                 const WeightsOpener& open_weights);

  const std::string& directory() const { return directory_; }
  // adapter_model.safetensors.
  TensorSource& tensors() { return *tensors_; }

  // Deltas in adapter file order, and the full tensors of `modules_to_save`
  // (base tensor name → the adapter's tensor, which replaces it).
  const std::vector<LoraDelta>& deltas() const { return deltas_; }
  const std::map<std::string, const TensorInfo*, std::less<>>& replacements() const {
    return replacements_;
  }

  int64_t default_rank() const { return default_rank_; }
  double default_alpha() const { return default_alpha_; }
  bool use_rslora() const { return use_rslora_; }
  bool fan_in_fan_out() const { return fan_in_fan_out_; }
  // adapter_config.json's base_model_name_or_path, or "".
  const std::string& base_model() const { return base_model_; }

 private:
  std::string directory_;
  std::unique_ptr<TensorSource> tensors_;
  std::vector<LoraDelta> deltas_;
  std::map<std::string, const TensorInfo*, std::less<>> replacements_;
  int64_t default_rank_ = 8;
  double default_alpha_ = 8;
  bool use_rslora_ = false;
  bool fan_in_fan_out_ = false;
  std::string base_model_;
};

// The safetensors key of a module's factor: base_model.model.<module>.lora_A.weight
// (lora_B.weight; lora_embedding_A / lora_embedding_B for embeddings).
std::string LoraFactorKey(std::string_view module, bool is_a, bool embedding);
// base_model.model.<module>.lora_B.bias.
std::string LoraBiasKey(std::string_view module);
// base_model.model.<tensor>: a modules_to_save tensor replacing `tensor`.
std::string LoraSavedKey(std::string_view tensor);

// What alloy writes into adapter_config.json. Every adapter alloy makes has
// scale 1 in every module (lora_alpha = r, alpha_pattern = rank_pattern), the
// source scales being folded into the factors.
struct LoraAdapterConfig {
  std::string base_model;  // base_model_name_or_path ("" writes null)
  int64_t r = 0;           // the largest module rank
  bool fan_in_fan_out = false;
  bool lora_bias = false;
  std::vector<std::string> target_modules;   // last name components of the factor modules
  std::vector<std::string> modules_to_save;  // modules whose tensors are stored whole
  std::map<std::string, int64_t> rank_pattern;  // module → rank, for ranks other than r
};

// adapter_config.json text for `config` (PEFT's keys; peft_type LORA,
// task_type CAUSAL_LM, use_rslora false).
std::string LoraAdapterConfigJson(const LoraAdapterConfig& config);

}  // namespace alloy::formats
