#include "merge/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/dtype.h"
#include "formats/file_util.h"
#include "formats/model_writer.h"
#include "formats/output_overlap.h"
#include "formats/tensor_info.h"
#include "kernels/lowrank.h"
#include "kernels/random.h"
#include "merge/codec.h"
#include "merge/convert_job.h"
#include "merge/fp8_model.h"
#include "merge/merge_job.h"
#include "merge/model_opener.h"
#include "merge/moe_recipe.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::Result;
using formats::Status;
using formats::TensorInfo;

// ---- the output architecture (§4.2) ----

enum class Arch : uint8_t { kMixtral, kDeepseek, kQwen2Moe, kQwen3Moe };

struct ArchInfo {
  Arch arch;
  const char* key;           // what `architecture:` is matched against (as a prefix)
  const char* architecture;  // config.json architectures[0]
  const char* model_type;
};

constexpr ArchInfo kArchs[] = {
    {Arch::kMixtral, "mixtral", "MixtralForCausalLM", "mixtral"},
    {Arch::kDeepseek, "deepseek", "DeepseekForCausalLM", "deepseek"},
    {Arch::kQwen2Moe, "qwen", "Qwen2MoeForCausalLM", "qwen2_moe"},
    {Arch::kQwen3Moe, "qwen3", "Qwen3MoeForCausalLM", "qwen3_moe"},
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Why `arch` cannot hold this recipe and these models, or "" when it can.
std::string Unsupported(Arch arch, const MoeRecipe& r, const std::set<std::string>& model_types) {
  const bool one_type = model_types.size() == 1;
  const std::string type = one_type ? *model_types.begin() : "";
  const bool llama_like = one_type && (type == "llama" || type == "mistral");
  switch (arch) {
    case Arch::kMixtral:
      if (!r.shared_experts.empty()) return "Mixtral has no shared experts";
      if (!llama_like) return "Mixtral needs every model to be llama or mistral";
      return "";
    case Arch::kDeepseek:
      if (r.shared_experts.size() > 1) return "DeepSeek-MoE takes at most one shared expert";
      if (!r.shared_experts.empty() && !r.shared_experts[0].positive_prompts.empty()) {
        return "DeepSeek-MoE's shared expert takes no prompts";
      }
      if (!llama_like) return "DeepSeek-MoE needs every model to be llama or mistral";
      return "";
    case Arch::kQwen2Moe:
      if (r.shared_experts.size() != 1) return "Qwen2-MoE needs exactly one shared expert";
      if (!IsRandomGateMode(r.gate_mode) && r.shared_experts[0].positive_prompts.empty()) {
        return "Qwen2-MoE's shared expert needs positive_prompts (or gate_mode: random)";
      }
      for (const std::string& t : model_types) {
        if (t != "llama" && t != "mistral" && t != "qwen2") {
          return "Qwen2-MoE needs llama, mistral or qwen2 models";
        }
      }
      return "";
    case Arch::kQwen3Moe:
      if (!r.shared_experts.empty()) return "Qwen3-MoE has no shared experts";
      if (!(one_type && type == "qwen3")) return "Qwen3-MoE needs every model to be qwen3";
      return "";
  }
  return "unknown";
}

Result<const ArchInfo*> ChooseArch(const MoeRecipe& r, const std::set<std::string>& model_types) {
  std::string reasons;
  const std::string wanted = Lower(r.architecture);
  for (const ArchInfo& a : kArchs) {
    if (!wanted.empty() && std::string_view(a.key).substr(0, wanted.size()) != wanted) continue;
    const std::string why = Unsupported(a.arch, r, model_types);
    if (why.empty()) return &a;
    reasons += (reasons.empty() ? "" : "; ") + why;
  }
  std::string types;
  for (const std::string& t : model_types) types += (types.empty() ? "" : ", ") + t;
  return Status::Unsupported(
      "no MoE architecture fits this recipe" +
      (wanted.empty() ? std::string() : " with `architecture: " + r.architecture + "`") +
      " and models of type " + types + ": " + reasons);
}

// ---- the virtual output model ----

// One stretch of an output tensor taken from an input tensor.
struct Part {
  formats::TensorSource* source = nullptr;
  const TensorInfo* info = nullptr;
  double noise_scale = 0;     // + noise_scale · N(0, 1), keyed by the input tensor's name
  double scale = 1;           // × scale (residual_scale on down_proj)
  uint32_t expert = 0;        // the noise's model slot
  bool modified() const { return noise_scale != 0 || scale != 1; }
};

enum class Kind : uint8_t { kParts, kGate, kZeros };

struct Entry {
  Kind kind = Kind::kParts;
  TensorInfo info;
  std::vector<Part> parts;  // kParts: concatenated in order
  bool raw = true;          // kParts: bytes copied (no part modified, one dtype)
  size_t gate = 0;          // kGate: index into MoeSource::gates_
};

class MoeSource final : public formats::TensorSource {
 public:
  MoeSource(std::string name, uint64_t seed) : name_(std::move(name)), seed_(seed) {}

  Status Add(Entry e) {
    if (index_.count(e.info.name)) {
      return Status::InvalidArgument("MoE output tensor '" + e.info.name + "' written twice");
    }
    index_[e.info.name] = entries_.size();
    infos_.push_back(e.info);
    entries_.push_back(std::move(e));
    return Status::OK();
  }
  // A router matrix (row-major float32 values), returns its index.
  size_t AddGate(std::vector<float> values) {
    gates_.push_back(std::move(values));
    return gates_.size() - 1;
  }

  const std::string& name() const override { return name_; }
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const TensorInfo* Find(std::string_view name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &infos_[it->second];
  }
  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    const Entry& e = entries_[index_.at(info.name)];
    if (e.kind == Kind::kParts && e.raw && e.parts.size() == 1) {
      return e.parts[0].source->View(*e.parts[0].info);
    }
    return Status::Unsupported(name_ + ": tensor '" + info.name + "' is computed; read it");
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    auto it = index_.find(info.name);
    ALLOY_CHECK(it != index_.end() && "the TensorInfo came from this source");
    const Entry& e = entries_[it->second];
    if (offset > e.info.nbytes || out.size() > e.info.nbytes - offset) {
      return Status::InvalidArgument(name_ + ": read outside tensor '" + info.name + "'");
    }
    switch (e.kind) {
      case Kind::kZeros: std::fill(out.begin(), out.end(), uint8_t{0}); return Status::OK();
      case Kind::kGate: {
        const std::vector<float>& g = gates_[e.gate];
        std::memcpy(out.data(), reinterpret_cast<const uint8_t*>(g.data()) + offset, out.size());
        return Status::OK();
      }
      case Kind::kParts: return e.raw ? ReadRaw(e, offset, out) : ReadComputed(e, offset, out);
    }
    return Status::OK();
  }

  void Release(const TensorInfo& info, uint64_t, uint64_t) override {
    const Entry& e = entries_[index_.at(info.name)];
    for (const Part& p : e.parts) p.source->Release(*p.info);
  }
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  // Parts' bytes back to back.
  static Status ReadRaw(const Entry& e, uint64_t offset, std::span<uint8_t> out) {
    uint64_t start = 0;
    size_t done = 0;
    for (const Part& p : e.parts) {
      const uint64_t end = start + p.info->nbytes;
      if (done < out.size() && offset + done < end) {
        const uint64_t from = offset + done - start;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(end - (offset + done),
                                                                out.size() - done));
        ALLOY_RETURN_IF_ERROR(p.source->Read(*p.info, from, out.subspan(done, n)));
        done += n;
      }
      start = end;
    }
    return Status::OK();
  }

  // Float32 elements: each part decoded, scaled, noise added.
  Status ReadComputed(const Entry& e, uint64_t offset, std::span<uint8_t> out) const {
    if (offset % 4 != 0 || out.size() % 4 != 0) {
      return Status::InvalidArgument(name_ + ": read of tensor '" + e.info.name +
                                     "' does not cover whole elements");
    }
    const uint64_t first = offset / 4;
    const size_t n = out.size() / 4;
    // Reused per thread: fresh pages are slow (performance-notes.md).
    thread_local std::vector<float> values;
    thread_local std::vector<uint8_t> bytes;
    uint64_t start = 0;  // first element of the part
    size_t done = 0;
    for (const Part& p : e.parts) {
      const uint64_t count = p.info->numel();
      const uint64_t end = start + count;
      if (done < n && first + done < end) {
        const uint64_t from = first + done - start;
        const size_t len = static_cast<size_t>(std::min<uint64_t>(end - (first + done), n - done));
        const size_t elem = ElementBytes(p.info->dtype);
        bytes.resize(len * elem);
        values.resize(len);
        ALLOY_RETURN_IF_ERROR(p.source->Read(*p.info, from * elem, bytes));
        DecodeToF32(p.info->dtype, bytes, values);
        const uint64_t key = kernels::HashName(p.info->name);
        for (size_t i = 0; i < len; ++i) {
          double v = values[i];
          if (p.noise_scale != 0) {
            v += p.noise_scale * kernels::StandardNormal(seed_, key, p.expert, from + i);
          }
          values[i] = static_cast<float>(v * p.scale);
        }
        std::memcpy(out.data() + done * 4, values.data(), len * 4);
        done += len;
      }
      start = end;
    }
    return Status::OK();
  }

  std::string name_;
  uint64_t seed_;
  std::vector<Entry> entries_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t, std::less<>> index_;
  std::vector<std::vector<float>> gates_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> files_;
};

