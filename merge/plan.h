// MergePlan: everything the executor needs to stream a merge, computed from a
// parsed Recipe and the models' headers and config.json — never tensor data
// (mergekit-semantics.md §2.3–2.7, §3.4, §6.1; style guide §9).
//
// PlanMerge() normalizes `models:` to one slice over all layers, renumbers
// `slices:` layers (§2.6), infers the architecture from tensor names (layer
// tensors live under `<prefix>.layers.N.`, `h.N.` or `blocks.N.`; embeddings
// before the layers, everything else after), resolves every parameter per
// output tensor and per input (§2.3 precedence, filters, gradients with
// t = k/(L−1), t = 0 for non-layer tensors: Decision (d)), and validates the
// whole recipe against the models before any math.
//
// Plain value types; PlanMerge and DescribePlan are pure and thread-safe as
// long as the injected opener is.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "formats/status.h"
#include "formats/tensor_source.h"
#include "merge/recipe.h"

namespace alloy::merge {

using ParamValues = std::map<std::string, double, std::less<>>;

// One model of the merge. References that resolve to the same `directory`
// are one model (Decision (h)).
struct PlannedModel {
  ModelRef ref;           // the first spelling in recipe order
  std::string path;       // what was opened (directory or .safetensors file)
  std::string directory;  // config.json and tokenizer files live here
  std::string identity;   // OpenedModel::identity (Decision (h))
  bool is_base = false;   // the recipe's base_model
  int64_t num_layers = 0;
  std::string architecture;                            // config.json architectures[0], or ""
  formats::DType stored_dtype = formats::DType::kF32;  // dtype holding the most bytes
};

struct PlannedInput {
  size_t model_index = 0;  // into MergePlan::models
  // The tensor to read. Differs from the output name when slices renumber
  // layers, and is the input embedding when a tied model lacks `lm_head`.
  std::string input_name;
  std::vector<int64_t> input_shape;
  formats::DType input_dtype = formats::DType::kF32;
  bool is_base = false;  // the slice's base (linear/karcher/passthrough ignore it)
  bool is_tied = false;  // input_name is the embedding standing in for the head
  ParamValues params;    // per-model parameters, defaults applied
};

struct PlannedTensor {
  std::string output_name;
  formats::DType out_dtype = formats::DType::kF32;
  // Output shape. For an `is_embed` 2-D tensor whose inputs differ in shape
  // (vocabulary mismatch, §1.0, §2.7) an input may be larger: the executor
  // reads its top-left shape[0] × shape[1] block.
  std::vector<int64_t> shape;
  std::vector<PlannedInput> inputs;  // recipe order; models lacking the tensor dropped
  bool is_embed = false;
  // A non-float tensor (e.g. int64 position ids): write inputs[0]'s bytes
  // unchanged. Every model had the same dtype and shape; `inputs` holds only
  // the base's (else the first model's) tensor.
  bool copy_only = false;
  int64_t output_layer = -1;  // -1 for pre- and post-weights
  double t = 0;               // gradient position (§2.5)
  std::string method;
  ParamValues params;   // method-global parameters, defaults applied
  uint64_t nbytes = 0;  // bytes written
};

struct MergePlan {
  std::string method;
  std::vector<PlannedModel> models;    // recipe order
  std::optional<size_t> base_model;    // the recipe's base_model, when it is a model here
  size_t config_donor = 0;             // base, else the first model (§3.4, Decision (c))
  std::string tokenizer_directory;     // where tokenizer files are copied from
                                       // (§6.1 step 8)
  std::vector<PlannedTensor> tensors;  // write order: pre-weights, layers, post-weights
  int64_t num_layers = 0;              // output layer count
  bool uses_slices = false;            // `slices:` syntax: config layer count rewritten
  formats::DType out_dtype = formats::DType::kF32;  // Decision (g)
  // The recipe's `dtype`: every float input is rounded to it before the
  // method sees it (mergekit casts inputs to `dtype`); unset: no rounding.
  std::optional<formats::DType> input_cast;
  // The donor's config.json with torch_dtype (or dtype) set to out_dtype and,
  // for `slices:`, the layer count key set to num_layers; null when the donor
  // has no config.json.
  nlohmann::json output_config;
  uint64_t total_bytes = 0;
  std::vector<std::string> warnings;
};

// What an opener hands the planner for one model reference.
struct OpenedModel {
  formats::TensorSource* source = nullptr;  // not owned; must outlive the plan call
  std::string path;                         // what was opened
  std::string directory;                    // config.json and tokenizer files live here
  nlohmann::json config;                    // config.json, or null
  // Decision (h): models with one identity are one model. The canonical
  // path, plus "+<adapter path>" for `model+lora`; "" means `directory`.
  std::string identity;
};

using ModelOpener = std::function<formats::Result<OpenedModel>(const ModelRef&)>;

struct PlanInputs {
  ModelOpener open;           // required; see merge/model_opener.h for the disk one
  std::string recipe_name;    // the recipe file, prefixed to messages with a line
  bool allow_crimes = false;  // allow models of different architectures
};

// Plans `recipe`. On success the plan is complete and valid. Errors:
// kInvalidArgument for recipe/model mismatches (layer range out of bounds,
// shape mismatch naming both models and the tensor, missing required
// parameter "Missing required parameter `weight` for model X, tensor Y",
// wrong input count for the method, mixed architectures, layer counts);
// kUnsupported for `modules:` with several modules, LoRA references and
// embedding permutation; the opener's errors (kNotFound, kCorrupt, ...)
// prefixed with the recipe line of the model.
formats::Result<MergePlan> PlanMerge(const Recipe& recipe, const PlanInputs& inputs);

// The multi-line summary `alloy merge --dry-run` prints: method, models,
// output tensors, layers, bytes, dtype, warnings.
std::string DescribePlan(const MergePlan& plan);

}  // namespace alloy::merge
