#include "formats/lora_adapter.h"

#include <cmath>
#include <optional>
#include <regex>

#include "formats/dtype.h"
#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/safetensors_reader.h"

namespace alloy::formats {
namespace {

constexpr std::string_view kPrefix = "base_model.model.";

// The factors found for one module, in adapter file order.
struct Parts {
  const TensorInfo* a = nullptr;
  const TensorInfo* b = nullptr;
  const TensorInfo* bias = nullptr;
  bool embedding = false;
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A boolean field (absent or null: `fallback`).
Result<bool> Bool(const nlohmann::json& config, const char* key, bool fallback,
                  const std::string& where) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  if (!config[key].is_boolean()) {
    return Status::Corrupt(where + ": `" + key + "` must be true or false");
  }
  return config[key].get<bool>();
}

// std::regex backtracks, so a hostile key can take exponential time (found by
// lora_config_fuzz: 50 empty alternatives around `.*+` hung for minutes). Keys
// are module names or simple regexes in practice; refused: longer than 256
// characters, more than 32 alternatives, an empty alternative, a quantifier
// stacked on a quantifier, or a quantified group that holds a quantifier or
// an alternation. Returns the reason, or "" when the key is tame.
std::string UntameRegexReason(const std::string& key) {
  if (key.size() > 256) return "longer than 256 characters";
  const auto quantifier = [](char c) { return c == '*' || c == '+' || c == '{' || c == '?'; };
  int alternatives = 0;
  std::vector<bool> group_risky;  // per open group: holds a quantifier or '|'
  char prev = '\0';              // previous significant character ('\0' at a start)
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    if (c == '\\') {  // an escaped character is a literal
      ++i;
      prev = 'a';
      continue;
    }
    if (c == '|') {
      if (++alternatives > 32) return "more than 32 alternatives";
      if (prev == '\0' || prev == '(' || prev == '|') return "an empty alternative";
      if (!group_risky.empty()) group_risky.back() = true;
    } else if (quantifier(c)) {
      const bool after_quantifier = prev == '*' || prev == '+' || prev == '}' || prev == '?';
      if (after_quantifier && c != '?') return "a quantifier on a quantifier";
      if (!group_risky.empty()) group_risky.back() = true;
      if (c == '{') {
        const size_t close = key.find('}', i);
        if (close == std::string::npos) break;  // std::regex reports it
        i = close;
        prev = '}';
        continue;
      }
    } else if (c == '(') {
      group_risky.push_back(false);
    } else if (c == ')') {
      const bool risky = !group_risky.empty() && group_risky.back();
      if (!group_risky.empty()) group_risky.pop_back();
      if (risky && i + 1 < key.size() && quantifier(key[i + 1]) && key[i + 1] != '?') {
        return "a repeated group that holds a quantifier or an alternation";
      }
      if (risky && !group_risky.empty()) group_risky.back() = true;
    }
    if (prev == '|' && c == ')') return "an empty alternative";
    prev = c;
  }
  if (prev == '|') return "an empty alternative";
  return "";
}

// rank_pattern or alpha_pattern, compiled once: Find(module) is the value of
// the first key k (file order) for which (.*\.)?(k) matches the whole module
// name (PEFT's get_pattern_key), if any.
class Patterns {
 public:
  static Result<Patterns> Compile(const nlohmann::ordered_json& config, const char* field,
                                  const std::string& where) {
    Patterns p;
    if (!config.contains(field) || !config[field].is_object()) return p;
    for (const auto& [key, value] : config[field].items()) {
      if (!value.is_number()) {
        return Status::Corrupt(where + ": `" + field + "` value for '" + key +
                               "' must be a number");
      }
      if (const std::string why = UntameRegexReason(key); !why.empty()) {
        return Status::Unsupported(where + ": `" + field + "` key '" + PrintableText(key) +
                                   "' is a regex alloy does not run (" + why +
                                   "): matching it could take exponential time; PEFT patterns "
                                   "are module names or simple regexes");
      }
      try {
        p.entries_.emplace_back(std::regex("(.*\\.)?(" + key + ")", std::regex::optimize),
                                value.get<double>());
      } catch (const std::regex_error&) {
        return Status::Corrupt(where + ": `" + field + "` key '" + key + "' is not a valid regex");
      }
    }
    return p;
  }