Result<Entry> PartsEntry(std::string name, std::vector<int64_t> shape, std::vector<Part> parts) {
  Entry e;
  e.kind = Kind::kParts;
  const DType first = parts.at(0).info->dtype;
  e.raw = std::all_of(parts.begin(), parts.end(),
                      [&](const Part& p) { return !p.modified() && p.info->dtype == first; });
  ALLOY_ASSIGN_OR_RETURN(e.info, formats::MakeTensorInfo(std::move(name),
                                                         e.raw ? first : DType::kF32, shape));
  e.parts = std::move(parts);
  return e;
}

// ---- gates (§4.3) ----

// Router rows for one layer: `rows` × hidden, float32.
std::vector<float> GateValues(const std::string& mode, uint64_t seed, int64_t layer, size_t rows,
                              size_t hidden) {
  const uint64_t key = kernels::HashName("alloy.moe.gate." + mode);
  const uint32_t slot = static_cast<uint32_t>(layer);
  std::vector<float> out(rows * hidden);
  const double inv_sqrt_h = 1.0 / std::sqrt(static_cast<double>(hidden));
  if (mode == "uniform_random") {
    for (size_t i = 0; i < out.size(); ++i) {
      const double u = kernels::Uniform(seed, key, slot, i);
      out[i] = static_cast<float>((2.0 * u - 1.0) * inv_sqrt_h);
    }
    return out;
  }
  std::vector<double> g(out.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = kernels::StandardNormal(seed, key, slot, i);
  if (mode == "orthogonal" && rows <= hidden) {
    // Orthonormal rows, scaled to the √H norm a random row has on average.
    kernels::OrthonormalizeRows(g, rows, hidden);
    for (double& v : g) v *= std::sqrt(static_cast<double>(hidden));
  }
  for (size_t i = 0; i < g.size(); ++i) out[i] = static_cast<float>(g[i]);
  return out;
}

// ---- the plan ----

struct Model {
  std::string text;  // as written
  formats::TensorSource* source = nullptr;
  std::string directory;
  nlohmann::json config;
};

constexpr const char* kMlp[] = {"gate_proj", "up_proj", "down_proj"};

std::string MlpName(int64_t layer, const char* proj) {
  return "model.layers." + std::to_string(layer) + ".mlp." + proj + ".weight";
}

// The layer and projection of a dense MLP weight name, or layer −1.
int64_t MlpLayer(const std::string& name) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  size_t pos = kPrefix.size();
  int64_t layer = 0;
  size_t digits = 0;
  while (pos < name.size() && std::isdigit(static_cast<unsigned char>(name[pos]))) {
    layer = layer * 10 + (name[pos++] - '0');
    ++digits;
  }
  if (digits == 0) return -1;
  const std::string rest = name.substr(pos);
  for (const char* proj : kMlp) {
    if (rest == std::string(".mlp.") + proj + ".weight") return layer;
  }
  return -1;
}

