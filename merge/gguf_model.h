// GGUF in the merge layer (checkpoint-formats.md §4): everything that turns
// GGUF bytes into floats or back, and the bridge between GGUF and Hugging
// Face layouts.
//
// * OpenCheckpoint: formats::OpenModel, with GGUF block-quantized tensors
//   (Q8_0, Q4_K, ...) dequantized to float32 on read (kernels/quant.h), so
//   the executor, convert and compare see ordinary tensors.
// * ConfigFromGguf: a config.json equivalent built from GGUF metadata, so the
//   planner knows the architecture and layer count of a GGUF input.
// * GgufAsHf / HfAsGguf: a source presented under the other layout's names,
//   with the llama Q/K rotary permutation applied on the fly (§4.5).
// * GgufMetadataForHf: GGUF metadata for an HF llama/qwen2 model (config.json,
//   tokenizer.json, tokenizer_config.json).
// * MakeGgufSink: a TensorSink writing one GGUF file; float32 tensors whose
//   chosen type is Q8_0/Q4_0 are quantized block by block as they arrive.
//
// Thread safety: sources as formats::TensorSource; the sink as TensorSink.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/byte_source.h"
#include "formats/gguf.h"
#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_sink.h"
#include "formats/tensor_source.h"

namespace alloy::merge {

// formats::OpenModel plus dequantization of GGUF block-quantized tensors and
// of block-scaled FP8 checkpoints (merge/fp8_model.h).
formats::Result<std::unique_ptr<formats::TensorSource>> OpenCheckpoint(
    const std::string& path, formats::FileAccess access = formats::FileAccess::kPread,
    std::vector<std::string>* warnings = nullptr,
    formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside);

// The GGUF header behind a source from OpenCheckpoint (or a GgufSource), or
// nullptr for other formats.
const formats::GgufHeader* GgufHeaderOf(const formats::TensorSource& source);

// config.json fields from GGUF metadata: architectures, model_type,
// num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
// num_key_value_heads, rms_norm_eps, rope_theta, max_position_embeddings,
// vocab_size, tie_word_embeddings (whichever the metadata has).
nlohmann::json ConfigFromGguf(const formats::GgufHeader& header,
                              const formats::TensorSource& source);

// HF ↔ GGUF tensor names for the llama family (llama, mistral, qwen2):
// "model.layers.3.self_attn.q_proj.weight" ↔ "blk.3.attn_q.weight". nullopt
// for names without a counterpart.
std::optional<std::string> GgufNameForHf(std::string_view hf_name);
std::optional<std::string> HfNameForGguf(std::string_view gguf_name);

// The GGUF architecture name for an HF config ("llama" for Llama/Mistral,
// "qwen2"), or kUnsupported naming the architecture.
formats::Result<std::string> GgufArchitectureFor(const nlohmann::json& config);

// `gguf` (from OpenCheckpoint) under HF names with Q/K rows un-permuted
// (architecture "llama" only). Tensors without an HF name are refused.
formats::Result<std::unique_ptr<formats::TensorSource>> GgufAsHf(
    std::unique_ptr<formats::TensorSource> gguf);

// `hf` under GGUF names with Q/K rows permuted for "llama";
// rotary_emb.inv_freq is dropped; other unknown names are refused.
formats::Result<std::unique_ptr<formats::TensorSource>> HfAsGguf(
    std::unique_ptr<formats::TensorSource> hf, const nlohmann::json& config);

// GGUF metadata for an HF model directory (config.json must be present;
// tokenizer.json is optional: without it the vocabulary type is "none").
// `name` becomes general.name. Warnings go to `warnings`.
formats::Result<std::vector<formats::GgufKv>> GgufMetadataForHf(
    const nlohmann::json& config, const std::string& model_dir, const std::string& name,
    std::vector<std::string>* warnings);

// Sets (or adds) one metadata key.
void SetGgufKv(std::vector<formats::GgufKv>& kvs, const std::string& key, formats::GgufValue value);

struct GgufSinkOptions {
  std::vector<formats::GgufKv> kvs;  // general.file_type is set from the tensor types
  // The stored type of each declared tensor; must be the tensor's own DType
  // (as a ggml type) or, for a float32 tensor, Q8_0 or Q4_0. Unset: own type.
  std::function<formats::GgmlType(const formats::TensorInfo&)> type_for;
  bool fsync = false;
};
// A TensorSink writing the GGUF file `path` (temporary file renamed into
// place by Finish). Shapes are reversed into GGUF's ne order.
std::unique_ptr<formats::TensorSink> MakeGgufSink(std::string path, GgufSinkOptions options);

// The type alloy writes for a tensor whose stored type in the donor GGUF was
// `donor`, when the merge computed it as `computed`: plain donor types and
// Q8_0/Q4_0 are kept; other block types become Q8_0 (alloy does not write
// K-quants); 1-D tensors and rows that are not a multiple of 32 stay as
// computed.
formats::GgmlType GgufOutputType(const formats::TensorInfo& computed, uint32_t donor);

}  // namespace alloy::merge
