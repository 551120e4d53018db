#include "examples/tiny_models.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>

#include "formats/file_util.h"
#include "formats/safetensors_writer.h"
#include "kernels/convert.h"
#include "kernels/parallel.h"
#include "kernels/random.h"

namespace alloy::examples {
namespace {

using formats::DType;
using formats::Result;
using formats::Status;
using formats::TensorInfo;

// What differs between the families besides tensor names: config.json values
// as the real checkpoints have them, and the special tokens at ids 0, 1, ...
struct FamilyInfo {
  std::string_view name, architecture;
  double rope_theta, rms_norm_eps;
  int bos_id, eos_id, unk_id, pad_id;  // pad_id -1: none
  std::vector<std::string_view> specials;
};

const FamilyInfo& Info(Family family) {
  // name, architecture, rope_theta, rms_norm_eps, bos, eos, unk, pad, special tokens
  // clang-format off
  static const FamilyInfo kInfos[] = {
      {"llama", "LlamaForCausalLM", 500000.0, 1e-5, 1, 2, 0, -1,
       {"<unk>", "<|begin_of_text|>", "<|end_of_text|>"}},
      {"mistral", "MistralForCausalLM", 1000000.0, 1e-5, 1, 2, 0, -1, {"<unk>", "<s>", "</s>"}},
      {"qwen2", "Qwen2ForCausalLM", 1000000.0, 1e-6, 1, 1, 0, 1,
       {"<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
      {"gemma", "GemmaForCausalLM", 10000.0, 1e-6, 2, 1, 3, 0,
       {"<pad>", "<eos>", "<bos>", "<unk>"}},
  };
  // clang-format on
  return kInfos[static_cast<size_t>(family)];
}

int64_t HeadDim(const TinyModelSpec& s) {
  return s.head_dim > 0 ? s.head_dim : s.hidden_size / std::max<int64_t>(s.num_heads, 1);
}
bool Tied(const TinyModelSpec& s) { return s.tie_embeddings || s.family == Family::kGemma; }

Status ValidateSpec(const TinyModelSpec& s) {
  const int64_t dims[] = {s.hidden_size,
                          s.num_layers,
                          s.num_heads,
                          s.num_kv_heads,
                          s.intermediate_size,
                          s.vocab_size,
                          s.max_position_embeddings};
  if (*std::min_element(std::begin(dims), std::end(dims)) <= 0) {
    return Status::InvalidArgument("tiny model: every size must be positive");
  }
  if (s.num_heads % s.num_kv_heads != 0) {
    return Status::InvalidArgument("tiny model: num_heads " + std::to_string(s.num_heads) +
                                   " is not a multiple of num_kv_heads " +
                                   std::to_string(s.num_kv_heads));
  }
  if (s.head_dim <= 0 && s.hidden_size % s.num_heads != 0) {
    return Status::InvalidArgument("tiny model: hidden_size " + std::to_string(s.hidden_size) +
                                   " is not a multiple of num_heads; set head_dim");
  }
  if (s.vocab_size < 16) return Status::InvalidArgument("tiny model: vocab_size must be >= 16");
  if (s.dtype != DType::kBF16 && s.dtype != DType::kF16 && s.dtype != DType::kF32) {
    return Status::InvalidArgument("tiny model: dtype must be BF16, F16 or F32, got " +
                                   std::string(formats::DTypeName(s.dtype)));
  }
  return Status::OK();
}

// ---- deterministic noise ----

uint64_t Mix64(uint64_t x) {  // splitmix64's finalizer: a bijection with full avalanche
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t NoiseKey(uint64_t seed, std::string_view name, int model_index) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a of the tensor name
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  return Mix64(Mix64(seed) ^ Mix64(h + static_cast<uint64_t>(model_index)));
}

// Standard normal quantiles at (i + 0.5) / 4096: 16 KiB, stays in L1.
const std::array<float, 4096>& GaussTable() {
  static const std::array<float, 4096> table = [] {
    std::array<float, 4096> t{};
    for (size_t i = 0; i < t.size(); ++i) {
      const double p = (static_cast<double>(i) + 0.5) / static_cast<double>(t.size());
      double lo = -10.0, hi = 10.0;  // bisection on Phi(z) = erfc(-z / sqrt(2)) / 2
      for (int iter = 0; iter < 60; ++iter) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
      }
      t[i] = static_cast<float>(0.5 * (lo + hi));
    }
    return t;
  }();
  return table;
}

// out[i] += scale * z(first + i), z ~ N(0, 1) quantized to 4096 levels (tails
// at ±3.5). One 64-bit hash serves four elements (one 16-bit lane each, its top
// 12 bits index the quantile table): this keeps generation near disk speed.
void AddGauss(uint64_t key, uint64_t first, float scale, std::span<float> out) {
  const std::array<float, 4096>& table = GaussTable();
  auto hash = [key](uint64_t group) { return Mix64(key + group * 0x9e3779b97f4a7c15ULL); };
  uint64_t element = first;
  size_t i = 0;
  for (; i < out.size() && (element & 3) != 0; ++i, ++element) {  // unaligned head
    out[i] += scale * table[(hash(element >> 2) >> (16 * (element & 3) + 4)) & 0xfff];
  }
  for (; i + 4 <= out.size(); i += 4, element += 4) {
    const uint64_t h = hash(element >> 2);
    out[i] += scale * table[(h >> 4) & 0xfff];
    out[i + 1] += scale * table[(h >> 20) & 0xfff];
    out[i + 2] += scale * table[(h >> 36) & 0xfff];
    out[i + 3] += scale * table[(h >> 52) & 0xfff];
  }
  for (; i < out.size(); ++i, ++element) {  // tail
    out[i] += scale * table[(hash(element >> 2) >> (16 * (element & 3) + 4)) & 0xfff];
  }
}

// Per-tensor generator parameters, computed once per tensor.
struct TensorGen {
  float mean = 0.0f;  // 1 for norms
  float base_std = 0.0f;
  float ft_scale = 0.0f;  // 0 for the base
  uint64_t base_key = 0, ft_key = 0;

  TensorGen(const TinyModelSpec& s, std::string_view name)
      : mean(name.ends_with("norm.weight") ? 1.0f : 0.0f),
        base_std(static_cast<float>(s.base_std)),
        ft_scale(s.model_index > 0 ? static_cast<float>(s.finetune_scale) : 0.0f),
        base_key(NoiseKey(s.seed, name, 0)),
        ft_key(NoiseKey(s.seed, name, s.model_index)) {}

  // out[i] = value of element first + i.
  void Fill(uint64_t first, std::span<float> out) const {
    std::fill(out.begin(), out.end(), mean);
    AddGauss(base_key, first, base_std, out);
    if (ft_scale != 0.0f) AddGauss(ft_key, first, ft_scale, out);
  }
};

// ---- weights ----

constexpr size_t kChunkElems = size_t{1} << 18;  // one WriteAt: 512 KiB of bf16
constexpr size_t kBlockElems = 4096;             // f32 staging block, stays in L1

Status WriteTensorData(const TinyModelSpec& spec, const std::vector<TensorInfo>& tensors,
                       formats::TensorSink& sink) {
  struct Work {
    size_t tensor_idx;
    uint64_t begin, end;
  };
  std::vector<TensorGen> gens;
  std::vector<Work> work;
  for (size_t tensor_idx = 0; tensor_idx < tensors.size(); ++tensor_idx) {
    gens.emplace_back(spec, tensors[tensor_idx].name);
    const uint64_t n = tensors[tensor_idx].numel();
    for (uint64_t begin = 0; begin < n; begin += kChunkElems) {
      work.push_back({tensor_idx, begin, std::min<uint64_t>(n, begin + kChunkElems)});
    }
  }
  const size_t elem_bytes = static_cast<size_t>(formats::DTypeBits(spec.dtype) / 8);
  std::atomic<bool> failed{false};
  Status first_error;  // written by the one thread that flips `failed`
  kernels::ParallelForChunks(work.size(), 1, [&](size_t, size_t work_idx, size_t) {
    if (failed.load(std::memory_order_relaxed)) return;
    // Scratch lives as long as the worker thread and is reused for every
    // chunk of every model: fresh pages are expensive on small VMs (~19 us each).
    thread_local std::vector<float> out32(kChunkElems);
    thread_local std::vector<uint16_t> out16(kChunkElems);
    thread_local std::array<float, kBlockElems> block;
    const Work& w = work[work_idx];
    const size_t n = static_cast<size_t>(w.end - w.begin);
    kernels::EncodeStats stats;
    for (size_t done = 0; done < n; done += kBlockElems) {
      const size_t len = std::min(kBlockElems, n - done);
      if (spec.dtype == DType::kF32) {
        gens[w.tensor_idx].Fill(w.begin + done, std::span<float>(out32).subspan(done, len));
        continue;
      }
      const std::span<float> in(block.data(), len);
      gens[w.tensor_idx].Fill(w.begin + done, in);
      const std::span<uint16_t> out = std::span<uint16_t>(out16).subspan(done, len);
      if (spec.dtype == DType::kBF16) {
        kernels::EncodeBf16(in, out, &stats);
      } else {
        kernels::EncodeF16(in, out, kernels::Overflow::kToInf, &stats);
      }
    }
    const auto* bytes = spec.dtype == DType::kF32 ? reinterpret_cast<const uint8_t*>(out32.data())
                                                  : reinterpret_cast<const uint8_t*>(out16.data());
    Status st = sink.WriteAt(w.tensor_idx, w.begin * elem_bytes, {bytes, n * elem_bytes});
    if (!st.ok() && !failed.exchange(true)) first_error = std::move(st);
  });
  return first_error;
}

// ---- side files ----

std::string ConfigJson(const TinyModelSpec& s) {
  const FamilyInfo& f = Info(s.family);
  nlohmann::json j = {
      {"architectures", {f.architecture}},
      {"model_type", f.name},
      {"attention_dropout", 0.0},
      {"bos_token_id", f.bos_id},
      {"eos_token_id", f.eos_id},
      {"head_dim", HeadDim(s)},
      {"hidden_act", "silu"},
      {"hidden_size", s.hidden_size},
      {"initializer_range", s.base_std},
      {"intermediate_size", s.intermediate_size},
      {"max_position_embeddings", s.max_position_embeddings},
      {"num_attention_heads", s.num_heads},
      {"num_hidden_layers", s.num_layers},
      {"num_key_value_heads", s.num_kv_heads},
      {"rms_norm_eps", f.rms_norm_eps},
      {"rope_theta", f.rope_theta},
      {"tie_word_embeddings", Tied(s)},
      {"torch_dtype", formats::DTypeTorchName(s.dtype)},
      {"transformers_version", "4.46.0"},
      {"use_cache", true},
      {"vocab_size", s.vocab_size},
  };
  if (f.pad_id >= 0) j["pad_token_id"] = f.pad_id;
  switch (s.family) {
    case Family::kLlama:
      j.update({{"attention_bias", false}, {"mlp_bias", false}, {"pretraining_tp", 1}});
      j["rope_scaling"] = nullptr;
      if (s.llama3_rope_scaling) {
        j["rope_scaling"] = {{"factor", 32.0},
                             {"high_freq_factor", 4.0},
                             {"low_freq_factor", 1.0},
                             {"original_max_position_embeddings", 8192},
                             {"rope_type", "llama3"}};
      }
      break;
    case Family::kMistral:
      j["sliding_window"] = nullptr;
      break;
    case Family::kQwen2:
      j.update({{"max_window_layers", s.num_layers},
                {"sliding_window", s.max_position_embeddings},
                {"use_sliding_window", false}});
      break;
    case Family::kGemma:
      j.update({{"attention_bias", false},
                {"hidden_act", "gelu_pytorch_tanh"},
                {"hidden_activation", "gelu_pytorch_tanh"}});
      break;
  }
  return j.dump(2) + "\n";
}

nlohmann::ordered_json AddedToken(int id, std::string_view content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// A word-level tokenizer with exactly vocab_size entries: the special tokens,
// the printable ASCII characters, then "tok<id>" fillers, in id order.
std::string TokenizerJson(const TinyModelSpec& s) {
  const FamilyInfo& f = Info(s.family);
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  // The vocab is spliced in as text: ordered_json objects look keys up
  // linearly, which is quadratic for a 128k vocab.
  std::string vocab = "{";
  int64_t id = 0;
  auto add = [&](std::string_view token) {
    vocab += (id == 0 ? "\n      " : ",\n      ") + nlohmann::json(token).dump() + ": ";
    vocab += std::to_string(id++);
  };
  for (std::string_view special : f.specials) {
    added.push_back(AddedToken(static_cast<int>(id), special));
    add(special);
  }
  for (char c = '!'; c <= '~' && id < s.vocab_size; ++c) add(std::string(1, c));
  while (id < s.vocab_size) add("tok" + std::to_string(id));
  vocab += "\n    }";
  const nlohmann::ordered_json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Whitespace"}}},
      {"post_processor", nullptr},
      {"decoder", nullptr},
      {"model", {{"type", "WordLevel"}, {"vocab", "@VOCAB@"}, {"unk_token", f.specials[f.unk_id]}}},
  };
  std::string out = j.dump(2) + "\n";
  return out.replace(out.find("\"@VOCAB@\""), 9, vocab);
}

std::string TokenizerConfigJson(const TinyModelSpec& s) {
  const FamilyInfo& f = Info(s.family);
  nlohmann::json decoder = nlohmann::json::object();
  for (size_t id = 0; id < f.specials.size(); ++id) {
    nlohmann::ordered_json t = AddedToken(static_cast<int>(id), f.specials[id]);
    t.erase("id");
    decoder[std::to_string(id)] = t;
  }
  nlohmann::json j = {
      {"add_bos_token", s.family != Family::kQwen2},
      {"add_eos_token", false},
      {"added_tokens_decoder", decoder},
      {"bos_token",
       s.family == Family::kQwen2 ? nlohmann::json(nullptr) : nlohmann::json(f.specials[f.bos_id])},
      {"clean_up_tokenization_spaces", false},
      {"eos_token", f.specials[f.eos_id]},
      {"model_max_length", s.max_position_embeddings},
      {"pad_token", f.pad_id >= 0 ? nlohmann::json(f.specials[f.pad_id]) : nlohmann::json(nullptr)},
      {"tokenizer_class", "PreTrainedTokenizerFast"},
      {"unk_token", f.specials[f.unk_id]},
  };
  return j.dump(2) + "\n";
}

std::string GenerationConfigJson(const TinyModelSpec& s) {
  const FamilyInfo& f = Info(s.family);
  nlohmann::json j = {{"_from_model_config", true},
                      {"bos_token_id", f.bos_id},
                      {"eos_token_id", f.eos_id},
                      {"transformers_version", "4.46.0"}};
  if (f.pad_id >= 0) j["pad_token_id"] = f.pad_id;
  return j.dump(2) + "\n";
}

}  // namespace

std::string_view FamilyName(Family family) { return Info(family).name; }

std::optional<Family> ParseFamily(std::string_view name) {
  for (Family family : kAllFamilies) {
    if (FamilyName(family) == name) return family;
  }
  return std::nullopt;
}

std::optional<TinyModelSpec> TinyModelPreset(std::string_view name, Family family) {
  TinyModelSpec s;
  s.family = family;
  s.tie_embeddings = family == Family::kGemma;
  if (name == "tiny") return s;
  if (name != "1b") return std::nullopt;
  s.hidden_size = 2048;
  s.num_layers = 16;
  s.num_heads = 32;
  s.num_kv_heads = 8;
  s.head_dim = 64;
  s.intermediate_size = 8192;
  s.vocab_size = 128256;
  s.max_position_embeddings = 131072;
  s.tie_embeddings = true;
  s.llama3_rope_scaling = family == Family::kLlama;
  return s;
}

Result<std::vector<TensorInfo>> TinyModelTensors(const TinyModelSpec& spec) {
  ALLOY_RETURN_IF_ERROR(ValidateSpec(spec));
  const int64_t hidden = spec.hidden_size, inter = spec.intermediate_size;
  const int64_t q_rows = spec.num_heads * HeadDim(spec);
  const int64_t kv_rows = spec.num_kv_heads * HeadDim(spec);
  std::vector<TensorInfo> out;
  auto add = [&](std::string name, std::vector<int64_t> shape) -> Status {
    ALLOY_ASSIGN_OR_RETURN(TensorInfo info,
                           formats::MakeTensorInfo(std::move(name), spec.dtype, std::move(shape)));
    out.push_back(std::move(info));
    return Status::OK();
  };
  ALLOY_RETURN_IF_ERROR(add("model.embed_tokens.weight", {spec.vocab_size, hidden}));
  for (int64_t layer = 0; layer < spec.num_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    ALLOY_RETURN_IF_ERROR(add(p + "self_attn.q_proj.weight", {q_rows, hidden}));
    ALLOY_RETURN_IF_ERROR(add(p + "self_attn.k_proj.weight", {kv_rows, hidden}));
    ALLOY_RETURN_IF_ERROR(add(p + "self_attn.v_proj.weight", {kv_rows, hidden}));
    if (spec.family == Family::kQwen2) {
      ALLOY_RETURN_IF_ERROR(add(p + "self_attn.q_proj.bias", {q_rows}));
      ALLOY_RETURN_IF_ERROR(add(p + "self_attn.k_proj.bias", {kv_rows}));
      ALLOY_RETURN_IF_ERROR(add(p + "self_attn.v_proj.bias", {kv_rows}));
    }
    ALLOY_RETURN_IF_ERROR(add(p + "self_attn.o_proj.weight", {hidden, q_rows}));
    ALLOY_RETURN_IF_ERROR(add(p + "mlp.gate_proj.weight", {inter, hidden}));
    ALLOY_RETURN_IF_ERROR(add(p + "mlp.up_proj.weight", {inter, hidden}));
    ALLOY_RETURN_IF_ERROR(add(p + "mlp.down_proj.weight", {hidden, inter}));
    ALLOY_RETURN_IF_ERROR(add(p + "input_layernorm.weight", {hidden}));
    ALLOY_RETURN_IF_ERROR(add(p + "post_attention_layernorm.weight", {hidden}));
  }
  ALLOY_RETURN_IF_ERROR(add("model.norm.weight", {hidden}));
  if (!Tied(spec)) ALLOY_RETURN_IF_ERROR(add("lm_head.weight", {spec.vocab_size, hidden}));
  return out;
}

float TinyModelValue(const TinyModelSpec& spec, std::string_view name, uint64_t element) {
  float value = 0.0f;
  TensorGen(spec, name).Fill(element, std::span<float>(&value, 1));
  return value;
}

Status WriteTinyModel(const TinyModelSpec& spec, const std::string& out_dir,
                      TinyModelStats* stats) {
  ALLOY_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors, TinyModelTensors(spec));
  formats::ModelWriterOptions options;
  options.max_shard_bytes = spec.max_shard_bytes;
  options.overwrite = true;
  ALLOY_ASSIGN_OR_RETURN(auto writer, formats::ModelDirWriter::Create(out_dir, options));
  ALLOY_RETURN_IF_ERROR(writer->Begin(tensors, {{"format", "pt"}}));
  ALLOY_RETURN_IF_ERROR(WriteTensorData(spec, tensors, *writer));
  ALLOY_RETURN_IF_ERROR(writer->AddFile("config.json", ConfigJson(spec)));
  ALLOY_RETURN_IF_ERROR(writer->AddFile("generation_config.json", GenerationConfigJson(spec)));
  ALLOY_RETURN_IF_ERROR(writer->AddFile("tokenizer.json", TokenizerJson(spec)));
  ALLOY_RETURN_IF_ERROR(writer->AddFile("tokenizer_config.json", TokenizerConfigJson(spec)));
  const size_t n_files = writer->weight_files().size();
  ALLOY_RETURN_IF_ERROR(writer->Finish());
  if (stats != nullptr) {
    *stats = {tensors.size(), n_files, 0};
    for (const TensorInfo& info : tensors) stats->n_bytes += info.nbytes;
  }
  return Status::OK();
}

// ---- LoRA adapters ----

Result<std::vector<TensorInfo>> TinyLoraTensors(const TinyModelSpec& base,
                                                const TinyLoraSpec& lora) {
  if (lora.rank <= 0) return Status::InvalidArgument("LoRA rank must be positive");
  if (lora.dtype != DType::kF32 && lora.dtype != DType::kBF16) {
    return Status::InvalidArgument("LoRA factors are written as F32 or BF16");
  }
  ALLOY_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors, TinyModelTensors(base));
  std::vector<TensorInfo> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) -> Status {
    ALLOY_ASSIGN_OR_RETURN(TensorInfo info, formats::MakeTensorInfo(name, lora.dtype, shape));
    out.push_back(std::move(info));
    return Status::OK();
  };
  for (const TensorInfo& t : tensors) {
    const std::string& name = t.name;
    constexpr std::string_view kWeight = ".weight";
    if (t.shape.size() != 2 || name.size() <= kWeight.size() ||
        name.compare(name.size() - kWeight.size(), kWeight.size(), kWeight) != 0) {
      continue;
    }
    const std::string module = name.substr(0, name.size() - kWeight.size());
    const std::string key = "base_model.model." + module;
    if (lora.embeddings && module == "model.embed_tokens") {
      ALLOY_RETURN_IF_ERROR(add(key + ".lora_embedding_A", {lora.rank, t.shape[0]}));
      ALLOY_RETURN_IF_ERROR(add(key + ".lora_embedding_B", {t.shape[1], lora.rank}));
      continue;
    }
    if (module.find(".layers.") == std::string::npos) continue;
    const bool targeted = std::any_of(
        lora.target_modules.begin(), lora.target_modules.end(), [&](const std::string& m) {
          return module.size() > m.size() &&
                 module.compare(module.size() - m.size() - 1, m.size() + 1, "." + m) == 0;
        });
    if (!targeted) continue;
    ALLOY_RETURN_IF_ERROR(add(key + ".lora_A.weight", {lora.rank, t.shape[1]}));
    ALLOY_RETURN_IF_ERROR(add(key + ".lora_B.weight", {t.shape[0], lora.rank}));
  }
  if (out.empty()) return Status::InvalidArgument("no tensor of the model matches target_modules");
  return out;
}