Result<const TensorInfo*> Need(const Model& m, const std::string& name,
                               const std::vector<int64_t>* shape) {
  const TensorInfo* t = m.source->Find(name);
  if (t == nullptr) {
    return Status::InvalidArgument("model '" + m.text + "' has no tensor '" + name +
                                   "'; MoE experts need a llama-style MLP "
                                   "(mlp.gate_proj/up_proj/down_proj) in every layer of the base");
  }
  if (shape != nullptr && t->shape != *shape) {
    return Status::InvalidArgument("tensor '" + name + "' is " + formats::ShapeString(t->shape) +
                                   " in model '" + m.text + "' but " +
                                   formats::ShapeString(*shape) +
                                   " in the base: experts must have the base's shapes");
  }
  if (!formats::IsConvertibleFloat(t->dtype)) {
    return Status::InvalidArgument("tensor '" + name + "' of model '" + m.text + "' is " +
                                   std::string(formats::DTypeName(t->dtype)));
  }
  return t;
}

std::string LayerPrefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// The three projections of `expert` at `layer` as parts (noise, residual scale).
Result<std::vector<Part>> ExpertParts(const Model& base, const Model& m, const MoeExpert& e,
                                      uint32_t slot, int64_t layer) {
  std::vector<Part> parts;
  for (const char* proj : kMlp) {
    const std::string name = MlpName(layer, proj);
    const TensorInfo* b = base.source->Find(name);
    ALLOY_ASSIGN_OR_RETURN(const TensorInfo* t, Need(m, name, &b->shape));
    Part p;
    p.source = m.source;
    p.info = t;
    p.noise_scale = e.noise_scale.value_or(0.0);
    p.scale = std::string(proj) == "down_proj" ? e.residual_scale.value_or(1.0) : 1.0;
    p.expert = slot;
    parts.push_back(p);
  }
  return parts;  // gate, up, down
}

