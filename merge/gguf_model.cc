#include "merge/gguf_model.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <unordered_map>
#include <utility>

#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/model_dir.h"
#include "kernels/quant.h"
#include "merge/fp8_model.h"
#include "merge/relisted_source.h"
#include "merge/scratch.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::GgmlType;
using formats::GgufHeader;
using formats::GgufKv;
using formats::GgufSource;
using formats::GgufTensor;
using formats::GgufValue;
using formats::Result;
using formats::Status;
using formats::TensorInfo;
using formats::TensorSource;

// Views of tensors that are computed, not stored (dequantized or permuted):
// materialized on View(), freed on a Release() of the whole tensor. The
// engine streams through Read(); View() serves the few callers that want a
// whole tensor at once.
class Materialized {
 public:
  Result<std::span<const uint8_t>> View(const TensorSource& src, const TensorInfo& info) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buffers_.find(info.name);
    if (it == buffers_.end()) {
      std::vector<uint8_t> bytes(static_cast<size_t>(info.nbytes));
      ALLOY_RETURN_IF_ERROR(src.Read(info, 0, bytes));
      it = buffers_.emplace(info.name, std::move(bytes)).first;
    }
    return std::span<const uint8_t>(it->second);
  }
  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) {
    if (offset != 0 || len < info.nbytes) return;
    std::lock_guard<std::mutex> lock(mu_);
    buffers_.erase(info.name);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<uint8_t>> buffers_;
};

std::optional<kernels::QuantKind> QuantKindOf(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ4_0: return kernels::QuantKind::kQ4_0;
    case GgmlType::kQ4_1: return kernels::QuantKind::kQ4_1;
    case GgmlType::kQ5_0: return kernels::QuantKind::kQ5_0;
    case GgmlType::kQ5_1: return kernels::QuantKind::kQ5_1;
    case GgmlType::kQ8_0: return kernels::QuantKind::kQ8_0;
    case GgmlType::kQ4_K: return kernels::QuantKind::kQ4_K;
    case GgmlType::kQ5_K: return kernels::QuantKind::kQ5_K;
    case GgmlType::kQ6_K: return kernels::QuantKind::kQ6_K;
    default: return std::nullopt;
  }
}

struct DequantBuffers {
  std::vector<uint8_t> raw;
  std::vector<float> values;
};
DequantBuffers& ThreadDequantBuffers() {
  thread_local DequantBuffers buffers;
  return buffers;
}

// A GGUF source whose block-quantized tensors read as float32.
class DequantizingSource final : public TensorSource {
 public:
  explicit DequantizingSource(std::unique_ptr<GgufSource> inner) : inner_(std::move(inner)) {}

  const GgufSource& gguf() const { return *inner_; }
  const std::string& name() const override { return inner_->name(); }
  const std::vector<TensorInfo>& tensors() const override { return inner_->tensors(); }
  const TensorInfo* Find(std::string_view name) const override { return inner_->Find(name); }
  const std::map<std::string, std::string>& metadata() const override {
    return inner_->metadata();
  }
  const std::vector<std::string>& files() const override { return inner_->files(); }

  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    if (!inner_->quantized(info)) return inner_->View(info);
    return views_.View(*this, info);
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    if (!inner_->quantized(info)) return inner_->Read(info, offset, out);
    uint64_t end = 0;
    if (!formats::CheckedAdd(offset, out.size(), &end) || end > info.nbytes) {
      return Status::InvalidArgument(name() + ": tensor '" + info.name + "': read past its end");
    }
    if (out.empty()) return Status::OK();
    const uint32_t type = inner_->gguf_tensor(info).type;
    const std::optional<kernels::QuantKind> kind = QuantKindOf(type);
    if (!kind) {
      return Status::Unsupported(name() + ": tensor '" + info.name + "' is stored as " +
                                 formats::GgmlTypeName(type) +
                                 ", which alloy cannot dequantize (it reads F32, F16, BF16, Q8_0, "
                                 "Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K)");
    }
    const kernels::QuantLayout layout = kernels::LayoutOf(*kind);
    // Element range covering the byte range, then the blocks covering that.
    const uint64_t first_elem = offset / 4;
    const uint64_t last_elem = (end + 3) / 4;
    const uint64_t first_block = first_elem / layout.block_elems;
    const uint64_t last_block = (last_elem + layout.block_elems - 1) / layout.block_elems;
    const uint64_t n_blocks = last_block - first_block;
    DequantBuffers& buf = ThreadDequantBuffers();
    Grow(buf.raw, static_cast<size_t>(n_blocks * layout.block_bytes));
    Grow(buf.values, static_cast<size_t>(n_blocks * layout.block_elems));
    std::span<uint8_t> raw(buf.raw.data(), static_cast<size_t>(n_blocks * layout.block_bytes));
    ALLOY_RETURN_IF_ERROR(inner_->ReadRaw(info, first_block * layout.block_bytes, raw));
    std::span<float> values(buf.values.data(), static_cast<size_t>(n_blocks * layout.block_elems));
    kernels::Dequantize(*kind, raw, values);
    const uint64_t skip = offset - first_block * layout.block_elems * 4;
    std::memcpy(out.data(), reinterpret_cast<const uint8_t*>(values.data()) + skip, out.size());
    return Status::OK();
  }

  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    if (!inner_->quantized(info)) return inner_->Release(info, offset, len);
    views_.Release(info, offset, len);
    inner_->Release(info, 0, std::numeric_limits<uint64_t>::max());
  }

 private:
  std::unique_ptr<GgufSource> inner_;
  Materialized views_;
};

