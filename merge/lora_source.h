// A model with a PEFT LoRA adapter applied while streaming (`model+lora`
// references, mergekit-semantics.md §2.2): a TensorSource whose tensors are
// the base's, except that
// * a tensor with LoRA factors reads as W + s·B·A (s·(B·A)ᵀ for fan_in_fan_out
//   and embeddings; bias + s·lora_B.bias with lora_bias), computed in float64
//   for exactly the bytes asked for and rounded once to the base tensor's
//   dtype — what mergekit's merge_and_unload copy holds, without the copy;
// * a `modules_to_save` tensor reads as the adapter's full tensor.
// Only the current tensors' factors are kept in memory (a few MiB). A
// computed tensor cannot be mapped: View() is kUnsupported for it, Read()
// is the way in (what the executor uses).
//
// Thread safety: all methods may be called concurrently (TensorSource).
#pragma once

#include <memory>

#include "formats/lora_adapter.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::merge {

// Wraps `base` with `adapter`, every module's scale multiplied by
// `scale_multiplier` (`alloy lora apply --scale`); with `apply_saved` false
// the adapter's modules_to_save tensors are ignored (the base's are read).
// Fails (kInvalidArgument, naming the adapter,
// the module and the model) when a factor's base tensor is missing, is not a
// float tensor, or has a shape the factors do not fit; or when a saved module
// has a different shape than the tensor it replaces.
formats::Result<std::unique_ptr<formats::TensorSource>> ApplyLora(
    std::unique_ptr<formats::TensorSource> base, std::unique_ptr<formats::LoraAdapter> adapter,
    double scale_multiplier = 1.0, bool apply_saved = true);

}  // namespace alloy::merge