float TinyLoraValue(const TinyLoraSpec& lora, std::string_view name, uint64_t element) {
  // U(−a, a) has standard deviation a/√3.
  const double u = kernels::Uniform(lora.seed, kernels::HashName(name), 0, element);
  return static_cast<float>((2.0 * u - 1.0) * lora.std * std::sqrt(3.0));
}

Status WriteTinyLoraAdapter(const TinyModelSpec& base, const TinyLoraSpec& lora,
                            const std::string& out_dir) {
  ALLOY_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors, TinyLoraTensors(base, lora));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return formats::ErrnoStatus("create directory", out_dir, ec.value());
  auto sink = formats::MakeSafetensorsWriter(out_dir + "/adapter_model.safetensors");
  ALLOY_RETURN_IF_ERROR(sink->Begin(tensors, {{"format", "pt"}}));
  for (size_t idx = 0; idx < tensors.size(); ++idx) {
    const TensorInfo& t = tensors[idx];
    std::vector<float> values(t.numel());
    for (uint64_t i = 0; i < values.size(); ++i) values[i] = TinyLoraValue(lora, t.name, i);
    std::vector<uint8_t> bytes(t.nbytes);
    if (lora.dtype == DType::kF32) {
      std::memcpy(bytes.data(), values.data(), bytes.size());
    } else {
      kernels::EncodeBf16(values, std::span<uint16_t>(reinterpret_cast<uint16_t*>(bytes.data()),
                                                      values.size()),
                          nullptr);
    }
    ALLOY_RETURN_IF_ERROR(sink->WriteAt(idx, 0, bytes));
  }
  ALLOY_RETURN_IF_ERROR(sink->Finish());
  nlohmann::json config = {{"peft_type", "LORA"},
                           {"task_type", "CAUSAL_LM"},
                           {"base_model_name_or_path", "tiny-" + std::string(FamilyName(base.family))},
                           {"r", lora.rank},
                           {"lora_alpha", lora.alpha},
                           {"use_rslora", lora.use_rslora},
                           {"target_modules", lora.target_modules},
                           {"fan_in_fan_out", false},
                           {"bias", "none"},
                           {"modules_to_save", nullptr}};
  return formats::WriteWholeFile(out_dir + "/adapter_config.json", config.dump(2) + "\n",
                                 /*fsync=*/false);
}

}  // namespace alloy::examples