// ---- names ----

struct NamePair {
  std::string_view hf;    // after "model.layers.N." (per layer) or whole
  std::string_view gguf;  // after "blk.N." or whole
};
constexpr NamePair kLayerNames[] = {
    {"input_layernorm", "attn_norm"},        {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},          {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},     {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},     {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
constexpr NamePair kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// "<prefix><N>.<rest>" → (N, rest).
bool SplitIndexed(std::string_view name, std::string_view prefix, std::string* index,
                  std::string_view* rest) {
  if (name.substr(0, prefix.size()) != prefix) return false;
  size_t end = prefix.size();
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == prefix.size() || end - prefix.size() > 6 || end >= name.size() || name[end] != '.') {
    return false;
  }
  *index = std::string(name.substr(prefix.size(), end - prefix.size()));
  *rest = name.substr(end + 1);
  return true;
}

std::optional<std::string> MapName(std::string_view name, bool to_gguf) {
  for (const NamePair& p : kGlobalNames) {
    if (name == (to_gguf ? p.hf : p.gguf)) return std::string(to_gguf ? p.gguf : p.hf);
  }
  std::string index;
  std::string_view rest;
  if (!SplitIndexed(name, to_gguf ? "model.layers." : "blk.", &index, &rest)) return std::nullopt;
  const size_t dot = rest.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view module = rest.substr(0, dot);
  const std::string_view kind = rest.substr(dot);  // ".weight" / ".bias"
  if (kind != ".weight" && kind != ".bias") return std::nullopt;
  for (const NamePair& p : kLayerNames) {
    if (module == (to_gguf ? p.hf : p.gguf)) {
      return (to_gguf ? "blk." : "model.layers.") + index + "." +
             std::string(to_gguf ? p.gguf : p.hf) + std::string(kind);
    }
  }
  return std::nullopt;
}

// ---- the renaming / permuting source ----

struct Mapped {
  const TensorInfo* inner = nullptr;
  int64_t heads = 0;   // > 0: rows are permuted in groups of heads (Q/K)
  bool to_gguf = true; // direction of the permutation
};

// Row `r` of the output reads row RowSource(r) of the input: for HF → GGUF,
// output (h, i, p) ← input (h, p, i); for GGUF → HF the inverse (§4.5).
uint64_t RowSource(uint64_t r, uint64_t head_dim, bool to_gguf) {
  const uint64_t h = r / head_dim, j = r % head_dim, half = head_dim / 2;
  if (to_gguf) {  // j = 2i + p
    return h * head_dim + (j % 2) * half + j / 2;
  }
  // j = p·half + i
  return h * head_dim + 2 * (j % half) + j / half;
}

class MappedSource final : public RelistedSource {
 public:
  MappedSource(std::unique_ptr<TensorSource> inner, std::vector<TensorInfo> infos,
               std::vector<Mapped> mapped)
      : RelistedSource(std::move(inner), std::move(infos)), mapped_(std::move(mapped)) {}

  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    const Mapped& m = Lookup(info);
    if (m.heads == 0) return inner_->View(*m.inner);
    return views_.View(*this, info);
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    const Mapped& m = Lookup(info);
    if (m.heads == 0) return inner_->Read(*m.inner, offset, out);
    uint64_t end = 0;
    if (!formats::CheckedAdd(offset, out.size(), &end) || end > info.nbytes) {
      return Status::InvalidArgument(name() + ": tensor '" + info.name + "': read past its end");
    }
    const uint64_t rows = static_cast<uint64_t>(info.shape[0]);
    const uint64_t row_bytes = info.nbytes / rows;
    const uint64_t head_dim = rows / static_cast<uint64_t>(m.heads);
    uint64_t done = 0;
    while (done < out.size()) {
      const uint64_t pos = offset + done;
      const uint64_t row = pos / row_bytes, within = pos % row_bytes;
      const uint64_t n = std::min<uint64_t>(row_bytes - within, out.size() - done);
      const uint64_t from = RowSource(row, head_dim, m.to_gguf) * row_bytes + within;
      ALLOY_RETURN_IF_ERROR(inner_->Read(*m.inner, from, out.subspan(done, n)));
      done += n;
    }
    return Status::OK();
  }

  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    const Mapped& m = Lookup(info);
    if (m.heads == 0) return inner_->Release(*m.inner, offset, len);
    views_.Release(info, offset, len);
    inner_->Release(*m.inner);
  }

 private:
  const Mapped& Lookup(const TensorInfo& info) const { return mapped_[IndexOf(info)]; }

  std::vector<Mapped> mapped_;
  Materialized views_;
};