  std::optional<double> Find(const std::string& module) const {
    for (const auto& [re, value] : entries_) {
      if (std::regex_match(module, re)) return value;
    }
    return std::nullopt;
  }

 private:
  std::vector<std::pair<std::regex, double>> entries_;
};

std::string ShapeOf(const TensorInfo* t) { return ShapeString(t->shape); }

}  // namespace

Result<std::unique_ptr<LoraAdapter>> LoraAdapter::Open(const std::string& dir, FileAccess access,
                                                       SymlinkPolicy symlinks) {
  const std::string config_path = dir + "/adapter_config.json";
  ALLOY_RETURN_IF_ERROR(CheckFilesInsideDirectory(
      dir, {"adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"}, symlinks));
  if (!IsRegularFile(config_path)) {
    return Status::NotFound(dir + ": no adapter_config.json; a PEFT LoRA adapter directory holds "
                                  "adapter_config.json and adapter_model.safetensors");
  }
  ALLOY_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(config_path));
  const WeightsOpener open_weights = [&]() -> Result<std::unique_ptr<TensorSource>> {
    const std::string weights = dir + "/adapter_model.safetensors";
    if (!IsRegularFile(weights)) {
      if (IsRegularFile(dir + "/adapter_model.bin")) {
        return Status::Unsupported(dir + ": adapter_model.bin (a pickle) is not supported yet; "
                                         "save the adapter with safe_serialization=True");
      }
      return Status::NotFound(dir + ": adapter_config.json is there but "
                                    "adapter_model.safetensors is missing");
    }
    return OpenSafetensorsFile(weights, access);
  };
  return OpenFromConfigText(dir, text, open_weights);
}

