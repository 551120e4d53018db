// PlanMerge: recipe + model headers → MergePlan (mergekit-semantics.md
// §2.3–2.7, §3.4, §6.1). Reads tensor listings and config.json only.
#include "merge/plan.h"

#include <algorithm>
#include <map>
#include <set>

#include "merge/fp8_model.h"
#include "merge/plan_internal.h"

namespace alloy::merge {
namespace plan_internal {

using formats::Status;

namespace {

// config (or its text_config) of model `model`.
const nlohmann::json* Section(const std::vector<nlohmann::json>& configs, size_t model, bool text) {
  const nlohmann::json& c = configs[model];
  if (!c.is_object()) return nullptr;
  if (!text) return &c;
  return c.contains("text_config") && c["text_config"].is_object() ? &c["text_config"] : nullptr;
}

std::string IdentityOf(const OpenedModel& m) { return m.identity.empty() ? m.directory : m.identity; }

}  // namespace

// Slices change which layer sits where: per-layer config entries follow.
// `layer_types` (sliding/full attention per layer) is rebuilt from each output
// layer's source layer (left out when a source's list does not cover it); `max_window_layers` equal to the donor's layer count
// (every layer) becomes the new count; any other value cannot be carried over
// and is left as it is, with a warning (methods-beyond.md §3.1).
void Planner::RewritePerLayerConfig(nlohmann::json& section, bool text, int64_t donor_layers) {
  if (section.contains("layer_types") && section["layer_types"].is_array()) {
    nlohmann::json types = nlohmann::json::array();
    for (const auto& [model, layer] : layer_sources_) {
      const nlohmann::json* src = Section(configs_, model, text);
      if (src == nullptr || !src->contains("layer_types") || !(*src)["layer_types"].is_array() ||
          static_cast<int64_t>((*src)["layer_types"].size()) <= layer) {
        // A list of the wrong length makes transformers refuse the config.
        plan_.warnings.push_back("config.json: `layer_types` of " + Quote(Name(model)) +
                                 " does not cover layer " + std::to_string(layer) +
                                 "; the output config leaves `layer_types` out");
        section.erase("layer_types");
        break;
      }
      types.push_back((*src)["layer_types"][static_cast<size_t>(layer)]);
    }
    if (section.contains("layer_types")) section["layer_types"] = std::move(types);
  }
  if (section.contains("max_window_layers") && section["max_window_layers"].is_number_integer()) {
    if (section["max_window_layers"].get<int64_t>() == donor_layers) {
      section["max_window_layers"] = plan_.num_layers;
    } else {
      plan_.warnings.push_back("config.json: `max_window_layers` (" +
                               section["max_window_layers"].dump() +
                               ") is copied unchanged; check it against the new layer order");
    }
  }
}

formats::Result<OpenedModel> Planner::Open(const ModelRef& ref) {
  const std::string key = ModelKey(ref);
  auto it = opened_by_key_.find(key);
  if (it != opened_by_key_.end()) return it->second;
  formats::Result<OpenedModel> opened = inputs_.open(ref);
  if (!opened.ok()) {
    return opened.status().WithContext(Where(ref.line) + "model " + Quote(ref.text));
  }
  ALLOY_CHECK(opened->source != nullptr);
  opened_by_key_.emplace(key, *opened);
  return opened;
}

formats::Result<size_t> Planner::Intern(const ModelRef& ref, const OpenedModel& opened) {
  for (size_t model_idx = 0; model_idx < plan_.models.size(); ++model_idx) {
    if (plan_.models[model_idx].identity == IdentityOf(opened)) return model_idx;
  }
  PlannedModel model;
  model.ref = ref;
  model.path = opened.path;
  model.directory = opened.directory;
  model.identity = IdentityOf(opened);
  ALLOY_ASSIGN_OR_RETURN(ModelLayout layout,
                         plan_internal::InferLayout(*opened.source, opened.config, ref.text));
  model.num_layers = layout.num_layers;
  if (opened.config.is_object() && opened.config.contains("architectures") &&
      opened.config["architectures"].is_array() && !opened.config["architectures"].empty() &&
      opened.config["architectures"][0].is_string()) {
    model.architecture = opened.config["architectures"][0].get<std::string>();
  }
  std::map<formats::DType, uint64_t> bytes;
  for (const formats::TensorInfo& info : opened.source->tensors()) bytes[info.dtype] += info.nbytes;
  uint64_t most = 0;
  for (const auto& [dtype, n] : bytes) {
    if (n > most && formats::IsConvertibleFloat(dtype)) {
      most = n;
      model.stored_dtype = dtype;
    }
  }
  plan_.models.push_back(std::move(model));
  layouts_.push_back(std::move(layout));
  sources_.push_back(opened.source);
  configs_.push_back(opened.config);
  return plan_.models.size() - 1;
}

formats::Result<size_t> Planner::AddModel(const ModelRef& ref) {
  ALLOY_ASSIGN_OR_RETURN(OpenedModel opened, Open(ref));
  return Intern(ref, opened);
}

// The slice's base among its sources, by key or by directory (Decision (h));
// nullopt when it is not one of them. The base is only opened when its
// spelling matches no source.
formats::Result<std::optional<size_t>> Planner::FindBase(const ModelRef& base,
                                                         const WorkSlice& slice) {
  const std::string key = ModelKey(base);
  for (size_t source_idx = 0; source_idx < slice.sources.size(); ++source_idx) {
    if (ModelKey(plan_.models[slice.sources[source_idx].model].ref) == key) {
      return std::optional<size_t>(source_idx);
    }
  }
  formats::Result<OpenedModel> opened = Open(base);
  if (!opened.ok()) {
    // slerp (Decision (i)) and linear (§1.1) do not need a base that is not
    // merged.
    if (spec_.name == "slerp" || spec_.base == BasePolicy::kIgnored) {
      return std::optional<size_t>();
    }
    return opened.status();
  }
  for (size_t source_idx = 0; source_idx < slice.sources.size(); ++source_idx) {
    if (plan_.models[slice.sources[source_idx].model].identity == IdentityOf(*opened)) {
      return std::optional<size_t>(source_idx);
    }
  }
  return std::optional<size_t>();
}

Status Planner::BuildSlices() {
  const std::vector<ModelEntry>* models = &recipe_.models;
  const std::vector<Slice>* slices = &recipe_.slices;
  if (!recipe_.modules.empty()) {
    if (recipe_.modules.size() > 1) {
      return Status::Unsupported(Where(recipe_.modules[1].line) +
                                 "`modules:` with more than one module is not supported yet");
    }
    models = &recipe_.modules[0].models;
    slices = &recipe_.modules[0].slices;
    module_params_ = &recipe_.modules[0].parameters;
  }
  auto add_source = [&](WorkSlice& slice, const ModelRef& ref, int64_t begin, int64_t end,
                        const ParamMap* params, int line) -> Status {
    ALLOY_ASSIGN_OR_RETURN(size_t model, AddModel(ref));
    for (WorkSource& source : slice.sources) {
      if (source.model == model) {  // §2.3: the first entry's range; all its parameters
        source.params.push_back(params);
        return Status::OK();
      }
    }
    slice.sources.push_back(WorkSource{model, begin, end, {params}, line});
    return Status::OK();
  };
  static const ParamMap kNoParams;
  if (!models->empty()) {
    // §2.6: one slice over all layers of every model.
    WorkSlice slice;
    slice.line = models->front().line;
    for (const ModelEntry& entry : *models) {
      ALLOY_RETURN_IF_ERROR(add_source(slice, entry.model, 0, -1, &entry.parameters, entry.line));
    }
    if (recipe_.base_model) {
      ALLOY_ASSIGN_OR_RETURN(slice.base, FindBase(*recipe_.base_model, slice));
      const bool global_weight = recipe_.parameters.count("weight") != 0 ||
                                 (module_params_ && module_params_->count("weight") != 0);
      if (!slice.base && spec_.name == "slerp") {
        slice.base = 0;
        plan_.warnings.push_back(Where(recipe_.base_model->line) + "slerp base_model " +
                                 Quote(recipe_.base_model->text) +
                                 " is not one of the merged models; using " +
                                 Quote(Name(slice.sources[0].model)) + " as the base");
      } else if (!slice.base && spec_.name == "linear" && !global_weight) {
        plan_.warnings.push_back(Where(recipe_.base_model->line) + "base_model " +
                                 Quote(recipe_.base_model->text) +
                                 " is not listed in `models:`; linear does not use a base, so "
                                 "it is ignored");
      } else if (!slice.base) {
        // §2.6: "Base model specified but not in input models - adding".
        ALLOY_RETURN_IF_ERROR(
            add_source(slice, *recipe_.base_model, 0, -1, &kNoParams, recipe_.base_model->line));
        slice.base = slice.sources.size() - 1;
      }
    }
    for (WorkSource& source : slice.sources) source.end = plan_.models[source.model].num_layers;
    slices_.push_back(std::move(slice));
    return Status::OK();
  }
  plan_.uses_slices = true;
  for (const Slice& recipe_slice : *slices) {
    WorkSlice slice;
    slice.line = recipe_slice.line;
    slice.params = &recipe_slice.parameters;
    for (const SliceSource& source : recipe_slice.sources) {
      ALLOY_RETURN_IF_ERROR(add_source(slice, source.model, source.layer_begin, source.layer_end,
                                       &source.parameters, source.line));
    }
    const std::optional<ModelRef>& base =
        recipe_slice.base_model ? recipe_slice.base_model : recipe_.base_model;
    if (base) {
      ALLOY_ASSIGN_OR_RETURN(slice.base, FindBase(*base, slice));
      if (!slice.base && spec_.name == "slerp") {
        slice.base = 0;  // Decision (i)
        plan_.warnings.push_back(Where(slice.line) + "slerp base_model " + Quote(base->text) +
                                 " is not a source of this slice; using " +
                                 Quote(Name(slice.sources[0].model)) + " as the base");
      } else if (!slice.base && spec_.base == BasePolicy::kRequired) {
        return Status::InvalidArgument(Where(slice.line) + Quote(std::string(spec_.name)) +
                                       " needs the base model " + Quote(base->text) +
                                       " among the slice's sources; add it with the same "
                                       "layer_range");
      }
    }
    slices_.push_back(std::move(slice));
  }
  return Status::OK();
}

Status Planner::CheckSlice(const WorkSlice& slice) const {
  const WorkSource& first = slice.sources.front();
  for (const WorkSource& source : slice.sources) {
    const PlannedModel& model = plan_.models[source.model];
    if (source.begin < 0 || source.end > model.num_layers || source.begin >= source.end) {
      if (model.num_layers == 0 && source.begin == 0 && source.end == 0) continue;
      return Status::InvalidArgument(
          Where(source.line) + "layer_range [" + std::to_string(source.begin) + ", " +
          std::to_string(source.end) + "] of model " + Quote(model.ref.text) +
          " is out of bounds: it has " + std::to_string(model.num_layers) + " layers (0.." +
          std::to_string(model.num_layers - 1) + ")");
    }
    if (source.end - source.begin != first.end - first.begin) {
      return Status::InvalidArgument(
          Where(source.line) + "all inputs to a slice must have the same number of layers: " +
          Quote(Name(first.model)) + " has " + std::to_string(first.end - first.begin) + ", " +
          Quote(model.ref.text) + " has " + std::to_string(source.end - source.begin));
    }
  }
  // §1.A input counts; the base does not count for methods that use one.
  const int n_all = static_cast<int>(slice.sources.size());
  if (spec_.base == BasePolicy::kRequired && !slice.base) {
    return Status::InvalidArgument(Where(slice.line) + Quote(std::string(spec_.name)) +
                                   " needs a base_model");
  }
  const bool counts_base = spec_.base == BasePolicy::kIgnored || !slice.base;
  const int n_others = counts_base ? n_all : n_all - 1;
  const bool too_few = n_others < spec_.min_others;
  const bool too_many = spec_.max_others >= 0 && n_others > spec_.max_others;
  if (too_few || too_many) {
    std::string want =
        spec_.max_others == spec_.min_others ? "exactly " + std::to_string(spec_.min_others)
        : spec_.max_others < 0
            ? "at least " + std::to_string(spec_.min_others)
            : std::to_string(spec_.min_others) + " to " + std::to_string(spec_.max_others);
    std::string what = counts_base ? " model(s)" : " model(s) besides the base";
    return Status::InvalidArgument(
        Where(slice.line) + Quote(std::string(spec_.name)) + " merges " + want + what + ", this " +
        (plan_.uses_slices ? "slice" : "recipe") + " has " + std::to_string(n_others));
  }
  return Status::OK();
}

formats::Result<MergePlan> Planner::Run() {
  plan_.method = recipe_.merge_method;
  ALLOY_RETURN_IF_ERROR(BuildSlices());
  // Decision (h)/(c): the recipe's base, when it is a merged model; the donor
  // of config and tokenizer is the base, else the first model.
  if (recipe_.base_model && !slices_.empty() && slices_.front().base) {
    const WorkSlice& first = slices_.front();
    if (spec_.name != "slerp" || ModelKey(*recipe_.base_model) ==
                                     ModelKey(plan_.models[first.sources[*first.base].model].ref)) {
      plan_.base_model = first.sources[*first.base].model;
    }
  }
  if (recipe_.base_model && !plan_.base_model && spec_.name != "slerp") {
    for (size_t model_idx = 0; model_idx < plan_.models.size(); ++model_idx) {
      if (ModelKey(plan_.models[model_idx].ref) == ModelKey(*recipe_.base_model)) {
        plan_.base_model = model_idx;
      }
    }
  }
  if (plan_.base_model) plan_.models[*plan_.base_model].is_base = true;
  plan_.config_donor = plan_.base_model.value_or(0);
  for (const PlannedModel& model : plan_.models) {
    const std::string& arch = plan_.models[plan_.config_donor].architecture;
    if (!inputs_.allow_crimes && !model.architecture.empty() && !arch.empty() &&
        model.architecture != arch) {
      return Status::InvalidArgument(
          Where(model.ref.line) + "model " + Quote(model.ref.text) + " is a " + model.architecture +
          " but " + Quote(plan_.models[plan_.config_donor].ref.text) + " is a " + arch +
          "; merging different architectures needs "
          "--allow-crimes");
    }
  }
  for (const WorkSlice& slice : slices_) ALLOY_RETURN_IF_ERROR(CheckSlice(slice));
  // Decision (g).
  plan_.input_cast = recipe_.dtype;
  plan_.out_dtype = recipe_.out_dtype ? *recipe_.out_dtype
                    : recipe_.dtype   ? *recipe_.dtype
                                      : plan_.models[plan_.config_donor].stored_dtype;
  ALLOY_RETURN_IF_ERROR(PlanNonLayer(slices_.front(), /*pre=*/true));
  for (const WorkSlice& slice : slices_) {
    const int64_t n = slice.sources.front().end - slice.sources.front().begin;
    for (int64_t k = 0; k < n; ++k) {
      // §2.5: t = k/(L−1) per output slice; a one-layer slice has t = 1.
      const double t = n == 1 ? 1.0 : static_cast<double>(k) / static_cast<double>(n - 1);
      ALLOY_RETURN_IF_ERROR(PlanLayer(slice, k, plan_.num_layers, t));
      layer_sources_.emplace_back(slice.sources.front().model, slice.sources.front().begin + k);
      ++plan_.num_layers;
    }
  }
  ALLOY_RETURN_IF_ERROR(PlanNonLayer(slices_.back(), /*pre=*/false));
  for (const auto& [key, entry] : dropped_) {
    plan_.warnings.push_back(
        "model " + Quote(Name(key.first)) + " lacks " + Quote(entry.second) +
        (entry.first > 1 ? " (and " + std::to_string(entry.first - 1) + " more like it)" : "") +
        "; it is left out of those tensors");
  }
  // §3.4: the donor's config with the output dtype and, for slices, the layer
  // count.
  plan_.output_config = configs_[plan_.config_donor];
  DropFp8QuantizationConfig(plan_.output_config);  // inputs are read dequantized
  if (plan_.output_config.is_object()) {
    const std::string dtype_key =
        plan_.output_config.contains("dtype") && !plan_.output_config.contains("torch_dtype")
            ? "dtype"
            : "torch_dtype";
    plan_.output_config[dtype_key] = std::string(formats::DTypeTorchName(plan_.out_dtype));
    const std::string& key = layouts_[plan_.config_donor].layer_key;
    if (plan_.uses_slices && !key.empty()) {
      const bool text = key.rfind("text_config.", 0) == 0;
      nlohmann::json& section = text ? plan_.output_config["text_config"] : plan_.output_config;
      const std::string count_key = text ? key.substr(12) : key;
      const int64_t donor_layers = layouts_[plan_.config_donor].num_layers;
      section[count_key] = plan_.num_layers;
      RewritePerLayerConfig(section, text, donor_layers);
    }
  }
  if (recipe_.tokenizer.pad_to_multiple_of) {
    // mergekit pads the embeddings and vocab_size; ignoring it would change the output shape.
    return Status::Unsupported(Where(recipe_.tokenizer.line) +
                               "`tokenizer: pad_to_multiple_of:` (padding the embeddings) is not "
                               "supported yet; remove it to keep the vocabulary size as it is");
  }
  // §6.1 step 8: tokenizer files come from the donor or the named model.
  plan_.tokenizer_directory = plan_.models[plan_.config_donor].directory;
  if (recipe_.tokenizer.source == TokenizerSpec::Source::kModel) {
    ALLOY_ASSIGN_OR_RETURN(OpenedModel opened, Open(recipe_.tokenizer.model));
    plan_.tokenizer_directory = opened.directory;
  }
  return std::move(plan_);
}

}  // namespace plan_internal

formats::Result<MergePlan> PlanMerge(const Recipe& recipe, const PlanInputs& inputs) {
  const plan_internal::MethodSpec* spec = plan_internal::FindMethodSpec(recipe.merge_method);
  if (spec == nullptr) {
    return formats::Status::InvalidArgument("unknown merge_method '" + recipe.merge_method + "'");
  }
  if (!inputs.open) return formats::Status::InvalidArgument("PlanMerge: no model opener given");
  plan_internal::Planner planner(recipe, inputs, *spec);
  return planner.Run();
}

}  // namespace alloy::merge
