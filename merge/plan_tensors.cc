// Planner: per-output-tensor planning (mergekit-semantics.md §1.0, §1.2 step 1,
// §2.3–2.7): pre/post weights, layer tensors, shapes, parameters.
#include <algorithm>
#include <set>

#include "merge/plan_internal.h"

namespace alloy::merge::plan_internal {

using formats::Status;

// §2.6: pre-weights from the first slice's sources, post-weights from the
// last slice's, t = 0 (§2.5, Decision (d)).
Status Planner::PlanNonLayer(const WorkSlice& slice, bool pre) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const WorkSource& source : slice.sources) {
    const ModelLayout& layout = layouts_[source.model];
    for (const formats::TensorInfo* info : pre ? layout.pre : layout.post) {
      if (seen.insert(info->name).second) names.push_back(info->name);
    }
  }
  for (const std::string& name : names) {
    std::vector<Candidate> candidates;
    for (size_t source_idx = 0; source_idx < slice.sources.size(); ++source_idx) {
      const size_t model = slice.sources[source_idx].model;
      Candidate candidate{source_idx, sources_[model]->Find(name), name, false};
      // §2.6: a model without the (optional) head reads its tied embedding.
      if (candidate.info == nullptr && plan_internal::IsTiedHeadName(name) &&
          !layouts_[model].embedding_name.empty()) {
        candidate.info = sources_[model]->Find(layouts_[model].embedding_name);
        candidate.tied = true;
      }
      candidates.push_back(std::move(candidate));
    }
    ALLOY_RETURN_IF_ERROR(PlanTensor(slice, name, std::move(candidates), -1, 0.0, name));
  }
  return Status::OK();
}

Status Planner::PlanLayer(const WorkSlice& slice, int64_t k, int64_t output_layer, double t) {
  // The union of (prefix, suffix) over the sources' input layers, in order.
  std::vector<std::pair<std::string, std::string>> templates;
  std::set<std::pair<std::string, std::string>> seen;
  for (const WorkSource& source : slice.sources) {
    const auto& layer = layouts_[source.model].layers[static_cast<size_t>(source.begin + k)];
    for (const plan_internal::LayerTensor& tensor : layer) {
      if (seen.insert({tensor.prefix, tensor.suffix}).second) {
        templates.emplace_back(tensor.prefix, tensor.suffix);
      }
    }
  }
  for (const auto& [prefix, suffix] : templates) {
    std::vector<Candidate> candidates;
    for (size_t source_idx = 0; source_idx < slice.sources.size(); ++source_idx) {
      const WorkSource& source = slice.sources[source_idx];
      const std::string name = prefix + std::to_string(source.begin + k) + suffix;
      candidates.push_back(Candidate{source_idx, sources_[source.model]->Find(name), name, false});
    }
    ALLOY_RETURN_IF_ERROR(PlanTensor(slice, prefix + std::to_string(output_layer) + suffix,
                                     std::move(candidates), output_layer, t, suffix));
  }
  return Status::OK();
}

Status Planner::ResolveParams(const WorkSlice& slice, const Candidate& candidate,
                              PlannedTensor& tensor, PlannedInput& input) const {
  const WorkSource& source = slice.sources[candidate.source];
  ParamScope scope{source.params, slice.params, module_params_, &recipe_.parameters};
  for (const ParamSpec& param : spec_.per_model) {
    std::optional<double> value =
        ResolveModelParameter(scope, param.name, candidate.nominal_name, tensor.t);
    if (!value) value = param.default_value;
    if (!value && param.required && (!input.is_base || param.required_for_base)) {
      return Status::InvalidArgument(
          Where(source.line) + "Missing required parameter `" + std::string(param.name) +
          "` for model " + Quote(Name(source.model)) + ", tensor " + Quote(candidate.nominal_name) +
          "; give it under the model's `parameters:` (a filter "
          "list needs a fallback entry `- value: ...`) or under the top-level "
          "`parameters:`");
    }
    if (value) input.params.emplace(std::string(param.name), *value);
  }
  return Status::OK();
}