int64_t JsonInt(const nlohmann::json& config, const char* key, int64_t fallback) {
  auto it = config.find(key);
  return it != config.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

// Checks that Q/K rows split evenly into heads of even size.
Status CheckHeads(const TensorInfo& t, int64_t heads) {
  if (heads <= 0 || t.shape.empty() || t.shape[0] % heads != 0 || (t.shape[0] / heads) % 2 != 0) {
    return Status::InvalidArgument("tensor '" + t.name + "' with " +
                                   std::to_string(t.shape.empty() ? 0 : t.shape[0]) +
                                   " rows cannot be split into " + std::to_string(heads) +
                                   " rotary heads of even size (check the head counts)");
  }
  return Status::OK();
}

// Builds the mapped source: `name_for` renames, `heads_for` gives the rotary
// head count of a renamed Q/K tensor (0 = no permutation).
Result<std::unique_ptr<TensorSource>> MapSource(
    std::unique_ptr<TensorSource> inner, bool to_gguf,
    const std::function<Result<std::optional<std::string>>(const std::string&)>& name_for,
    const std::function<int64_t(const std::string&)>& heads_for) {
  std::vector<TensorInfo> infos;
  std::vector<Mapped> mapped;
  for (const TensorInfo& t : inner->tensors()) {
    ALLOY_ASSIGN_OR_RETURN(std::optional<std::string> renamed, name_for(t.name));
    if (!renamed) continue;  // dropped
    TensorInfo out = t;
    out.name = *renamed;
    Mapped m{&t, heads_for(*renamed), to_gguf};
    if (m.heads > 0) ALLOY_RETURN_IF_ERROR(CheckHeads(out, m.heads).WithContext(inner->name()));
    infos.push_back(std::move(out));
    mapped.push_back(m);
  }
  return std::unique_ptr<TensorSource>(
      new MappedSource(std::move(inner), std::move(infos), std::move(mapped)));
}

bool IsRotaryName(const std::string& gguf_name, std::string_view which) {
  return gguf_name.find(std::string(".attn_") + std::string(which) + ".") != std::string::npos;
}

std::optional<int64_t> KvInt(const GgufHeader& h, const std::string& key) {
  const GgufValue* v = h.Find(key);
  return v ? v->AsInt() : std::nullopt;
}

std::string HfArchitectureFor(const std::string& gguf_arch) {
  if (gguf_arch == "llama") return "LlamaForCausalLM";
  if (gguf_arch == "qwen2") return "Qwen2ForCausalLM";
  if (gguf_arch == "qwen3") return "Qwen3ForCausalLM";
  if (gguf_arch == "gemma") return "GemmaForCausalLM";
  return "";
}

// ---- tokenizer metadata ----

std::string TokenText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

bool IsByteToken(const std::string& t) {
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>';
}

Status AddTokenizerKvs(std::vector<GgufKv>& kvs, const std::string& dir, int64_t vocab_rows,
                       std::vector<std::string>* warnings) {
  const std::string tok_path = dir + "/tokenizer.json";
  if (!formats::IsRegularFile(tok_path)) {
    kvs.push_back({"tokenizer.ggml.model", GgufValue::String("none")});
    if (warnings) {
      warnings->push_back(dir + " has no tokenizer.json: the GGUF file has no vocabulary "
                                "(tokenizer.ggml.model = none)");
    }
    return Status::OK();
  }
  ALLOY_ASSIGN_OR_RETURN(std::string text, formats::ReadSmallFile(tok_path));
  ALLOY_ASSIGN_OR_RETURN(nlohmann::json tok, formats::ParseStrictJson(text, tok_path));
  const nlohmann::json& model = tok.contains("model") ? tok["model"] : nlohmann::json();
  const std::string type = model.is_object() && model.contains("type") && model["type"].is_string()
                               ? model["type"].get<std::string>()
                               : "";
  std::vector<std::string> tokens;
  std::vector<float> scores;
  auto put = [&](int64_t id, const std::string& piece) -> Status {
    if (id < 0 || id > (int64_t{1} << 24)) {
      return Status::Corrupt(tok_path + ": token id " + std::to_string(id) + " out of range");
    }
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
    tokens[static_cast<size_t>(id)] = piece;
    return Status::OK();
  };
  std::string ggml_model;
  std::vector<std::string> merges;
  if (type == "BPE" || type == "WordLevel") {
    if (!model.contains("vocab") || !model["vocab"].is_object()) {
      return Status::Corrupt(tok_path + ": model.vocab is not an object");
    }
    for (const auto& [piece, id] : model["vocab"].items()) {
      if (!id.is_number_integer()) return Status::Corrupt(tok_path + ": vocab id of '" + piece + "'");
      ALLOY_RETURN_IF_ERROR(put(id.get<int64_t>(), piece));
    }
    const bool byte_fallback = model.value("byte_fallback", false);
    ggml_model = type == "BPE" && byte_fallback ? "llama" : "gpt2";
    if (type == "BPE" && model.contains("merges") && model["merges"].is_array()) {
      for (const nlohmann::json& m : model["merges"]) {
        if (m.is_string()) merges.push_back(m.get<std::string>());
        else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        }
      }
    }
    if (type == "WordLevel" && warnings) {
      warnings->push_back(tok_path + ": a WordLevel vocabulary is written as a BPE (gpt2) "
                                     "vocabulary without merges; llama.cpp will tokenize text "
                                     "differently from the original tokenizer");
    }
  } else if (type == "Unigram") {
    if (!model.contains("vocab") || !model["vocab"].is_array()) {
      return Status::Corrupt(tok_path + ": model.vocab is not an array");
    }
    ggml_model = "llama";
    int64_t id = 0;
    for (const nlohmann::json& entry : model["vocab"]) {
      if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_number()) {
        return Status::Corrupt(tok_path + ": Unigram vocab entry " + std::to_string(id));
      }
      ALLOY_RETURN_IF_ERROR(put(id, entry[0].get<std::string>()));
      scores.resize(tokens.size(), 0.0f);
      scores[static_cast<size_t>(id)] = entry[1].get<float>();
      ++id;
    }
  } else {
    return Status::Unsupported(tok_path + ": tokenizer model type '" + type +
                               "' cannot be written to GGUF (alloy writes BPE, WordLevel and "
                               "Unigram vocabularies)");
  }
  std::vector<int32_t> types(tokens.size(), kNormal);
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const nlohmann::json& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer()) continue;
      ALLOY_RETURN_IF_ERROR(put(a["id"].get<int64_t>(), TokenText(a)));
      types.resize(tokens.size(), kNormal);
      types[a["id"].get<size_t>()] = a.value("special", false) ? kControl : kUserDefined;
    }
  }
  // Dense ids up to the embedding's row count; holes and padding are unused.
  if (vocab_rows > static_cast<int64_t>(tokens.size())) tokens.resize(static_cast<size_t>(vocab_rows));
  types.resize(tokens.size(), kNormal);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) {
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      types[i] = kUnused;
    } else if (ggml_model == "llama" && IsByteToken(tokens[i]) && types[i] == kNormal) {
      types[i] = kByte;
    }
  }
  if (ggml_model == "llama" && scores.empty()) {
    scores.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) scores[i] = -static_cast<float>(i);
  }
  scores.resize(ggml_model == "llama" ? tokens.size() : 0, 0.0f);

  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < tokens.size(); ++i) ids.emplace(tokens[i], static_cast<int32_t>(i));
  kvs.push_back({"tokenizer.ggml.model", GgufValue::String(ggml_model)});
  if (ggml_model == "gpt2") kvs.push_back({"tokenizer.ggml.pre", GgufValue::String("default")});
  kvs.push_back({"tokenizer.ggml.tokens", GgufValue::StringArray(std::move(tokens))});
  if (!scores.empty()) kvs.push_back({"tokenizer.ggml.scores", GgufValue::Float32Array(scores)});
  kvs.push_back({"tokenizer.ggml.token_type", GgufValue::Int32Array(types)});
  if (ggml_model == "gpt2") kvs.push_back({"tokenizer.ggml.merges", GgufValue::StringArray(merges)});

  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (formats::IsRegularFile(cfg_path)) {
    ALLOY_ASSIGN_OR_RETURN(std::string cfg_text, formats::ReadSmallFile(cfg_path));
    ALLOY_ASSIGN_OR_RETURN(nlohmann::json cfg, formats::ParseStrictJson(cfg_text, cfg_path));
    for (const auto& [field, key] : std::initializer_list<std::pair<const char*, const char*>>{
             {"bos_token", "tokenizer.ggml.bos_token_id"},
             {"eos_token", "tokenizer.ggml.eos_token_id"},
             {"unk_token", "tokenizer.ggml.unknown_token_id"},
             {"pad_token", "tokenizer.ggml.padding_token_id"}}) {
      if (!cfg.contains(field)) continue;
      auto it = ids.find(TokenText(cfg[field]));
      if (it != ids.end()) kvs.push_back({key, GgufValue::Uint32(static_cast<uint32_t>(it->second))});
    }
    for (const auto& [field, key] : std::initializer_list<std::pair<const char*, const char*>>{
             {"add_bos_token", "tokenizer.ggml.add_bos_token"},
             {"add_eos_token", "tokenizer.ggml.add_eos_token"}}) {
      if (cfg.contains(field) && cfg[field].is_boolean()) {
        kvs.push_back({key, GgufValue::Bool(cfg[field].get<bool>())});
      }
    }
    if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) {
      kvs.push_back({"tokenizer.chat_template", GgufValue::String(cfg["chat_template"])});
    }
  }
  return Status::OK();
}