Status AddMoeLayer(MoeSource& src, const ArchInfo& arch, bool fused, const MoeRecipe& r,
                   const Model& base, const std::vector<Model>& experts,
                   const std::vector<Model>& shared, int64_t layer, int64_t hidden,
                   uint64_t seed) {
  const std::string pre = LayerPrefix(layer);
  const size_t n = experts.size();
  std::vector<std::vector<Part>> parts(n), shared_parts(shared.size());
  for (size_t e = 0; e < n; ++e) {
    ALLOY_ASSIGN_OR_RETURN(parts[e], ExpertParts(base, experts[e], r.experts[e],
                                                 static_cast<uint32_t>(e), layer));
  }
  for (size_t e = 0; e < shared.size(); ++e) {
    ALLOY_ASSIGN_OR_RETURN(shared_parts[e],
                           ExpertParts(base, shared[e], r.shared_experts[e],
                                       static_cast<uint32_t>(n + e), layer));
  }
  // Router rows: experts, then shared experts (Qwen2-MoE's shared_expert_gate).
  const bool shared_gate = arch.arch == Arch::kQwen2Moe;
  const size_t rows = n + (shared_gate ? shared.size() : 0);
  const std::vector<float> g =
      GateValues(r.gate_mode, seed, layer, rows, static_cast<size_t>(hidden));
  auto add_gate = [&](const std::string& name, size_t first_row, size_t count) -> Status {
    Entry e;
    e.kind = Kind::kGate;
    const size_t h = static_cast<size_t>(hidden);
    e.gate = src.AddGate(std::vector<float>(g.begin() + static_cast<ptrdiff_t>(first_row * h),
                                            g.begin() + static_cast<ptrdiff_t>((first_row + count) * h)));
    ALLOY_ASSIGN_OR_RETURN(e.info, formats::MakeTensorInfo(name, DType::kF32,
                                                           {static_cast<int64_t>(count), hidden}));
    return src.Add(std::move(e));
  };
  auto add_parts = [&](const std::string& name, std::vector<int64_t> shape,
                       std::vector<Part> ps) -> Status {
    ALLOY_ASSIGN_OR_RETURN(Entry e, PartsEntry(name, std::move(shape), std::move(ps)));
    return src.Add(std::move(e));
  };
  const std::vector<int64_t>& gate_shape = parts[0][0].info->shape;  // [I, H]
  const std::vector<int64_t>& down_shape = parts[0][2].info->shape;  // [H, I]
  const int64_t e_count = static_cast<int64_t>(n);

  if (arch.arch == Arch::kMixtral && !fused) {
    ALLOY_RETURN_IF_ERROR(add_gate(pre + "block_sparse_moe.gate.weight", 0, n));
    for (size_t e = 0; e < n; ++e) {
      const std::string x = pre + "block_sparse_moe.experts." + std::to_string(e) + ".";
      ALLOY_RETURN_IF_ERROR(add_parts(x + "w1.weight", gate_shape, {parts[e][0]}));
      ALLOY_RETURN_IF_ERROR(add_parts(x + "w2.weight", down_shape, {parts[e][2]}));
      ALLOY_RETURN_IF_ERROR(add_parts(x + "w3.weight", gate_shape, {parts[e][1]}));
    }
    return Status::OK();
  }
  if (fused) {  // Mixtral or Qwen3-MoE, transformers v5
    ALLOY_RETURN_IF_ERROR(add_gate(pre + "mlp.gate.weight", 0, n));
    std::vector<Part> gate_up, down;
    for (size_t e = 0; e < n; ++e) {
      gate_up.push_back(parts[e][0]);
      gate_up.push_back(parts[e][1]);
      down.push_back(parts[e][2]);
    }
    ALLOY_RETURN_IF_ERROR(add_parts(pre + "mlp.experts.gate_up_proj",
                                    {e_count, 2 * gate_shape[0], gate_shape[1]}, gate_up));
    return add_parts(pre + "mlp.experts.down_proj", {e_count, down_shape[0], down_shape[1]},
                     down);
  }
  ALLOY_RETURN_IF_ERROR(add_gate(pre + "mlp.gate.weight", 0, n));
  for (size_t e = 0; e < n; ++e) {
    const std::string x = pre + "mlp.experts." + std::to_string(e) + ".";
    for (size_t k = 0; k < 3; ++k) {
      ALLOY_RETURN_IF_ERROR(add_parts(x + kMlp[k] + ".weight", parts[e][k].info->shape,
                                      {parts[e][k]}));
    }
  }
  if (!shared.empty()) {
    const std::string x =
        pre + (arch.arch == Arch::kDeepseek ? "mlp.shared_experts." : "mlp.shared_expert.");
    for (size_t k = 0; k < 3; ++k) {
      ALLOY_RETURN_IF_ERROR(add_parts(x + kMlp[k] + ".weight", shared_parts[0][k].info->shape,
                                      {shared_parts[0][k]}));
    }
    if (shared_gate) ALLOY_RETURN_IF_ERROR(add_gate(pre + "mlp.shared_expert_gate.weight", n, 1));
  }
  return Status::OK();
}