Status Planner::PlanTensor(const WorkSlice& slice, const std::string& output_name,
                           std::vector<Candidate> candidates, int64_t output_layer, double t,
                           const std::string& drop_key) {
  PlannedTensor tensor;
  tensor.output_name = output_name;
  tensor.output_layer = output_layer;
  tensor.t = t;
  tensor.method = recipe_.merge_method;
  tensor.is_embed = plan_internal::IsEmbedName(output_name);
  // §1.0 GatherTensors: models lacking an optional tensor are dropped.
  std::vector<Candidate> present;
  for (Candidate& candidate : candidates) {
    if (candidate.info != nullptr) {
      present.push_back(std::move(candidate));
      continue;
    }
    auto& entry = dropped_[{slice.sources[candidate.source].model, drop_key}];
    if (entry.first++ == 0) entry.second = candidate.nominal_name;
  }
  ALLOY_CHECK(!present.empty());
  auto is_base = [&](const Candidate& c) { return slice.base && c.source == *slice.base; };
  auto model_of = [&](const Candidate& c) { return slice.sources[c.source].model; };
  const Candidate* base = nullptr;
  for (const Candidate& c : present) {
    if (is_base(c)) base = &c;
  }
  // slerp returns a lone input unchanged (§1.5); the others index the base.
  const bool lone_slerp = spec_.name == "slerp" && present.size() == 1;
  if (spec_.base == BasePolicy::kRequired && base == nullptr && !lone_slerp) {
    return Status::InvalidArgument("tensor " + Quote(output_name) + ": the base model " +
                                   Quote(Name(slice.sources[*slice.base].model)) +
                                   " lacks it but " + Quote(Name(model_of(present[0]))) +
                                   " has it; " + Quote(std::string(spec_.name)) +
                                   " needs the base for every tensor");
  }
  // Non-float buffers are copied from the first input (Version notes).
  const bool any_nonfloat = std::any_of(present.begin(), present.end(), [](const Candidate& c) {
    return !formats::IsConvertibleFloat(c.info->dtype);
  });
  const Candidate& first = base != nullptr ? *base : present[0];
  auto mismatch = [&](const Candidate& c, const std::string& note) {
    return Status::InvalidArgument(
        "tensor " + Quote(output_name) + ": shape " + formats::ShapeString(first.info->shape) +
        " in model " + Quote(Name(model_of(first))) + " but " +
        formats::ShapeString(c.info->shape) + " in model " + Quote(Name(model_of(c))) + note);
  };
  std::vector<int64_t> common = first.info->shape;
  bool embed_cut = false;
  for (const Candidate& c : present) {
    if (any_nonfloat) {
      if (c.info->shape != first.info->shape || c.info->dtype != first.info->dtype) {
        return mismatch(c,
                        " (a non-float tensor must have the same dtype and "
                        "shape everywhere)");
      }
      continue;
    }
    if (c.info->shape == first.info->shape) continue;
    if (tensor.is_embed && c.info->shape.size() == 2 && common.size() == 2) {
      if (recipe_.tokenizer.source != TokenizerSpec::Source::kNone) {
        return Status::Unsupported(
            "tensor " + Quote(output_name) + ": models have different vocabulary sizes (" +
            Quote(Name(model_of(first))) + " " + formats::ShapeString(first.info->shape) + ", " +
            Quote(Name(model_of(c))) + " " + formats::ShapeString(c.info->shape) +
            "); remapping embeddings through a tokenizer is not supported yet "
            "— remove the "
            "tokenizer setting to merge the common sub-matrix");
      }
      if (spec_.rectifies_embeddings) {  // §1.0 rectify_embed_sizes
        common[0] = std::min(common[0], c.info->shape[0]);
        common[1] = std::min(common[1], c.info->shape[1]);
        embed_cut = true;
        continue;
      }
      if (spec_.task_vectors && base != nullptr && c.info->shape[0] >= common[0] &&
          c.info->shape[1] >= common[1]) {
        embed_cut = true;  // §1.2 step 1: larger inputs are cut to the base shape
        continue;
      }
      return mismatch(
          c, " (" + std::string(spec_.name) + " cannot merge embeddings of different sizes)");
    }
    if (spec_.task_vectors && base != nullptr) continue;  // §1.2 step 1: skipped below
    return mismatch(c, "");
  }
  tensor.shape = common;
  tensor.copy_only = any_nonfloat;
  if (embed_cut) {
    plan_.warnings.push_back("tensor " + Quote(output_name) +
                             ": vocabulary sizes differ; using the common sub-matrix of size " +
                             formats::ShapeString(tensor.shape) +
                             " (config.json vocab_size is left as the donor's)");
  }
  // Global parameters see the output name (§2.3).
  ParamScope global_scope{{}, slice.params, module_params_, &recipe_.parameters};
  for (const ParamSpec& param : spec_.globals) {
    std::optional<double> value = ResolveGlobalParameter(global_scope, param.name, output_name, t);
    if (!value) value = param.default_value;
    if (!value) {
      return Status::InvalidArgument(Where(slice.line) + "Missing required parameter `" +
                                     std::string(param.name) + "` for tensor " +
                                     Quote(output_name) +
                                     "; a filter list needs a fallback entry `- value: ...`");
    }
    tensor.params.emplace(std::string(param.name), *value);
  }
  for (const Candidate& c : present) {
    if (tensor.copy_only && &c != &first) continue;  // one input: the base, else the first
    const bool embed_2d = tensor.is_embed && c.info->shape.size() == 2 && tensor.shape.size() == 2;
    if (spec_.task_vectors && base != nullptr && &c != base && !embed_2d &&
        c.info->shape != base->info->shape) {
      plan_.warnings.push_back("tensor " + Quote(output_name) + ": skipping model " +
                               Quote(Name(model_of(c))) + " due to size mismatch (" +
                               formats::ShapeString(c.info->shape) + " vs the base's " +
                               formats::ShapeString(base->info->shape) + ")");
      continue;
    }
    PlannedInput input;
    input.model_index = model_of(c);
    input.input_name = c.info->name;
    input.input_shape = c.info->shape;
    input.input_dtype = c.info->dtype;
    input.is_base = is_base(c);
    input.is_tied = c.tied;
    ALLOY_RETURN_IF_ERROR(ResolveParams(slice, c, tensor, input));
    tensor.inputs.push_back(std::move(input));
  }
  tensor.out_dtype = tensor.copy_only ? first.info->dtype : plan_.out_dtype;
  ALLOY_ASSIGN_OR_RETURN(tensor.nbytes, formats::CheckedByteSize(tensor.out_dtype, tensor.shape));
  plan_.total_bytes += tensor.nbytes;
  plan_.tensors.push_back(std::move(tensor));
  return Status::OK();
}

}  // namespace alloy::merge::plan_internal