Result<std::unique_ptr<LoraAdapter>> LoraAdapter::OpenFromConfigText(
    const std::string& dir, std::string_view text, const WeightsOpener& open_weights) {
  const std::string config_path = dir + "/adapter_config.json";
  ALLOY_ASSIGN_OR_RETURN(nlohmann::json config, ParseStrictJson(text, config_path));
  if (!config.is_object()) return Status::Corrupt(config_path + ": not a JSON object");
  // Key order matters for rank_pattern and alpha_pattern (first match wins);
  // the strict parse above already refused duplicates.
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(text);

  auto adapter = std::unique_ptr<LoraAdapter>(new LoraAdapter());
  adapter->directory_ = dir;
  if (!config.contains("peft_type") || !config["peft_type"].is_string()) {
    return Status::Corrupt(config_path + ": `peft_type` is missing (PEFT writes \"LORA\")");
  }
  const std::string peft_type = config["peft_type"].get<std::string>();
  if (peft_type != "LORA") {
    return Status::Unsupported(config_path + ": peft_type '" + peft_type +
                               "' is not LoRA; alloy applies LoRA adapters only");
  }
  if (config.contains("r") && !config["r"].is_null()) {
    if (!config["r"].is_number_integer() || config["r"].get<int64_t>() <= 0) {
      return Status::Corrupt(config_path + ": `r` must be a positive integer");
    }
    adapter->default_rank_ = config["r"].get<int64_t>();
  }
  if (config.contains("lora_alpha") && !config["lora_alpha"].is_null()) {
    if (!config["lora_alpha"].is_number()) {
      return Status::Corrupt(config_path + ": `lora_alpha` must be a number");
    }
    adapter->default_alpha_ = config["lora_alpha"].get<double>();
  }
  ALLOY_ASSIGN_OR_RETURN(adapter->use_rslora_, Bool(config, "use_rslora", false, config_path));
  ALLOY_ASSIGN_OR_RETURN(adapter->fan_in_fan_out_,
                         Bool(config, "fan_in_fan_out", false, config_path));
  const bool fan_in_fan_out = adapter->fan_in_fan_out_;
  ALLOY_ASSIGN_OR_RETURN(const bool use_dora, Bool(config, "use_dora", false, config_path));
  if (use_dora) {
    return Status::Unsupported(config_path + ": DoRA adapters (`use_dora: true`) are not "
                                             "supported yet");
  }
  if (config.contains("layer_replication") && !config["layer_replication"].is_null() &&
      !config["layer_replication"].empty()) {
    return Status::Unsupported(config_path + ": `layer_replication` (PEFT depth up-scaling) "
                                             "cannot be applied as a delta");
  }
  if (config.contains("init_lora_weights") && config["init_lora_weights"].is_string()) {
    const std::string init = config["init_lora_weights"].get<std::string>();
    for (const char* mutating : {"pissa", "olora", "corda", "loftq"}) {
      if (init.rfind(mutating, 0) == 0) {
        return Status::Unsupported(
            config_path + ": init_lora_weights '" + init +
            "' changed the base weights when training started, so this adapter is not a delta "
            "on the original base; convert it with PEFT first (path_initial_model_for_weight_"
            "conversion)");
      }
    }
  }
  if (config.contains("base_model_name_or_path") && config["base_model_name_or_path"].is_string()) {
    adapter->base_model_ = config["base_model_name_or_path"].get<std::string>();
  }

  const std::string weights = dir + "/adapter_model.safetensors";
  ALLOY_ASSIGN_OR_RETURN(adapter->tensors_, open_weights());

  std::vector<std::string> order;  // modules in file order
  std::map<std::string, Parts> parts;
  for (const TensorInfo& info : adapter->tensors_->tensors()) {
    std::string_view name = info.name;
    if (name.substr(0, kPrefix.size()) != kPrefix) {
      return Status::Corrupt(weights + ": tensor '" + info.name + "' is not under `" +
                             std::string(kPrefix) + "`, so it is not a PEFT adapter key");
    }
    name.remove_prefix(kPrefix.size());
    struct Suffix {
      std::string_view text;
      int part;  // 0 A, 1 B, 2 bias, 3 embedding A, 4 embedding B
    };
    static constexpr Suffix kSuffixes[] = {{".lora_A.weight", 0},    {".lora_B.weight", 1},
                                           {".lora_B.bias", 2},      {".lora_embedding_A", 3},
                                           {".lora_embedding_B", 4}};
    int part = -1;
    std::string module;
    for (const Suffix& s : kSuffixes) {
      if (EndsWith(name, s.text)) {
        part = s.part;
        module = std::string(name.substr(0, name.size() - s.text.size()));
        break;
      }
    }
    if (part < 0) {
      if (name.find("lora_magnitude_vector") != std::string_view::npos) {
        return Status::Unsupported(weights + ": tensor '" + info.name +
                                   "' is a DoRA magnitude; DoRA adapters are not supported yet");
      }
      if (name.find(".lora_") != std::string_view::npos) {
        return Status::Unsupported(weights + ": tensor '" + info.name +
                                   "' is a LoRA key alloy does not know");
      }
      adapter->replacements_.emplace(std::string(name), &info);  // modules_to_save
      continue;
    }
    if (!IsConvertibleFloat(info.dtype)) {
      return Status::Corrupt(weights + ": tensor '" + info.name + "' has dtype " +
                             std::string(DTypeName(info.dtype)) + "; LoRA factors are floats");
    }
    if (!parts.count(module)) order.push_back(module);
    Parts& p = parts[module];
    const TensorInfo** slot = part == 0 || part == 3 ? &p.a : part == 1 || part == 4 ? &p.b : &p.bias;
    if (*slot != nullptr) {
      return Status::Corrupt(weights + ": module '" + module + "' has two " +
                             std::string(kSuffixes[part].text.substr(1)) + " tensors");
    }
    *slot = &info;
    p.embedding = p.embedding || part >= 3;
  }

  ALLOY_ASSIGN_OR_RETURN(const Patterns rank_pattern,
                         Patterns::Compile(ordered, "rank_pattern", config_path));
  ALLOY_ASSIGN_OR_RETURN(const Patterns alpha_pattern,
                         Patterns::Compile(ordered, "alpha_pattern", config_path));
  for (const std::string& module : order) {
    const Parts& p = parts[module];
    const std::string where = weights + ": module '" + module + "'";
    if (p.a == nullptr || p.b == nullptr) {
      return Status::Corrupt(where + " has " +
                             (p.a   ? "lora_A without lora_B"
                              : p.b ? "lora_B without lora_A"
                                    : "lora_B.bias without lora_A and lora_B"));
    }
    if (p.a->shape.size() != 2 || p.b->shape.size() != 2 || p.a->shape[0] != p.b->shape[1]) {
      return Status::Corrupt(where + ": lora_A " + ShapeOf(p.a) + " and lora_B " + ShapeOf(p.b) +
                             " are not [r, in] and [out, r] of one rank r");
    }
    LoraDelta d;
    d.module = module;
    d.rank = p.a->shape[0];
    const std::optional<double> r = rank_pattern.Find(module);
    const int64_t want_rank = r ? static_cast<int64_t>(*r) : adapter->default_rank_;
    if (d.rank != want_rank) {
      return Status::Corrupt(where + ": lora_A has rank " + std::to_string(d.rank) +
                             " but adapter_config.json says r = " + std::to_string(want_rank));
    }
    const std::optional<double> alpha = alpha_pattern.Find(module);
    d.alpha = alpha ? *alpha : adapter->default_alpha_;
    const double denom = adapter->use_rslora_ ? std::sqrt(static_cast<double>(d.rank))
                                               : static_cast<double>(d.rank);
    d.scale = d.alpha / denom;
    d.kind = p.embedding || fan_in_fan_out ? LoraKind::kTransposed : LoraKind::kLinear;
    d.base_name = module + ".weight";
    d.a = p.a;
    d.b = p.b;
    d.embedding = p.embedding;
    adapter->deltas_.push_back(d);
    if (p.bias != nullptr) {
      if (p.bias->shape.size() != 1 || p.bias->shape[0] != p.b->shape[0]) {
        return Status::Corrupt(where + ": lora_B.bias " + ShapeOf(p.bias) +
                               " does not match lora_B's " + std::to_string(p.b->shape[0]) +
                               " outputs");
      }
      LoraDelta bias = d;
      bias.kind = LoraKind::kBias;
      bias.base_name = module + ".bias";
      bias.a = nullptr;
      bias.b = p.bias;
      adapter->deltas_.push_back(bias);
    }
  }
  if (adapter->deltas_.empty() && adapter->replacements_.empty()) {
    return Status::Corrupt(weights + ": the adapter holds no LoRA factors and no saved modules");
  }
  return adapter;
}

