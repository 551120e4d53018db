// Planner internals shared by plan.cc, plan_tensors.cc and plan_layout.cc:
// the per-method parameter table (mergekit-semantics.md §1.A), the
// architecture inferred from tensor names, and the Planner itself. Not a
// public API.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"
#include "formats/tensor_source.h"
#include "merge/plan.h"
#include "merge/recipe.h"

namespace alloy::merge::plan_internal {

struct ParamSpec {
  std::string_view name;
  std::optional<double> default_value;  // nullopt: required (or, for `scale`, optional)
  bool required = false;
  bool required_for_base = false;  // only linear's `weight` (§1.1)
};

enum class BasePolicy : uint8_t {
  kIgnored,   // linear, karcher, passthrough: the base is a normal input
  kOptional,  // nuslerp, multislerp
  kRequired,
};

struct MethodSpec {
  std::string_view name;
  BasePolicy base = BasePolicy::kIgnored;
  int min_others = 1;                 // inputs other than the base (all inputs when kIgnored)
  int max_others = -1;                // -1: unbounded
  bool rectifies_embeddings = false;  // rectify_embed_sizes: common sub-matrix (§1.0)
  bool task_vectors = false;          // §1.2 step 1: shapes follow the base
  std::vector<ParamSpec> globals;
  std::vector<ParamSpec> per_model;
};

// nullptr for an unknown method.
const MethodSpec* FindMethodSpec(std::string_view name);

// A model's tensors split by role (§3.2 inference rules).
struct LayerTensor {
  std::string prefix;  // "model.layers."
  std::string suffix;  // ".self_attn.q_proj.weight"
  const formats::TensorInfo* info = nullptr;
};

struct ModelLayout {
  std::vector<const formats::TensorInfo*> pre;   // input embeddings
  std::vector<const formats::TensorInfo*> post;  // other non-layer tensors
  std::vector<std::vector<LayerTensor>> layers;  // [layer][tensor], tensor order
  std::string embedding_name;                    // the input embedding a tied head reads, or ""
  int64_t num_layers = 0;
  std::string layer_key;  // config key of the layer count
                          // ("text_config.num_hidden_layers"), or ""
};

// Splits `name` at its layer index; false for a non-layer tensor.
bool SplitLayerName(const std::string& name, std::string* prefix, int64_t* index,
                    std::string* suffix);
// True for tensors indexed by vocabulary (input embeddings and LM heads).
bool IsEmbedName(std::string_view name);
// True for an LM head that may be tied to the input embedding.
bool IsTiedHeadName(std::string_view name);

// Infers the layout of `source`; the layer count comes from config.json
// (num_hidden_layers, n_layer, num_layers, text_config.*) and must agree with
// the tensor names. Fails with kInvalidArgument naming `model` otherwise.
formats::Result<ModelLayout> InferLayout(const formats::TensorSource& source,
                                         const nlohmann::json& config, const std::string& model);

inline std::string Quote(const std::string& s) { return "'" + s + "'"; }

// One source of a working slice: a distinct model and every recipe entry
// naming it in this slice (§2.3 precedence 1 consults all of them).
struct WorkSource {
  size_t model = 0;
  int64_t begin = 0;
  int64_t end = 0;
  std::vector<const ParamMap*> params;
  int line = 0;
};

struct WorkSlice {
  std::vector<WorkSource> sources;
  const ParamMap* params = nullptr;
  std::optional<size_t> base;  // index into sources
  int line = 0;
};

// One tensor a source may contribute to an output tensor.
struct Candidate {
  size_t source = 0;  // index into WorkSlice::sources
  const formats::TensorInfo* info = nullptr;
  std::string nominal_name;  // what per-model filters see (§2.3)
  bool tied = false;
};

// Builds one MergePlan; plan.cc opens models and normalizes slices,
// plan_tensors.cc plans each output tensor.
class Planner {
 public:
  Planner(const Recipe& recipe, const PlanInputs& inputs, const MethodSpec& spec)
      : recipe_(recipe), inputs_(inputs), spec_(spec) {}

  formats::Result<MergePlan> Run();

 private:
  std::string Where(int line) const {
    if (line <= 0) return "";
    return (inputs_.recipe_name.empty() ? "line " : inputs_.recipe_name + ":") +
           std::to_string(line) + ": ";
  }
  formats::Result<OpenedModel> Open(const ModelRef& ref);
  formats::Result<size_t> Intern(const ModelRef& ref, const OpenedModel& opened);
  formats::Result<size_t> AddModel(const ModelRef& ref);
  formats::Result<std::optional<size_t>> FindBase(const ModelRef& base, const WorkSlice& slice);
  formats::Status BuildSlices();
  formats::Status CheckSlice(const WorkSlice& slice) const;
  formats::Status PlanNonLayer(const WorkSlice& slice, bool pre);
  formats::Status PlanLayer(const WorkSlice& slice, int64_t k, int64_t output_layer, double t);
  void RewritePerLayerConfig(nlohmann::json& section, bool text, int64_t donor_layers);
  formats::Status PlanTensor(const WorkSlice& slice, const std::string& output_name,
                             std::vector<Candidate> candidates, int64_t output_layer, double t,
                             const std::string& drop_key);
  formats::Status ResolveParams(const WorkSlice& slice, const Candidate& candidate,
                                PlannedTensor& tensor, PlannedInput& input) const;
  const std::string& Name(size_t model) const { return plan_.models[model].ref.text; }

  const Recipe& recipe_;
  const PlanInputs& inputs_;
  const MethodSpec& spec_;
  const ParamMap* module_params_ = nullptr;
  MergePlan plan_;
  std::vector<ModelLayout> layouts_;
  std::vector<formats::TensorSource*> sources_;
  std::vector<nlohmann::json> configs_;
  // Per output layer: the model and layer index of its slice's first source.
  std::vector<std::pair<size_t, int64_t>> layer_sources_;
  std::map<std::string, OpenedModel> opened_by_key_;
  std::vector<WorkSlice> slices_;
  // (model, tensor kind) → (count, first tensor) of inputs dropped for lacking
  // a tensor.
  std::map<std::pair<size_t, std::string>, std::pair<int, std::string>> dropped_;
};

}  // namespace alloy::merge::plan_internal
