// Tiny but real Hugging Face checkpoints for tests, demos and benchmarks.
//
// WriteTinyModel() writes one model directory of a llama, mistral, qwen2 or
// gemma family: safetensors weights (sharded when asked) named and shaped as
// transformers names them, plus config.json, tokenizer.json,
// tokenizer_config.json and generation_config.json. Weights are
// deterministic: the base is ~N(0, base_std) (norms ~1.0), and fine-tune i is
// base + finetune_scale * noise_i, with noise from a counter-based hash of
// (seed, tensor name, model index, element index), so task vectors are real
// and the values do not depend on the thread count or on chunking.
//
// Data is generated in fixed chunks into reused per-thread buffers and written
// with WriteAt, so memory stays small whatever the model size.
//
// Thread safety: functions are reentrant; WriteTinyModel uses the worker
// threads set with kernels::SetThreads.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/dtype.h"
#include "formats/model_writer.h"
#include "formats/status.h"
#include "formats/tensor_info.h"

namespace alloy::examples {

enum class Family : uint8_t { kLlama, kMistral, kQwen2, kGemma };
inline constexpr std::array<Family, 4> kAllFamilies = {Family::kLlama, Family::kMistral,
                                                       Family::kQwen2, Family::kGemma};

// "llama", "mistral", "qwen2", "gemma".
std::string_view FamilyName(Family family);
std::optional<Family> ParseFamily(std::string_view name);

struct TinyModelSpec {
  Family family = Family::kLlama;
  int64_t hidden_size = 64;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  int64_t head_dim = 0;  // 0: hidden_size / num_heads
  int64_t intermediate_size = 128;
  int64_t vocab_size = 256;
  int64_t max_position_embeddings = 2048;
  bool tie_embeddings = false;                   // gemma is always tied (no lm_head.weight)
  bool llama3_rope_scaling = false;              // llama: write Llama-3.x's rope_scaling block
  formats::DType dtype = formats::DType::kBF16;  // kBF16, kF16 or kF32
  uint64_t max_shard_bytes = formats::kDefaultMaxShardBytes;
  uint64_t seed = 0;
  int model_index = 0;  // 0: the base; i > 0: fine-tune i
  double base_std = 0.02;
  double finetune_scale = 0.002;  // standard deviation of a fine-tune's task vector
};

// The "tiny" preset (hidden 64, 2 layers, 4 heads, 2 kv heads, inter 128,
// vocab 256; gemma tied) or "1b" (Llama-3.2-1B shapes: hidden 2048, 16
// layers, 32 heads, 8 kv heads, head_dim 64, inter 8192, vocab 128256, tied).
// nullopt for any other name.
std::optional<TinyModelSpec> TinyModelPreset(std::string_view name, Family family);

// The tensors in transformers' state-dict order. Fails with kInvalidArgument
// on a bad spec (non-positive sizes, heads not a multiple of kv heads, head
// size not derivable, unsupported dtype).
formats::Result<std::vector<formats::TensorInfo>> TinyModelTensors(const TinyModelSpec& spec);

// The float32 value of element `element` of tensor `name`, before rounding to
// spec.dtype. Tests use it to check what was written.
float TinyModelValue(const TinyModelSpec& spec, std::string_view name, uint64_t element);

struct TinyModelStats {
  size_t n_tensors = 0;
  size_t n_files = 0;    // weight files (shards)
  uint64_t n_bytes = 0;  // tensor data bytes
};

// Writes the model to `out_dir`, replacing what is there (atomically, through
// formats::ModelDirWriter). On success fills `stats` when non-null. Fails with
// kInvalidArgument on a bad spec, or with the writer's error (kIoError, ...).
formats::Status WriteTinyModel(const TinyModelSpec& spec, const std::string& out_dir,
                               TinyModelStats* stats = nullptr);

// A PEFT LoRA adapter for a tiny model (methods-beyond.md §1): factors
// lora_A [r, in] and lora_B [out, r] for every 2-D layer weight whose module
// name ends with one of `target_modules`, and lora_embedding_A/B for
// model.embed_tokens when `embeddings`. Values are ~U(−a, a) with standard
// deviation `std`, from the counter-based hash of (seed, tensor name,
// element), so B is non-zero and the delta is real.
struct TinyLoraSpec {
  int64_t rank = 4;
  double alpha = 8.0;
  bool use_rslora = false;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  bool embeddings = false;
  formats::DType dtype = formats::DType::kF32;  // kF32 or kBF16
  uint64_t seed = 1;
  double std = 0.05;
};

// The adapter's tensors (PEFT key names), in file order.
formats::Result<std::vector<formats::TensorInfo>> TinyLoraTensors(const TinyModelSpec& base,
                                                                  const TinyLoraSpec& lora);
// The float32 value of element `element` of adapter tensor `name`, before
// rounding to lora.dtype.
float TinyLoraValue(const TinyLoraSpec& lora, std::string_view name, uint64_t element);
// Writes adapter_config.json and adapter_model.safetensors into `out_dir`
// (created; the safetensors file is replaced atomically).
formats::Status WriteTinyLoraAdapter(const TinyModelSpec& base, const TinyLoraSpec& lora,
                                     const std::string& out_dir);

}  // namespace alloy::examples
