// FP8 checkpoints with block scales (checkpoint-formats.md §5.3): transformers
// fine-grained FP8 and DeepSeek-V3 style models store `X.weight` as F8_E4M3
// (or F8_E5M2) plus `X.weight_scale_inv` (F32, BF16 or F16) holding one scale
// per block of `quantization_config.weight_block_size` (config.json, default
// [128, 128]) rows × columns. The dequantized value is fp8 × the scale of its
// block: despite the `_inv` name, the scale multiplies.
//
// The rule (docs/formats/safetensors.md, "FP8 checkpoints"):
// * A checkpoint is FP8-quantized when config.json has
//   `quantization_config.quant_method == "fp8"` or when any tensor name ends
//   in `_scale_inv`.
// * In an FP8-quantized checkpoint, every F8 tensor `P` must have a 2-D
//   companion `P_scale_inv` of shape [ceil(R / br), ceil(C / bc)]; `P` is then
//   presented as a float32 tensor of the same shape, dequantized block by
//   block on Read, and the `_scale_inv` tensors are hidden. Anything else (an
//   F8 tensor without its scale, a scale of another dtype or shape, a scale
//   on a non-2-D or non-FP8 tensor, a scale without its tensor) is refused:
//   merging FP8 codes at face value would silently produce garbage.
// * F8 tensors in a checkpoint that is not FP8-quantized (alloy's own
//   `convert --dtype f8_e4m3` output) keep face-value decoding.
//
// Thread safety: the wrapper is a formats::TensorSource (all methods may be
// called concurrently); reads use per-thread scratch buffers.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::merge {

// The block size of fine-grained FP8 checkpoints when config.json gives none.
inline constexpr std::array<int64_t, 2> kDefaultFp8Block = {128, 128};

// True when `source` with `config` (config.json, or nullptr) is an
// FP8-quantized checkpoint by the rule above.
bool IsFp8Quantized(const formats::TensorSource& source, const nlohmann::json* config);

// `inner` with its block-scaled FP8 tensors presented as float32 and the
// `_scale_inv` tensors hidden; `inner` itself when the checkpoint is not
// FP8-quantized. `config` (may be null) supplies
// quantization_config.weight_block_size. Fails with kCorrupt (a missing,
// mistyped or misshapen scale, naming the file, the tensor, both shapes and
// the block size), kUnsupported (a scale on a non-2-D tensor) or
// kInvalidArgument (a malformed weight_block_size).
formats::Result<std::unique_ptr<formats::TensorSource>> DequantizeFp8(
    std::unique_ptr<formats::TensorSource> inner, const nlohmann::json* config);

// OpenCheckpoint's FP8 step: when `inner` (opened from `path`) holds F8 or
// `_scale_inv` tensors, reads config.json from the model directory (if
// present; `symlinks` as for OpenModel) and calls DequantizeFp8. Otherwise
// returns `inner` untouched without reading anything. Fails as DequantizeFp8,
// or as reading/parsing config.json.
formats::Result<std::unique_ptr<formats::TensorSource>> OpenFp8Aware(
    std::unique_ptr<formats::TensorSource> inner, const std::string& path,
    formats::SymlinkPolicy symlinks);

// Removes an FP8 `quantization_config` (quant_method "fp8") from an output
// config.json (and from nested sub-configs): alloy writes the dequantized
// weights, and transformers would load them as FP8 codes if it stayed.
// Returns true when something was removed.
bool DropFp8QuantizationConfig(nlohmann::json& config);

}  // namespace alloy::merge