// ---- the sink ----

struct QuantBuffers {
  std::vector<uint8_t> blocks;
};
QuantBuffers& ThreadQuantBuffers() {
  thread_local QuantBuffers buffers;
  return buffers;
}

uint32_t FileTypeFor(const std::vector<GgufTensor>& tensors) {
  // LlamaFileType of the type holding the most 2-D tensors.
  std::map<uint32_t, size_t> counts;
  for (const GgufTensor& t : tensors) {
    if (t.ne.size() >= 2) ++counts[t.type];
  }
  uint32_t best = 0;
  size_t n = 0;
  for (const auto& [type, c] : counts) {
    if (c > n) best = type, n = c;
  }
  switch (static_cast<GgmlType>(best)) {
    case GgmlType::kF16: return 1;
    case GgmlType::kQ4_0: return 2;
    case GgmlType::kQ8_0: return 7;
    case GgmlType::kBF16: return 32;
    default: return 0;
  }
}

class GgufSink final : public formats::TensorSink {
 public:
  GgufSink(std::string path, GgufSinkOptions options)
      : writer_(std::move(path), options.fsync), options_(std::move(options)) {}
  ~GgufSink() override { Abort(); }

  Status Begin(const std::vector<TensorInfo>& tensors,
               const std::map<std::string, std::string>&) override {
    std::vector<GgufTensor> out;
    declared_ = tensors;
    for (const TensorInfo& t : tensors) {
      const std::optional<GgmlType> own = formats::GgmlTypeOfDType(t.dtype);
      GgmlType type = options_.type_for ? options_.type_for(t) : own.value_or(GgmlType::kF32);
      const bool quant = type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0;
      if (!(own && type == *own) && !(quant && t.dtype == DType::kF32)) {
        return Status::InvalidArgument(writer_.path() + ": tensor '" + t.name + "' (" +
                                       std::string(formats::DTypeName(t.dtype)) +
                                       ") cannot be stored as " +
                                       formats::GgmlTypeName(static_cast<uint32_t>(type)) +
                                       " in GGUF");
      }
      GgufTensor g;
      g.name = t.name;
      g.ne.assign(t.shape.rbegin(), t.shape.rend());
      g.type = static_cast<uint32_t>(type);
      out.push_back(std::move(g));
    }
    std::vector<GgufKv> kvs = options_.kvs;
    SetGgufKv(kvs, "general.file_type", GgufValue::Uint32(FileTypeFor(out)));
    if (std::any_of(out.begin(), out.end(),
                    [](const GgufTensor& g) { return !formats::GgmlPlainDType(g.type); })) {
      SetGgufKv(kvs, "general.quantization_version", GgufValue::Uint32(2));
    }
    return writer_.Begin(kvs, std::move(out));
  }

  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) override {
    if (index >= declared_.size()) return writer_.WriteAt(index, offset, bytes);
    const uint32_t type = writer_.tensors()[index].type;
    if (formats::GgmlPlainDType(type)) return writer_.WriteAt(index, offset, bytes);
    // float32 in, blocks of 32 out.
    constexpr uint64_t kBlockIn = 32 * 4;
    const uint64_t block_out = formats::GgmlTypeTraitsOf(type).block_bytes;
    const uint64_t end = offset + bytes.size();
    // Partial blocks at either end wait in `pending_` until complete.
    uint64_t a = (offset + kBlockIn - 1) / kBlockIn * kBlockIn;
    uint64_t b = end / kBlockIn * kBlockIn;
    if (end == declared_[index].nbytes) b = end;  // the tensor's end is a block end
    if (a > b) a = b = offset;                    // all inside one block
    if (offset < a) ALLOY_RETURN_IF_ERROR(Pending(index, offset, bytes.first(a - offset)));
    if (b < end) ALLOY_RETURN_IF_ERROR(Pending(index, b, bytes.subspan(b - offset)));
    if (a < b) {
      ALLOY_RETURN_IF_ERROR(Quantize(index, a, bytes.subspan(a - offset, b - a), block_out));
    }
    return Status::OK();
  }

  Status Finish() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pending_.empty()) {
        return Status::InvalidArgument(writer_.path() + ": tensor '" +
                                       declared_[pending_.begin()->first.first].name +
                                       "': a quantization block was only partly written");
      }
    }
    return writer_.Finish();
  }
  void Abort() override { writer_.Abort(); }

 private:
  Status Quantize(size_t index, uint64_t offset, std::span<const uint8_t> f32, uint64_t block_out) {
    const size_t n = f32.size() / 4;
    QuantBuffers& buf = ThreadQuantBuffers();
    Grow(buf.blocks, static_cast<size_t>(n / 32 * block_out));
    std::span<uint8_t> out(buf.blocks.data(), static_cast<size_t>(n / 32 * block_out));
    // The bytes may not be float-aligned: copy through an aligned buffer.
    thread_local std::vector<float> values;
    Grow(values, n);
    std::memcpy(values.data(), f32.data(), n * 4);
    std::span<const float> in(values.data(), n);
    if (writer_.tensors()[index].type == static_cast<uint32_t>(GgmlType::kQ8_0)) {
      kernels::QuantizeQ8_0(in, out);
    } else {
      kernels::QuantizeQ4_0(in, out);
    }
    return writer_.WriteAt(index, offset / 128 * block_out, out);
  }

  Status Pending(size_t index, uint64_t offset, std::span<const uint8_t> bytes) {
    const uint64_t block = offset / 128;
    std::vector<uint8_t> full;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Partial& p = pending_[{index, block}];
      p.bytes.resize(128);
      std::memcpy(p.bytes.data() + (offset - block * 128), bytes.data(), bytes.size());
      p.filled += bytes.size();
      if (p.filled < 128) return Status::OK();
      full = std::move(p.bytes);
      pending_.erase({index, block});
    }
    return Quantize(index, block * 128, full,
                    formats::GgmlTypeTraitsOf(writer_.tensors()[index].type).block_bytes);
  }

  struct Partial {
    std::vector<uint8_t> bytes;
    uint64_t filled = 0;
  };
  formats::GgufWriter writer_;
  GgufSinkOptions options_;
  std::vector<TensorInfo> declared_;
  std::mutex mu_;
  std::map<std::pair<size_t, uint64_t>, Partial> pending_;
};

}  // namespace