std::string LoraFactorKey(std::string_view module, bool is_a, bool embedding) {
  std::string key = std::string(kPrefix) + std::string(module);
  if (embedding) return key + (is_a ? ".lora_embedding_A" : ".lora_embedding_B");
  return key + (is_a ? ".lora_A.weight" : ".lora_B.weight");
}

std::string LoraBiasKey(std::string_view module) {
  return std::string(kPrefix) + std::string(module) + ".lora_B.bias";
}

std::string LoraSavedKey(std::string_view tensor) {
  return std::string(kPrefix) + std::string(tensor);
}

std::string LoraAdapterConfigJson(const LoraAdapterConfig& c) {
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] =
      c.base_model.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(c.base_model);
  j["r"] = c.r;
  j["lora_alpha"] = c.r;
  j["use_rslora"] = false;
  j["rank_pattern"] = nlohmann::ordered_json::object();
  j["alpha_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [module, rank] : c.rank_pattern) {
    j["rank_pattern"][module] = rank;
    j["alpha_pattern"][module] = rank;
  }
  j["target_modules"] = c.target_modules;
  j["modules_to_save"] =
      c.modules_to_save.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(c.modules_to_save);
  j["fan_in_fan_out"] = c.fan_in_fan_out;
  j["lora_bias"] = c.lora_bias;
  j["bias"] = "none";
  j["lora_dropout"] = 0.0;
  j["use_dora"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  return j.dump(2) + "\n";
}

}  // namespace alloy::formats
