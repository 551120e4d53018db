#include "merge/model_info.h"

#include <algorithm>
#include <cstdio>
#include <regex>

namespace alloy::merge {
namespace {

std::optional<int64_t> IntFieldOf(const nlohmann::json& node,
                                  std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    auto it = node.find(key);
    if (it != node.end() && it->is_number_integer()) return it->get<int64_t>();
  }
  return std::nullopt;
}

// A config.json integer, looked up at the top level, then in text_config
// (multimodal configs keep the language model's shape there).
std::optional<int64_t> IntField(const nlohmann::json* config,
                                std::initializer_list<const char*> keys) {
  if (config == nullptr || !config->is_object()) return std::nullopt;
  if (auto v = IntFieldOf(*config, keys)) return v;
  auto text = config->find("text_config");
  if (text != config->end() && text->is_object()) return IntFieldOf(*text, keys);
  return std::nullopt;
}

std::string StringField(const nlohmann::json* config, const char* key) {
  if (config == nullptr || !config->is_object()) return "";
  auto it = config->find(key);
  if (it == config->end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array() && !it->empty() && (*it)[0].is_string()) return (*it)[0].get<std::string>();
  return "";
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool IsAttentionProjection(const std::string& name) {
  static const std::regex kPattern(R"((^|\.)(self_attn|attention|attn)\.(q_proj|k_proj|v_proj|o_proj|wq|wk|wv|wo)\.weight$|^blk\.\d+\.attn_(q|k|v|output)\.weight$)");
  return std::regex_search(name, kPattern);
}

bool IsEmbeddingOrHead(const std::string& name) {
  return name.find("embed") != std::string::npos || name.find("lm_head") != std::string::npos ||
         name.find("wte") != std::string::npos || name.find("wpe") != std::string::npos ||
         name.find("token_embd") != std::string::npos || name == "output.weight";  // GGUF
}

std::string Num(double x) {
  char buf[48];
  if (x >= 1e9) std::snprintf(buf, sizeof(buf), "%.3gB", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof(buf), "%.3gM", x / 1e6);
  else std::snprintf(buf, sizeof(buf), "%.0f", x);
  return buf;
}

}  // namespace

int64_t LayerIndexOf(const std::string& tensor_name) {
  static const std::regex kLayer(R"((^|\.)(layers|h|blocks|blk)\.(\d+)\.)");
  std::smatch m;
  if (!std::regex_search(tensor_name, m, kLayer)) return -1;
  const std::string digits = m[3].str();
  if (digits.size() > 9) return -1;
  return std::stoll(digits);
}

ModelSummary SummarizeModel(const formats::TensorSource& src, const nlohmann::json* config,
                            const std::string& path) {
  ModelSummary s;
  s.path = path;
  s.architecture = StringField(config, "architectures");
  s.model_type = StringField(config, "model_type");
  s.config_layers = IntField(config, {"num_hidden_layers", "n_layer", "num_layers"});
  s.hidden_size = IntField(config, {"hidden_size", "n_embd", "d_model"});
  s.intermediate_size = IntField(config, {"intermediate_size", "n_inner", "ffn_dim"});
  s.num_heads = IntField(config, {"num_attention_heads", "n_head"});
  s.num_kv_heads = IntField(config, {"num_key_value_heads"});
  s.vocab_size = IntField(config, {"vocab_size"});
  s.files = src.files();

  bool has_lm_head = false;
  for (const formats::TensorInfo& t : src.tensors()) {
    const uint64_t n = t.numel();
    ++s.n_tensors;
    s.n_params += n;
    s.n_bytes += t.nbytes;
    DTypeTotals& d = s.by_dtype[t.dtype];
    ++d.n_tensors;
    d.n_params += n;
    d.n_bytes += t.nbytes;
    s.detected_layers = std::max(s.detected_layers, LayerIndexOf(t.name) + 1);
    if (t.name == "lm_head.weight" || t.name == "output.weight" ||  // GGUF
        EndsWith(t.name, ".lm_head.weight")) has_lm_head = true;
    if (t.shape.size() == 2 && IsAttentionProjection(t.name)) {
      s.n_attention_params += n;
      s.attention_shapes.emplace_back(t.shape[0], t.shape[1]);
    }
    if (t.shape.size() == 2 && !IsEmbeddingOrHead(t.name)) s.n_linear_params += n;
  }
  s.tied_embeddings = !has_lm_head;
  if (config && config->is_object() && config->contains("tie_word_embeddings") &&
      (*config)["tie_word_embeddings"].is_boolean()) {
    s.tied_embeddings = (*config)["tie_word_embeddings"].get<bool>() || !has_lm_head;
  }
  return s;
}

std::vector<MemoryRow> EstimateMemory(const ModelSummary& s) {
  const double p = static_cast<double>(s.n_params);
  const std::string ps = Num(p);
  std::vector<MemoryRow> rows;
  struct Width {
    const char* name;
    double bytes;
  };
  for (const Width& w : {Width{"fp32", 4}, Width{"fp16", 2}, Width{"bf16", 2}, Width{"int8", 1},
                         Width{"int4", 0.5}}) {
    char f[96];
    std::snprintf(f, sizeof(f), "P × %g B = %s × %g B", w.bytes, ps.c_str(), w.bytes);
    rows.push_back({"inference weights", w.name, p * w.bytes, f});
  }
  rows.push_back({"full fine-tune, Adam", "mixed precision", p * 16,
                  "P × (2 weights + 2 grads + 4 fp32 master + 4 Adam m + 4 Adam v) = " + ps +
                      " × 16 B"});
  rows.push_back({"full fine-tune, Adam", "fp32", p * 16,
                  "P × (4 weights + 4 grads + 4 Adam m + 4 Adam v) = " + ps + " × 16 B"});

  const double linear = static_cast<double>(s.n_linear_params);
  for (int rank : {8, 16, 64}) {
    double adapter = 0;
    for (const auto& [out, in] : s.attention_shapes) adapter += static_cast<double>(rank) * static_cast<double>(out + in);
    const std::string as = Num(adapter);
    rows.push_back({"LoRA (q,k,v,o)", "rank " + std::to_string(rank), p * 2 + adapter * 16,
                    "P × 2 B (bf16 base) + A × 16 B; A = Σ r·(in+out) = " + as + "; " + ps +
                        " × 2 + " + as + " × 16"});
  }
  for (int rank : {8, 16, 64}) {
    double adapter = 0;
    for (const auto& [out, in] : s.attention_shapes) adapter += static_cast<double>(rank) * static_cast<double>(out + in);
    const double base = linear * (0.5 + 4.0 / 64.0) + (p - linear) * 2;
    rows.push_back({"QLoRA (4-bit base, q,k,v,o)", "rank " + std::to_string(rank),
                    base + adapter * 16,
                    "L × (0.5 + 4/64) B (NF4 + fp32 absmax per 64) + (P − L) × 2 B + A × 16 B; L = " +
                        Num(linear) + ", A = " + Num(adapter)});
  }
  return rows;
}

}  // namespace alloy::merge