Result<std::unique_ptr<TensorSource>> OpenCheckpoint(const std::string& path,
                                                     formats::FileAccess access,
                                                     std::vector<std::string>* warnings,
                                                     formats::SymlinkPolicy symlinks) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<TensorSource> src,
                         formats::OpenModel(path, access, warnings, symlinks));
  auto* gguf = dynamic_cast<GgufSource*>(src.get());
  if (gguf == nullptr) return OpenFp8Aware(std::move(src), path, symlinks);  // merge/fp8_model.h
  src.release();
  return std::unique_ptr<TensorSource>(
      new DequantizingSource(std::unique_ptr<GgufSource>(gguf)));
}

const GgufHeader* GgufHeaderOf(const TensorSource& source) {
  if (const auto* d = dynamic_cast<const DequantizingSource*>(&source)) return &d->gguf().header();
  if (const auto* g = dynamic_cast<const GgufSource*>(&source)) return &g->header();
  if (const auto* m = dynamic_cast<const MappedSource*>(&source)) return GgufHeaderOf(m->inner());
  return nullptr;
}

nlohmann::json ConfigFromGguf(const GgufHeader& h, const TensorSource& source) {
  const std::string arch = h.Architecture();
  nlohmann::json c = nlohmann::json::object();
  const std::string hf = HfArchitectureFor(arch);
  c["architectures"] = nlohmann::json::array({hf.empty() ? "gguf:" + arch : hf});
  c["model_type"] = arch;
  auto set_int = [&](const char* field, const std::string& key) {
    if (std::optional<int64_t> v = KvInt(h, arch + "." + key)) c[field] = *v;
  };
  set_int("num_hidden_layers", "block_count");
  set_int("hidden_size", "embedding_length");
  set_int("intermediate_size", "feed_forward_length");
  set_int("num_attention_heads", "attention.head_count");
  set_int("num_key_value_heads", "attention.head_count_kv");
  set_int("max_position_embeddings", "context_length");
  if (!c.contains("num_key_value_heads") && c.contains("num_attention_heads")) {
    c["num_key_value_heads"] = c["num_attention_heads"];
  }
  if (const GgufValue* v = h.Find(arch + ".attention.layer_norm_rms_epsilon")) {
    if (std::optional<double> x = v->AsFloat()) c["rms_norm_eps"] = *x;
  }
  if (const GgufValue* v = h.Find(arch + ".rope.freq_base")) {
    if (std::optional<double> x = v->AsFloat()) c["rope_theta"] = *x;
  }
  if (const TensorInfo* embd = source.Find("token_embd.weight")) {
    if (embd->shape.size() == 2) c["vocab_size"] = embd->shape[0];
  }
  c["tie_word_embeddings"] = source.Find("output.weight") == nullptr;
  if (h.Find("tokenizer.ggml.bos_token_id")) {
    c["bos_token_id"] = *h.Find("tokenizer.ggml.bos_token_id")->AsInt();
  }
  if (h.Find("tokenizer.ggml.eos_token_id")) {
    c["eos_token_id"] = *h.Find("tokenizer.ggml.eos_token_id")->AsInt();
  }
  return c;
}