int64_t ConfigInt(const nlohmann::json& c, const char* key, int64_t fallback) {
  if (c.is_object() && c.contains(key) && c[key].is_number_integer()) return c[key].get<int64_t>();
  return fallback;
}

nlohmann::json MoeConfig(const ArchInfo& arch, const nlohmann::json& base, const MoeRecipe& r,
                         size_t n_experts, size_t n_shared, DType dtype) {
  nlohmann::json c = base.is_object() ? base : nlohmann::json::object();
  DropFp8QuantizationConfig(c);  // experts are read dequantized
  const int64_t k = r.experts_per_token;
  const int64_t inter = ConfigInt(base, "intermediate_size", 0);
  c["architectures"] = {arch.architecture};
  c["model_type"] = arch.model_type;
  c["torch_dtype"] = formats::DTypeTorchName(dtype);
  switch (arch.arch) {
    case Arch::kMixtral:
      c["num_local_experts"] = n_experts;
      c["num_experts_per_tok"] = k;
      c["sliding_window"] = nullptr;
      break;
    case Arch::kDeepseek:
      c["n_routed_experts"] = n_experts;
      c["n_shared_experts"] = n_shared ? nlohmann::json(1) : nlohmann::json();
      c["num_experts_per_tok"] = k;
      c["first_k_dense_replace"] = 0;
      c["moe_layer_freq"] = 1;
      c["scoring_func"] = "softmax";
      c["norm_topk_prob"] = true;
      c["moe_intermediate_size"] = inter;
      c["auto_map"] = {
          {"AutoConfig",
           "deepseek-ai/deepseek-moe-16b-base--configuration_deepseek.DeepseekConfig"},
          {"AutoModel", "deepseek-ai/deepseek-moe-16b-base--modeling_deepseek.DeepseekModel"},
          {"AutoModelForCausalLM",
           "deepseek-ai/deepseek-moe-16b-base--modeling_deepseek.DeepseekForCausalLM"}};
      break;
    case Arch::kQwen2Moe:
      c["num_experts"] = n_experts;
      c["num_experts_per_tok"] = k;
      c["decoder_sparse_step"] = 1;
      c["norm_topk_prob"] = true;
      c["sliding_window"] = nullptr;
      c["use_sliding_window"] = false;
      c["shared_expert_intermediate_size"] = inter;
      c["moe_intermediate_size"] = inter;
      break;
    case Arch::kQwen3Moe:
      c["num_experts"] = n_experts;
      c["num_experts_per_tok"] = k;
      c["decoder_sparse_step"] = 1;
      c["norm_topk_prob"] = true;
      c["moe_intermediate_size"] = inter;
      break;
  }
  return c;
}

