// The planner's method table (mergekit-semantics.md §1.A) and architecture
// inference from tensor names (§3.2 "inference", §3.5).
#include <algorithm>
#include <array>
#include <cctype>

#include "merge/plan_internal.h"

namespace alloy::merge::plan_internal {
namespace {

using formats::Status;

ParamSpec Opt(std::string_view name, double value) { return ParamSpec{name, value, false, false}; }
ParamSpec Req(std::string_view name) { return ParamSpec{name, std::nullopt, true, false}; }

// §1.2: the task-arithmetic family differs only in defaults and extras.
MethodSpec TaskArithmetic(std::string_view name, double normalize, double rescale,
                          std::string_view extra = "", double extra_default = 0) {
  MethodSpec spec{name, BasePolicy::kRequired, 1, -1, false, true, {}, {}};
  spec.globals = {Opt("int8_mask", 0), Opt("normalize", normalize), Opt("rescale", rescale),
                  Opt("lambda", 1.0)};
  spec.per_model = {Req("weight"), Opt("density", 1.0)};
  if (!extra.empty()) spec.per_model.push_back(Opt(extra, extra_default));
  return spec;
}

MethodSpec Spec(std::string_view name, BasePolicy base, int min_others, int max_others,
                bool rectifies, std::vector<ParamSpec> globals, std::vector<ParamSpec> per_model) {
  return MethodSpec{name,      base,  min_others,         max_others,
                    rectifies, false, std::move(globals), std::move(per_model)};
}

std::vector<MethodSpec> BuildSpecs() {
  constexpr BasePolicy kIgnored = BasePolicy::kIgnored;
  constexpr BasePolicy kOptional = BasePolicy::kOptional;
  constexpr BasePolicy kRequired = BasePolicy::kRequired;
  // Only linear requires `weight` for the base too (§1.1).
  const ParamSpec linear_weight{"weight", std::nullopt, true, true};
  // passthrough's `scale` is optional without a default: absent means "no scaling".
  const ParamSpec scale{"scale", std::nullopt, false, false};
  return {
      Spec("linear", kIgnored, 1, -1, true, {Opt("normalize", 1)}, {linear_weight}),
      TaskArithmetic("task_arithmetic", 0, 0),
      TaskArithmetic("ties", 1, 0),
      TaskArithmetic("dare_ties", 0, 1),
      TaskArithmetic("dare_linear", 0, 1),
      TaskArithmetic("breadcrumbs", 0, 0, "gamma", 0.01),
      TaskArithmetic("breadcrumbs_ties", 0, 0, "gamma", 0.01),
      TaskArithmetic("della", 1, 1, "epsilon", 0.15),
      TaskArithmetic("della_linear", 0, 1, "epsilon", 0.15),
      Spec("slerp", kRequired, 1, 1, true, {Req("t")}, {}),
      Spec("nuslerp", kOptional, 2, 2, true,
           {Opt("nuslerp_flatten", 1), Opt("nuslerp_row_wise", 0)}, {Req("weight")}),
      Spec("multislerp", kOptional, 1, -1, false, {Opt("normalize_weights", 1), Opt("eps", 1e-8)},
           {Req("weight")}),
      Spec("karcher", kIgnored, 1, -1, true, {Opt("max_iter", 10), Opt("tol", 1e-5)}, {}),
      Spec("model_stock", kRequired, 2, -1, true, {Opt("filter_wise", 0)}, {}),
      Spec("arcee_fusion", kRequired, 1, 1, true, {}, {}),
      Spec("nearswap", kRequired, 1, 1, false, {Req("t")}, {}),
      Spec("sce", kRequired, 1, -1, false, {Opt("select_topk", 1), Opt("int8_mask", 0)}, {}),
      Spec("ram", kRequired, 1, -1, false, {Opt("epsilon", 1e-5)}, {}),
      Spec("ramplus_tl", kRequired, 1, -1, false,
           {Opt("r", 0.1), Opt("alpha", 0.2), Opt("epsilon", 1e-5)}, {}),
      Spec("passthrough", kIgnored, 1, 1, false, {}, {scale}),
  };
}

std::optional<int64_t> IntAt(const nlohmann::json& node, const char* key) {
  if (!node.is_object()) return std::nullopt;
  auto it = node.find(key);
  if (it == node.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

}  // namespace

const MethodSpec* FindMethodSpec(std::string_view name) {
  static const std::vector<MethodSpec> kSpecs = BuildSpecs();
  for (const MethodSpec& spec : kSpecs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool SplitLayerName(const std::string& name, std::string* prefix, int64_t* index,
                    std::string* suffix) {
  // `<...>(layers|h|blocks|blk).<digits>.` at a component boundary, as
  // LayerIndexOf (`blk` is GGUF's).
  for (std::string_view word : {"layers.", "h.", "blocks.", "blk."}) {
    size_t pos = 0;
    while ((pos = name.find(word, pos)) != std::string::npos) {
      const bool boundary = pos == 0 || name[pos - 1] == '.';
      size_t digits = pos + word.size();
      size_t end = digits;
      while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
      if (boundary && end > digits && end - digits <= 9 && end < name.size() && name[end] == '.') {
        *prefix = name.substr(0, digits);
        *index = std::stoll(name.substr(digits, end - digits));
        *suffix = name.substr(end);
        return true;
      }
      pos += 1;
    }
  }
  return false;
}

bool IsEmbedName(std::string_view name) {
  for (std::string_view part : {"embed_tokens", "wte", "word_embeddings", "embed_in",
                                "tok_embeddings", "lm_head", "embed_out", "token_embd"}) {
    if (name.find(part) != std::string_view::npos) return true;
  }
  return name == "output.weight";  // GGUF's lm_head
}

bool IsTiedHeadName(std::string_view name) {
  return name == "lm_head.weight" || name == "output.weight" ||  // GGUF's head
         (name.size() > 15 && name.substr(name.size() - 15) == ".lm_head.weight");
}

namespace {

// Input embeddings (and positional ones) come before the layers; norms and
// heads after (§3.5: the only pre-weight of the built-in architectures is the
// token embedding).
bool IsPreName(std::string_view name) {
  if (name.find("lm_head") != std::string_view::npos ||
      name.find("embed_out") != std::string_view::npos) {
    return false;
  }
  for (std::string_view part : {"embed_tokens", "wte", "wpe", "word_embeddings", "embed_in",
                                "tok_embeddings", "embeddings.", "token_embd"}) {
    if (name.find(part) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

formats::Result<ModelLayout> InferLayout(const formats::TensorSource& source,
                                         const nlohmann::json& config, const std::string& model) {
  ModelLayout layout;
  std::vector<std::vector<LayerTensor>> layers;
  for (const formats::TensorInfo& info : source.tensors()) {
    LayerTensor tensor;
    int64_t index = -1;
    if (SplitLayerName(info.name, &tensor.prefix, &index, &tensor.suffix)) {
      if (static_cast<size_t>(index) >= layers.size()) {
        layers.resize(static_cast<size_t>(index) + 1);
      }
      tensor.info = &info;
      layers[static_cast<size_t>(index)].push_back(std::move(tensor));
      continue;
    }
    if (IsPreName(info.name)) {
      layout.pre.push_back(&info);
      if (layout.embedding_name.empty() && IsEmbedName(info.name)) {
        layout.embedding_name = info.name;
      }
    } else {
      layout.post.push_back(&info);
    }
  }
  const int64_t detected = static_cast<int64_t>(layers.size());
  std::optional<int64_t> configured;
  for (const char* key : {"num_hidden_layers", "n_layer", "num_layers"}) {
    if ((configured = IntAt(config, key))) {
      layout.layer_key = key;
      break;
    }
  }
  if (!configured && config.is_object() && config.contains("text_config")) {
    if ((configured = IntAt(config["text_config"], "num_hidden_layers"))) {
      layout.layer_key = "text_config.num_hidden_layers";
    }
  }
  if (configured && *configured != detected) {
    return Status::InvalidArgument("model '" + model + "': config.json says " + layout.layer_key +
                                   " = " + std::to_string(*configured) +
                                   " but its tensor names have " + std::to_string(detected) +
                                   " layers");
  }
  for (size_t layer_idx = 0; layer_idx < layers.size(); ++layer_idx) {
    if (layers[layer_idx].empty()) {
      return Status::InvalidArgument("model '" + model + "': layer " + std::to_string(layer_idx) +
                                     " has no tensors (layers up to " +
                                     std::to_string(detected - 1) + " exist)");
    }
  }
  layout.layers = std::move(layers);
  layout.num_layers = detected;
  return layout;
}

}  // namespace alloy::merge::plan_internal