std::optional<std::string> GgufNameForHf(std::string_view hf_name) { return MapName(hf_name, true); }
std::optional<std::string> HfNameForGguf(std::string_view gguf_name) {
  return MapName(gguf_name, false);
}

Result<std::string> GgufArchitectureFor(const nlohmann::json& config) {
  std::string arch;
  if (config.contains("architectures") && config["architectures"].is_array() &&
      !config["architectures"].empty() && config["architectures"][0].is_string()) {
    arch = config["architectures"][0].get<std::string>();
  }
  if (arch == "LlamaForCausalLM" || arch == "MistralForCausalLM") return std::string("llama");
  if (arch == "Qwen2ForCausalLM") return std::string("qwen2");
  return Status::Unsupported("architecture '" + arch +
                             "' has no GGUF mapping in alloy (it converts LlamaForCausalLM, "
                             "MistralForCausalLM and Qwen2ForCausalLM)");
}

Result<std::unique_ptr<TensorSource>> GgufAsHf(std::unique_ptr<TensorSource> gguf) {
  const GgufHeader* h = GgufHeaderOf(*gguf);
  if (h == nullptr) return Status::InvalidArgument(gguf->name() + " is not a GGUF file");
  const std::string arch = h->Architecture();
  if (HfArchitectureFor(arch).empty() || arch == "gemma") {
    return Status::Unsupported(gguf->name() + ": GGUF architecture '" + arch +
                               "' cannot be converted to Hugging Face layout (alloy converts "
                               "llama and qwen2)");
  }
  const int64_t heads = KvInt(*h, arch + ".attention.head_count").value_or(0);
  const int64_t kv_heads = KvInt(*h, arch + ".attention.head_count_kv").value_or(heads);
  const bool permute = arch == "llama";
  const std::string file = gguf->name();
  return MapSource(
      std::move(gguf), false,
      [&](const std::string& name) -> Result<std::optional<std::string>> {
        if (name == "rope_freqs.weight") return std::optional<std::string>();
        std::optional<std::string> hf = HfNameForGguf(name);
        if (!hf) {
          return Status::Unsupported(file + ": GGUF tensor '" + name +
                                     "' has no Hugging Face name in alloy's llama mapping");
        }
        return hf;
      },
      [&](const std::string& hf_name) -> int64_t {
        if (!permute) return 0;
        if (hf_name.find(".q_proj.") != std::string::npos) return heads;
        if (hf_name.find(".k_proj.") != std::string::npos) return kv_heads;
        return 0;
      });
}