std::string MoeCard(const std::string& title, const ArchInfo& arch, const MoeRecipe& r,
                    const std::string& layout) {
  std::string card = "---\nlibrary_name: transformers\ntags:\n- moe\n- merge\n- alloy\n---\n\n# " +
                     title + "\n\nA mixture of experts (" + arch.architecture + ", " + layout +
                     " layout) made with alloy from a mergekit-moe recipe: base `" +
                     r.base_model.text + "`, gate_mode `" + r.gate_mode + "`, " +
                     std::to_string(r.experts_per_token) + " experts per token.\n\nExperts:\n\n";
  for (const MoeExpert& e : r.experts) card += "- `" + e.source_model.text + "`\n";
  for (const MoeExpert& e : r.shared_experts) card += "- `" + e.source_model.text + "` (shared)\n";
  card += "\nThe routers are not trained: fine-tune the model before relying on its routing.\n\n"
          "```yaml\n" + r.raw_text + (r.raw_text.ends_with("\n") ? "" : "\n") + "```\n";
  return card;
}

}  // namespace

Result<MoeReport> RunMoeText(std::string_view recipe_text, std::string_view display_name,
                             const std::string& out_dir, const MoeOptions& options) {
  MoeParseOptions parse;
  parse.allow_all_same_experts = options.allow_all_same_experts;
  ALLOY_ASSIGN_OR_RETURN(MoeRecipe r, ParseMoeRecipeText(recipe_text, display_name, parse));
  if (options.layout != "legacy" && options.layout != "fused") {
    return Status::InvalidArgument("--layout must be legacy or fused, not '" + options.layout +
                                   "'");
  }
  MoeReport report;
  for (const Warning& w : r.warnings) {
    report.warnings.push_back(std::string(display_name) + ":" + std::to_string(w.line) + ":" +
                              std::to_string(w.column) + ": warning: " + w.message);
  }
  if (!IsRandomGateMode(r.gate_mode)) {
    const MoeExpert& e = r.experts.front();
    const std::string needs = r.gate_mode == "cheap_embed"
                                  ? "the base's tokenizer to embed them, which alloy cannot run yet"
                                  : "a forward pass of the base model, which alloy does not have "
                                    "yet";
    return Status::Unsupported(std::string(display_name) + ": gate_mode '" + r.gate_mode +
                               "' computes the routers from the prompts of each expert (first: '" +
                               e.source_model.text + "') with " + needs +
                               "; use `gate_mode: random` (or uniform_random, orthogonal) and "
                               "train the routers");
  }

  {
    std::vector<std::string> inputs;
    std::vector<const ModelRef*> refs = {&r.base_model};
    for (const MoeExpert& e : r.experts) refs.push_back(&e.source_model);
    for (const MoeExpert& e : r.shared_experts) refs.push_back(&e.source_model);
    for (const ModelRef* ref : refs) {
      for (std::string& path : LocalInputPaths(*ref)) inputs.push_back(std::move(path));
    }
    ALLOY_RETURN_IF_ERROR(formats::CheckOutputOutsideInputs(out_dir, inputs));
  }
  DiskModelOpener opener({}, formats::FileAccess::kPread, 1.0, options.symlinks);
  auto open = [&](const ModelRef& ref) -> Result<Model> {
    auto opened = opener.Open(ref);
    if (!opened.ok()) {
      const std::string what = "model '" + ref.text + "'";
      const Status& st = opened.status();
      return st.message().find(what) == std::string::npos ? st.WithContext(what) : st;
    }
    return Model{ref.text, opened->source, opened->directory, opened->config};
  };
  ALLOY_ASSIGN_OR_RETURN(Model base, open(r.base_model));
  // The base's tokenizer files are copied into the output at the end.
  ALLOY_RETURN_IF_ERROR(
      formats::CheckFilesInsideDirectory(base.directory, TokenizerFileNames(), options.symlinks));
  std::vector<Model> experts, shared;
  std::set<std::string> model_types;
  auto type_of = [](const Model& m) {
    return m.config.is_object() && m.config.contains("model_type") &&
                   m.config["model_type"].is_string()
               ? m.config["model_type"].get<std::string>()
               : std::string("(unknown)");
  };
  model_types.insert(type_of(base));
  for (const MoeExpert& e : r.experts) {
    ALLOY_ASSIGN_OR_RETURN(Model m, open(e.source_model));
    model_types.insert(type_of(m));
    experts.push_back(m);
  }
  for (const MoeExpert& e : r.shared_experts) {
    ALLOY_ASSIGN_OR_RETURN(Model m, open(e.source_model));
    model_types.insert(type_of(m));
    shared.push_back(m);
  }
  ALLOY_ASSIGN_OR_RETURN(const ArchInfo* arch, ChooseArch(r, model_types));
  const bool fused = options.layout == "fused";
  if (fused && arch->arch != Arch::kMixtral && arch->arch != Arch::kQwen3Moe) {
    return Status::InvalidArgument(std::string("--layout fused exists for Mixtral and Qwen3-MoE, "
                                               "not ") +
                                   arch->architecture);
  }
  const size_t n = experts.size();
  if (r.gate_mode == "orthogonal" && n + (arch->arch == Arch::kQwen2Moe ? 1 : 0) >
                                         static_cast<size_t>(std::max<int64_t>(
                                             ConfigInt(base.config, "hidden_size", 0), 0))) {
    report.warnings.push_back("gate_mode orthogonal: more router rows than hidden_size, so the "
                              "rows cannot be orthogonal; they are plain N(0, 1) draws");
  }
  if (arch->arch == Arch::kMixtral && (n & (n - 1)) != 0) {
    report.warnings.push_back(std::to_string(n) +
                              " experts is not a power of two; older llama.cpp versions cannot "
                              "load such a Mixtral");
  }

  const int64_t layers = ConfigInt(base.config, "num_hidden_layers", -1);
  const int64_t hidden = ConfigInt(base.config, "hidden_size", -1);
  if (layers <= 0 || hidden <= 0) {
    return Status::InvalidArgument("base model '" + base.text +
                                   "' has no num_hidden_layers / hidden_size in config.json");
  }
  DType dtype = DType::kBF16;
  if (r.dtype) {
    dtype = *r.dtype;
  } else if (base.config.contains("torch_dtype") && base.config["torch_dtype"].is_string()) {
    if (auto d = formats::ParseUserDType(base.config["torch_dtype"].get<std::string>())) {
      dtype = *d;
    }
  }

  // Base tensors in order; a layer's MoE block replaces its first MLP tensor.
  MoeSource src("MoE of " + base.text, options.seed);
  std::set<int64_t> done_layers;
  const bool qwen = arch->arch == Arch::kQwen2Moe;
  for (const TensorInfo& t : base.source->tensors()) {
    const int64_t layer = MlpLayer(t.name);
    if (layer >= 0) {
      if (layer >= layers) {
        return Status::InvalidArgument("base tensor '" + t.name + "' is beyond num_hidden_layers " +
                                       std::to_string(layers));
      }
      if (done_layers.insert(layer).second) {
        for (const char* proj : kMlp) {
          ALLOY_RETURN_IF_ERROR(Need(base, MlpName(layer, proj), nullptr).status());
        }
        ALLOY_RETURN_IF_ERROR(
            AddMoeLayer(src, *arch, fused, r, base, experts, shared, layer, hidden, options.seed));
      }
      continue;
    }
    Part p;
    p.source = base.source;
    p.info = &t;
    ALLOY_ASSIGN_OR_RETURN(Entry e, PartsEntry(t.name, t.shape, {p}));
    ALLOY_RETURN_IF_ERROR(src.Add(std::move(e)));
    // Qwen2-MoE has q/k/v biases; a llama or mistral base gets zero ones.
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      const std::string suffix = std::string(".self_attn.") + proj + ".weight";
      if (!qwen || !t.name.ends_with(suffix) || t.shape.size() != 2) continue;
      const std::string bias = t.name.substr(0, t.name.size() - 7) + ".bias";
      if (base.source->Find(bias) != nullptr) continue;
      Entry z;
      z.kind = Kind::kZeros;
      ALLOY_ASSIGN_OR_RETURN(z.info, formats::MakeTensorInfo(bias, DType::kF32, {t.shape[0]}));
      ALLOY_RETURN_IF_ERROR(src.Add(std::move(z)));
    }
  }
  if (static_cast<int64_t>(done_layers.size()) != layers) {
    return Status::InvalidArgument("base model '" + base.text + "' has an MLP in " +
                                   std::to_string(done_layers.size()) + " of its " +
                                   std::to_string(layers) + " layers");
  }

  formats::ModelWriterOptions w;
  if (options.max_shard_bytes) w.max_shard_bytes = options.max_shard_bytes;
  w.overwrite = options.overwrite;
  w.fsync = options.fsync;
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::ModelDirWriter> sink,
                         formats::ModelDirWriter::Create(out_dir, w));
  ConvertOptions convert;
  convert.dtype = dtype;
  convert.threads = options.threads;
  convert.cancel = options.cancel;
  if (options.progress) convert.progress = options.progress;
  ALLOY_ASSIGN_OR_RETURN(ConvertReport converted, ConvertTensors(src, *sink, convert));
  std::set<std::string> files(sink->weight_files().begin(), sink->weight_files().end());
  if (sink->weight_files().size() > 1) files.insert("model.safetensors.index.json");
  auto add = [&](const std::string& name, std::string_view text) -> Status {
    files.insert(name);
    return sink->AddFile(name, text);
  };
  ALLOY_RETURN_IF_ERROR(add(
      "config.json",
      MoeConfig(*arch, base.config, r, n, shared.size(), dtype).dump(2) + "\n"));
  for (const std::string& name : TokenizerFileNames()) {
    const std::string path = base.directory + "/" + name;
    if (!formats::IsRegularFile(path)) continue;
    files.insert(name);
    ALLOY_RETURN_IF_ERROR(sink->CopyFile(path, name));
  }
  std::string yaml = r.raw_text;
  if (!yaml.empty() && yaml.back() != '\n') yaml += '\n';
  ALLOY_RETURN_IF_ERROR(add("mergekit_moe_config.yml", yaml));
  std::string title = out_dir;
  while (title.size() > 1 && title.back() == '/') title.pop_back();
  title = title.substr(title.rfind('/') == std::string::npos ? 0 : title.rfind('/') + 1);
  ALLOY_RETURN_IF_ERROR(add("README.md", MoeCard(title, *arch, r, options.layout)));
  ALLOY_RETURN_IF_ERROR(sink->Finish());

  report.output = out_dir;
  report.architecture = arch->architecture;
  report.n_experts = n;
  report.n_shared_experts = shared.size();
  report.n_layers = layers;
  report.n_tensors = converted.n_tensors;
  report.bytes_written = converted.bytes_out;
  report.files.assign(files.begin(), files.end());
  for (const std::string& wmsg : opener.warnings()) report.warnings.push_back(wmsg);
  return report;
}

Result<MoeReport> RunMoeFile(const std::string& recipe_path, const std::string& out_dir,
                             const MoeOptions& options) {
  ALLOY_ASSIGN_OR_RETURN(std::string text, formats::ReadSmallFile(recipe_path));
  return RunMoeText(text, recipe_path, out_dir, options);
}

}  // namespace alloy::merge