Result<std::unique_ptr<TensorSource>> HfAsGguf(std::unique_ptr<TensorSource> hf,
                                               const nlohmann::json& config) {
  ALLOY_ASSIGN_OR_RETURN(const std::string arch, GgufArchitectureFor(config));
  const int64_t heads = JsonInt(config, "num_attention_heads", 0);
  const int64_t kv_heads = JsonInt(config, "num_key_value_heads", heads);
  const bool permute = arch == "llama";
  const std::string file = hf->name();
  return MapSource(
      std::move(hf), true,
      [&](const std::string& name) -> Result<std::optional<std::string>> {
        if (name.find("rotary_emb.inv_freq") != std::string::npos) {
          return std::optional<std::string>();
        }
        std::optional<std::string> g = GgufNameForHf(name);
        if (!g) {
          return Status::Unsupported(file + ": tensor '" + name +
                                     "' has no GGUF name in alloy's " + arch + " mapping");
        }
        return g;
      },
      [&](const std::string& gguf_name) -> int64_t {
        if (!permute) return 0;
        if (IsRotaryName(gguf_name, "q")) return heads;
        if (IsRotaryName(gguf_name, "k")) return kv_heads;
        return 0;
      });
}

void SetGgufKv(std::vector<GgufKv>& kvs, const std::string& key, GgufValue value) {
  for (GgufKv& kv : kvs) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kvs.push_back({key, std::move(value)});
}

Result<std::vector<GgufKv>> GgufMetadataForHf(const nlohmann::json& config,
                                              const std::string& model_dir,
                                              const std::string& name,
                                              std::vector<std::string>* warnings) {
  ALLOY_ASSIGN_OR_RETURN(const std::string arch, GgufArchitectureFor(config));
  std::vector<GgufKv> kvs;
  kvs.push_back({"general.architecture", GgufValue::String(arch)});
  kvs.push_back({"general.name", GgufValue::String(name)});
  const int64_t hidden = JsonInt(config, "hidden_size", 0);
  const int64_t heads = JsonInt(config, "num_attention_heads", 0);
  auto put_u32 = [&](const std::string& key, int64_t v) {
    if (v > 0) kvs.push_back({arch + "." + key, GgufValue::Uint32(static_cast<uint32_t>(v))});
  };
  put_u32("block_count", JsonInt(config, "num_hidden_layers", 0));
  put_u32("context_length", JsonInt(config, "max_position_embeddings", 0));
  put_u32("embedding_length", hidden);
  put_u32("feed_forward_length", JsonInt(config, "intermediate_size", 0));
  put_u32("attention.head_count", heads);
  put_u32("attention.head_count_kv", JsonInt(config, "num_key_value_heads", heads));
  const int64_t head_dim = JsonInt(config, "head_dim", heads > 0 ? hidden / heads : 0);
  put_u32("rope.dimension_count", head_dim);
  put_u32("vocab_size", JsonInt(config, "vocab_size", 0));
  auto put_f32 = [&](const std::string& key, const char* field, double fallback) {
    double v = fallback;
    if (config.contains(field) && config[field].is_number()) v = config[field].get<double>();
    kvs.push_back({arch + "." + key, GgufValue::Float32(static_cast<float>(v))});
  };
  put_f32("rope.freq_base", "rope_theta", 10000.0);
  put_f32("attention.layer_norm_rms_epsilon", "rms_norm_eps", 1e-6);
  ALLOY_RETURN_IF_ERROR(
      AddTokenizerKvs(kvs, model_dir, JsonInt(config, "vocab_size", 0), warnings));
  return kvs;
}

std::unique_ptr<formats::TensorSink> MakeGgufSink(std::string path, GgufSinkOptions options) {
  return std::make_unique<GgufSink>(std::move(path), std::move(options));
}

GgmlType GgufOutputType(const TensorInfo& computed, uint32_t donor) {
  const GgmlType own = formats::GgmlTypeOfDType(computed.dtype).value_or(GgmlType::kF32);
  if (formats::GgmlPlainDType(donor)) return own;
  if (computed.dtype != DType::kF32 || computed.shape.size() < 2 ||
      computed.shape.back() % 32 != 0) {
    return own;
  }
  if (donor == static_cast<uint32_t>(GgmlType::kQ4_0)) return GgmlType::kQ4_0;
  return GgmlType::kQ8_0;
}

}  // namespace alloy::merge
