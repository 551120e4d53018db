#include "merge/lora_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include <regex>

#include "formats/lora_adapter.h"
#include "formats/model_dir.h"
#include "formats/model_ref.h"
#include "formats/output_overlap.h"
#include "formats/tensor_info.h"
#include "kernels/lowrank.h"
#include "kernels/parallel.h"
#include "kernels/sketch.h"
#include "merge/codec.h"
#include "merge/executor.h"
#include "merge/gguf_model.h"
#include "merge/lora_io.h"
#include "merge/lora_source.h"
#include "merge/plan.h"
#include "merge/plan_internal.h"
#include "merge/recipe.h"

namespace alloy::merge {
namespace {

using formats::LoraAdapter;
using formats::LoraDelta;
using formats::LoraKind;
using formats::Result;
using formats::Status;

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// The adapters, opened; `weights` checked against them (empty: all 1).
struct Sources {
  std::vector<std::string> refs;
  std::vector<std::string> dirs;  // resolved
  std::vector<std::unique_ptr<LoraAdapter>> adapters;
  std::vector<double> weights;
};

Result<Sources> OpenAdapters(const std::vector<std::string>& refs,
                             const std::vector<double>& weights, formats::SymlinkPolicy symlinks) {
  if (refs.empty()) return Status::InvalidArgument("no adapters given");
  if (!weights.empty() && weights.size() != refs.size()) {
    return Status::InvalidArgument(std::to_string(weights.size()) + " weights for " +
                                   std::to_string(refs.size()) +
                                   " adapters: give one weight per adapter, in order");
  }
  Sources s;
  s.refs = refs;
  s.weights = weights.empty() ? std::vector<double>(refs.size(), 1.0) : weights;
  for (size_t i = 0; i < refs.size(); ++i) {
    if (!std::isfinite(s.weights[i])) {
      return Status::InvalidArgument("weight " + std::to_string(i + 1) + " is not finite");
    }
    ALLOY_ASSIGN_OR_RETURN(std::string dir, formats::ResolveModelReference(refs[i]));
    auto adapter = LoraAdapter::Open(dir, formats::FileAccess::kPread, symlinks);
    if (!adapter.ok()) return adapter.status().WithContext("adapter '" + refs[i] + "'");
    s.dirs.push_back(dir);
    if (i > 0 && (*adapter)->fan_in_fan_out() != s.adapters[0]->fan_in_fan_out()) {
      return Status::InvalidArgument(
          "adapter '" + refs[i] + "' has fan_in_fan_out " +
          ((*adapter)->fan_in_fan_out() ? "true" : "false") + " but '" + refs[0] +
          "' has the opposite: they were trained on bases with different weight layouts");
    }
    s.adapters.push_back(std::move(*adapter));
  }
  return s;
}

// A module of the union of the adapters, with the deltas that touch it.
struct UnionModule {
  std::string module;
  std::vector<std::pair<size_t, const LoraDelta*>> factors;  // (adapter, delta), adapter order
  std::vector<std::pair<size_t, const LoraDelta*>> biases;
};

// Modules in first-seen order; refuses disagreeing shapes or kinds.
Result<std::vector<UnionModule>> UnionOfModules(const Sources& s) {
  std::vector<UnionModule> modules;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < s.adapters.size(); ++i) {
    for (const LoraDelta& d : s.adapters[i]->deltas()) {
      auto [it, fresh] = index.emplace(d.module, modules.size());
      if (fresh) modules.push_back(UnionModule{d.module, {}, {}});
      UnionModule& m = modules[it->second];
      if (d.kind == LoraKind::kBias) {
        m.biases.emplace_back(i, &d);
        continue;
      }
      if (!m.factors.empty()) {
        const auto& [j, first] = m.factors.front();
        if (first->embedding != d.embedding || first->a->shape[1] != d.a->shape[1] ||
            first->b->shape[0] != d.b->shape[0]) {
          return Status::InvalidArgument(
              "module '" + d.module + "' is " +
              (d.embedding ? "an embedding " : "a linear layer ") + "with A " +
              formats::ShapeString(d.a->shape) + " and B " + formats::ShapeString(d.b->shape) +
              " in adapter '" + s.refs[i] + "' but " +
              (first->embedding ? "an embedding " : "a linear layer ") + "with A " +
              formats::ShapeString(first->a->shape) + " and B " +
              formats::ShapeString(first->b->shape) + " in '" + s.refs[j] +
              "': the adapters are not for the same base model");
        }
      }
      m.factors.emplace_back(i, &d);
    }
  }
  return modules;
}

// Whole tensors (modules_to_save) of every adapter; refuses a tensor saved
// twice, or saved by one adapter and changed by another's factors.
Result<std::vector<SavedTensor>> UnionOfSaved(const Sources& s,
                                              const std::vector<UnionModule>& modules) {
  std::set<std::string> adapted;
  for (const UnionModule& m : modules) {
    for (const auto& [i, d] : m.factors) adapted.insert(d->base_name);
    for (const auto& [i, d] : m.biases) adapted.insert(d->base_name);
  }
  std::vector<SavedTensor> saved;
  std::map<std::string, size_t> owner;
  for (size_t i = 0; i < s.adapters.size(); ++i) {
    for (const auto& [name, info] : s.adapters[i]->replacements()) {
      auto [it, fresh] = owner.emplace(name, i);
      if (!fresh) {
        return Status::InvalidArgument("tensor '" + name + "' is saved whole by adapter '" +
                                       s.refs[it->second] + "' and by '" + s.refs[i] +
                                       "' (modules_to_save): the result would depend on their "
                                       "order; combine adapters that save different modules");
      }
      if (adapted.count(name)) {
        return Status::InvalidArgument("tensor '" + name + "' is saved whole by adapter '" +
                                       s.refs[i] +
                                       "' (modules_to_save) and changed by another adapter's "
                                       "LoRA factors: the result would depend on their order");
      }
      saved.push_back(SavedTensor{name, &s.adapters[i]->tensors(), info});
    }
  }
  return saved;
}

// Σ_i w_i·s_i·bias_i of a module's lora_B.bias tensors.
Result<std::vector<double>> SumBiases(const Sources& s, const UnionModule& m) {
  std::vector<double> sum;
  for (const auto& [i, d] : m.biases) {
    std::vector<double> bias;
    ALLOY_RETURN_IF_ERROR(ReadTensorF64(s.adapters[i]->tensors(), *d->b, &bias));
    if (sum.empty()) sum.assign(bias.size(), 0.0);
    const double c = s.weights[i] * d->scale;
    for (size_t k = 0; k < bias.size(); ++k) sum[k] += c * bias[k];
  }
  return sum;
}

std::string BaseModelOf(const Sources& s, std::vector<std::string>* warnings) {
  std::string base;
  for (size_t i = 0; i < s.adapters.size(); ++i) {
    const std::string& b = s.adapters[i]->base_model();
    if (b.empty()) continue;
    if (base.empty()) {
      base = b;
    } else if (b != base) {
      warnings->push_back("adapter '" + s.refs[i] + "' was trained on " + b + ", not " + base +
                          "; the result names " + base + " as its base");
    }
  }
  return base;
}

// What concat and combine start from: the adapters, the union of their
// modules, and the adapter to write with its base model, layout and saved
// tensors filled in.
struct Gathered {
  Sources sources;
  std::vector<UnionModule> modules;
  LoraBuildReport report;
  AdapterContents contents;
};

Result<Gathered> Gather(const std::vector<std::string>& adapters,
                        const std::vector<double>& weights, const std::string& out_dir,
                        const LoraBuildOptions& options) {
  Gathered g;
  ALLOY_ASSIGN_OR_RETURN(g.sources, OpenAdapters(adapters, weights, options.symlinks));
  ALLOY_RETURN_IF_ERROR(formats::CheckOutputOutsideInputs(out_dir, g.sources.dirs));
  ALLOY_ASSIGN_OR_RETURN(g.modules, UnionOfModules(g.sources));
  g.contents.dtype = options.dtype;
  g.contents.fan_in_fan_out = g.sources.adapters[0]->fan_in_fan_out();
  g.contents.base_model = BaseModelOf(g.sources, &g.report.warnings);
  ALLOY_ASSIGN_OR_RETURN(g.contents.saved, UnionOfSaved(g.sources, g.modules));
  return g;
}

// README.md of an adapter alloy made.
std::string AdapterCard(const std::string& title, const std::string& base_model,
                        const std::string& what, const std::string& command) {
  std::string card = "---\nlibrary_name: peft\n";
  if (!base_model.empty()) card += "base_model: " + base_model + "\n";
  card += "tags:\n- alloy\n- lora\n---\n\n# " + title + "\n\n" + what + "\n";
  if (!command.empty()) card += "\nMade with:\n\n```sh\n" + command + "\n```\n";
  card +=
      "\nEvery module has scale 1 (`lora_alpha` equals its rank); the source scales and weights "
      "are folded into the factors.\n";
  return card;
}

Result<LoraBuildReport> Write(const std::string& out_dir, const AdapterContents& contents,
                              const LoraBuildOptions& options, const std::string& readme,
                              LoraBuildReport report) {
  WriteAdapterOptions w;
  w.overwrite = options.overwrite;
  w.fsync = options.fsync;
  w.readme = readme;
  ALLOY_ASSIGN_OR_RETURN(AdapterWriteReport written, WriteLoraAdapter(out_dir, contents, w));
  report.output = out_dir;
  report.n_modules = written.n_modules;
  report.max_rank = written.max_rank;
  report.bytes = written.bytes;
  report.n_saved = contents.saved.size();
  return report;
}

// The first `rank` triplets of a truncated SVD as LoRA factors, √σ on each
// side. The SVD is of the delta as B·A (out × in), or with `transposed` of
// the delta as the base holds it for embeddings and fan_in_fan_out,
// (B·A)ᵀ (in × out).
ModuleFactors SplitSvd(const std::string& module, const kernels::SvdFactors& svd, size_t rank,
                       bool transposed, bool embedding) {
  // B·A ≈ U·S·Vᵀ → B = U·√S, A = √S·Vᵀ; (B·A)ᵀ ≈ U·S·Vᵀ → B = V·√S, A = √S·Uᵀ.
  const size_t rows = svd.rows, cols = svd.cols, k = svd.rank();
  const std::vector<double>& left = transposed ? svd.v : svd.u;   // out × k
  const std::vector<double>& right = transposed ? svd.u : svd.v;  // in × k
  const size_t out = transposed ? cols : rows;
  const size_t in = transposed ? rows : cols;
  ModuleFactors f;
  f.module = module;
  f.embedding = embedding;
  f.rank = static_cast<int64_t>(rank);
  f.in = static_cast<int64_t>(in);
  f.out = static_cast<int64_t>(out);
  f.a.resize(rank * in);
  f.b.resize(out * rank);
  for (size_t j = 0; j < rank; ++j) {
    const double root = std::sqrt(svd.s[j]);
    for (size_t i = 0; i < out; ++i) f.b[i * rank + j] = left[i * k + j] * root;
    for (size_t i = 0; i < in; ++i) f.a[j * in + i] = root * right[i * k + j];
  }
  return f;
}

// The top min(rank, rows, cols) SVD triplets of a dense rows × cols matrix:
// exact for small matrices or a rank close to the smaller side, where a
// sketch would save nothing; else a randomized SVD (2 power iterations).
kernels::SvdFactors TruncatedSvd(std::span<const float> m, size_t rows, size_t cols, size_t rank,
                                 uint64_t seed) {
  const size_t want = std::min({rank, rows, cols});
  const size_t small = std::min(rows, cols);
  if (small <= 256 || 4 * (want + 8) >= small) return kernels::DenseSvd(m, rows, cols, want);
  kernels::SketchOptions so;
  so.rank = want;
  so.oversample = std::max<size_t>(8, want / 4);
  so.power_iters = 2;
  so.seed = seed;
  so.vectors = true;
  return kernels::SketchSvd(m, rows, cols, so);
}

// How many of `s` (descending) to keep: at most `rank`, only values > eps,
// none of a zero delta.
size_t KeptRank(const std::vector<double>& s, size_t rank, double eps) {
  size_t k = 0;
  while (k < s.size() && k < rank && s[k] > eps && s[k] > 0) ++k;
  return k;
}

// Share of ‖ΔW‖² in the first k values; `total_sq` is ‖ΔW‖²_F.
double KeptEnergy(const std::vector<double>& s, size_t k, double total_sq) {
  if (total_sq <= 0) return 1.0;
  double kept = 0;
  for (size_t i = 0; i < k; ++i) kept += s[i] * s[i];
  return std::min(1.0, kept / total_sq);
}

}  // namespace

Result<LoraBuildReport> ConcatLora(const std::vector<std::string>& adapters,
                                   const std::vector<double>& weights, const std::string& out_dir,
                                   const LoraBuildOptions& options) {
  ALLOY_ASSIGN_OR_RETURN(Gathered g, Gather(adapters, weights, out_dir, options));
  const Sources& s = g.sources;
  const std::vector<UnionModule>& modules = g.modules;
  LoraBuildReport& report = g.report;
  AdapterContents& contents = g.contents;
  size_t done = 0;
  for (const UnionModule& m : modules) {
    if (!m.factors.empty()) {
      // A = vstack(w_i·s_i·A_i), B = hstack(B_i): B·A = Σ w_i·s_i·B_i·A_i.
      ModuleFactors out;
      out.module = m.module;
      std::vector<ModuleFactors> parts;
      for (const auto& [i, d] : m.factors) {
        ALLOY_ASSIGN_OR_RETURN(ModuleFactors f, ReadScaledFactors(*s.adapters[i], *d));
        for (double& v : f.a) v *= s.weights[i];
        out.rank += f.rank;
        parts.push_back(std::move(f));
      }
      out.embedding = parts[0].embedding;
      out.in = parts[0].in;
      out.out = parts[0].out;
      const size_t rank = static_cast<size_t>(out.rank);
      out.b.assign(static_cast<size_t>(out.out) * rank, 0.0);
      size_t col = 0;
      for (const ModuleFactors& f : parts) {
        out.a.insert(out.a.end(), f.a.begin(), f.a.end());
        const size_t r = static_cast<size_t>(f.rank);
        for (size_t row = 0; row < static_cast<size_t>(f.out); ++row) {
          std::copy_n(f.b.begin() + static_cast<ptrdiff_t>(row * r), r,
                      out.b.begin() + static_cast<ptrdiff_t>(row * rank + col));
        }
        col += r;
      }
      report.modules.push_back(LoraModuleSummary{m.module, out.rank, 0, 1});
      contents.modules.push_back(std::move(out));
    }
    if (!m.biases.empty()) {
      ALLOY_ASSIGN_OR_RETURN(std::vector<double> bias, SumBiases(s, m));
      contents.biases.emplace_back(m.module, std::move(bias));
    }
    if (options.progress) options.progress(++done, modules.size(), m.module);
  }
  std::string what = "A concatenation of " + std::to_string(adapters.size()) +
                     " LoRA adapters: ΔW = Σ w_i·s_i·B_i·A_i exactly, with\n\n";
  for (size_t i = 0; i < adapters.size(); ++i) {
    what += "- `" + adapters[i] + "`, weight " + Num(s.weights[i]) + "\n";
  }
  return Write(out_dir, contents, options,
               AdapterCard("LoRA concatenation", contents.base_model, what, options.command),
               std::move(report));
}

const std::vector<std::string>& CombineMethods() {
  static const std::vector<std::string> kMethods = {"linear", "svd", "ties", "dare_linear",
                                                    "dare_ties", "magnitude_prune"};
  return kMethods;
}

namespace {

// Float32 zeros under the given names and shapes: the base the sparsifying
// combine methods merge the adapters' deltas against (δ_i = D_i − 0).
class ZeroSource final : public formats::TensorSource {
 public:
  ZeroSource(std::string name, std::vector<formats::TensorInfo> tensors)
      : name_(std::move(name)), tensors_(std::move(tensors)) {
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  }
  const std::string& name() const override { return name_; }
  const std::vector<formats::TensorInfo>& tensors() const override { return tensors_; }
  const formats::TensorInfo* Find(std::string_view name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  Result<std::span<const uint8_t>> View(const formats::TensorInfo&) override {
    return Status::Unsupported(name_ + " has no bytes to map");
  }
  Status Read(const formats::TensorInfo& info, uint64_t offset,
              std::span<uint8_t> out) const override {
    if (offset > info.nbytes || out.size() > info.nbytes - offset) {
      return Status::InvalidArgument(name_ + ": read outside tensor '" + info.name + "'");
    }
    std::fill(out.begin(), out.end(), uint8_t{0});  // +0.0f
    return Status::OK();
  }
  void Release(const formats::TensorInfo&, uint64_t, uint64_t) override {}
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  std::string name_;
  std::vector<formats::TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> files_;
};

// Keeps every float32 tensor the executor writes until Take() hands it over.
class CaptureSink final : public formats::TensorSink {
 public:
  Status Begin(const std::vector<formats::TensorInfo>& tensors,
               const std::map<std::string, std::string>&) override {
    infos_ = tensors;
    buffers_.assign(tensors.size(), {});
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].dtype != formats::DType::kF32) {
        return Status::InvalidArgument("combine: tensor '" + tensors[i].name + "' is not float32");
      }
      index_[tensors[i].name] = i;
    }
    return Status::OK();
  }
  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) override {
    std::vector<float>* buf;
    {
      std::lock_guard<std::mutex> lock(mu_);
      buf = &buffers_.at(index);
      if (buf->empty()) buf->resize(infos_[index].numel());
    }
    std::memcpy(reinterpret_cast<uint8_t*>(buf->data()) + offset, bytes.data(), bytes.size());
    return Status::OK();
  }
  Status Finish() override { return Status::OK(); }
  void Abort() override {}

  // The tensor's values (zeros when it was never written); frees them here.
  std::vector<float> Take(std::string_view name) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t i = index_.at(std::string(name));
    std::vector<float> out = std::move(buffers_[i]);
    if (out.empty()) out.assign(infos_[i].numel(), 0.0f);
    buffers_[i] = std::vector<float>();
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<formats::TensorInfo> infos_;
  std::vector<std::vector<float>> buffers_;
  std::map<std::string, size_t> index_;
};

std::string Exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// The rank-R factors of Σ w_i·s_i·B_i·A_i, exactly from the stacked factors.
Result<std::optional<ModuleFactors>> CombineLowRank(const Sources& s, const UnionModule& m,
                                                    size_t rank, LoraModuleSummary* summary) {
  // M = L·R with L = [B_1 … B_n] (out × Σr) and R = [w_1·s_1·A_1; …] (Σr × in).
  std::vector<ModuleFactors> parts;
  size_t k = 0;
  for (const auto& [i, d] : m.factors) {
    ALLOY_ASSIGN_OR_RETURN(ModuleFactors f, ReadScaledFactors(*s.adapters[i], *d));
    for (double& v : f.a) v *= s.weights[i];
    k += static_cast<size_t>(f.rank);
    parts.push_back(std::move(f));
  }
  const size_t out = static_cast<size_t>(parts[0].out);
  const size_t in = static_cast<size_t>(parts[0].in);
  std::vector<double> l(out * k), r;
  r.reserve(k * in);
  size_t col = 0;
  for (const ModuleFactors& f : parts) {
    const size_t fr = static_cast<size_t>(f.rank);
    for (size_t row = 0; row < out; ++row) {
      std::copy_n(f.b.begin() + static_cast<ptrdiff_t>(row * fr), fr,
                  l.begin() + static_cast<ptrdiff_t>(row * k + col));
    }
    r.insert(r.end(), f.a.begin(), f.a.end());
    col += fr;
  }
  const kernels::SvdFactors svd = kernels::LowRankSvd(l, out, r, k, in, rank);
  double total_sq = 0;
  for (double v : kernels::LowRankSingularValues(l, out, r, k, in)) total_sq += v * v;
  const size_t kept = KeptRank(svd.s, rank, 0.0);
  *summary = LoraModuleSummary{m.module, static_cast<int64_t>(kept), std::sqrt(total_sq),
                               KeptEnergy(svd.s, kept, total_sq)};
  if (kept == 0) return std::optional<ModuleFactors>();
  return std::optional<ModuleFactors>(SplitSvd(m.module, svd, kept, false, parts[0].embedding));
}

// ties / dare_* / magnitude_prune: the merge engine's method over the dense
// deltas D_i = s_i·B_i·A_i (each adapter applied to a zero model, weights
// w_i, `density`), each combined module factored as it is written.
Status CombineWithEngine(const Sources& s, const std::vector<UnionModule>& modules,
                         const CombineOptions& combine, const LoraBuildOptions& options,
                         std::vector<std::optional<ModuleFactors>>* factors,
                         std::vector<LoraModuleSummary>* summaries) {
  struct Target {
    size_t module = 0;  // into `modules`
    bool transposed = false;
    bool embedding = false;
  };
  std::vector<formats::TensorInfo> zeros;
  std::map<std::string, Target, std::less<>> targets;
  for (size_t j = 0; j < modules.size(); ++j) {
    if (modules[j].factors.empty()) continue;
    const LoraDelta& d = *modules[j].factors.front().second;
    const bool transposed = d.kind == LoraKind::kTransposed;
    const int64_t out = d.b->shape[0], in = d.a->shape[1];
    ALLOY_ASSIGN_OR_RETURN(formats::TensorInfo info,
                           formats::MakeTensorInfo(d.base_name, formats::DType::kF32,
                                                   transposed ? std::vector<int64_t>{in, out}
                                                              : std::vector<int64_t>{out, in}));
    zeros.push_back(std::move(info));
    targets[d.base_name] = Target{j, transposed, d.embedding};
  }
  // Models: "zero" and "adapter-<i>", opened from memory.
  std::map<std::string, std::unique_ptr<formats::TensorSource>> sources;
  sources["zero"] = std::make_unique<ZeroSource>("zero model", zeros);
  std::string recipe = "merge_method: " +
                       std::string(combine.method == "magnitude_prune" ? "ties" : combine.method) +
                       "\nbase_model: zero\ndtype: float32\n";
  if (combine.method == "magnitude_prune") recipe += "parameters:\n  normalize: false\n";
  recipe += "models:\n";
  for (size_t i = 0; i < s.adapters.size(); ++i) {
    ALLOY_ASSIGN_OR_RETURN(
        std::unique_ptr<LoraAdapter> adapter,
        LoraAdapter::Open(s.dirs[i], formats::FileAccess::kPread, options.symlinks));
    auto applied = ApplyLora(std::make_unique<ZeroSource>("zero model", zeros),
                             std::move(adapter), 1.0, /*apply_saved=*/false);
    if (!applied.ok()) return applied.status().WithContext("adapter '" + s.refs[i] + "'");
    const std::string name = "adapter-" + std::to_string(i);
    sources[name] = std::move(*applied);
    recipe += "  - model: " + name + "\n    parameters:\n      weight: " + Exact(s.weights[i]) +
              "\n      density: " + Exact(*combine.density) + "\n";
  }
  ALLOY_ASSIGN_OR_RETURN(RecipeFile file, ParseRecipeText(recipe, "lora combine"));
  ModelOpener opener = [&](const ModelRef& ref) -> Result<OpenedModel> {
    auto it = sources.find(ref.path);
    if (it == sources.end()) return Status::NotFound("no model '" + ref.path + "'");
    OpenedModel m;
    m.source = it->second.get();
    m.path = ref.path;
    m.identity = ref.path;
    return m;
  };
  ALLOY_ASSIGN_OR_RETURN(MergePlan plan,
                         PlanMerge(file.documents.at(0), PlanInputs{opener, "lora combine", true}));
  if (combine.method == "magnitude_prune") plan.method = "magnitude_prune";
  std::vector<formats::TensorSource*> ordered;
  for (const PlannedModel& pm : plan.models) ordered.push_back(sources.at(pm.ref.path).get());

  CaptureSink sink;
  ExecuteOptions exec;
  exec.seed = options.seed;
  exec.threads = options.threads;
  const size_t rank = static_cast<size_t>(combine.rank);
  size_t done = 0;
  exec.progress = [&](uint64_t, uint64_t, std::string_view tensor) {
    const Target& t = targets.at(std::string(tensor));
    const formats::TensorInfo& info = *sources.at("zero")->Find(tensor);
    const std::vector<float> m = sink.Take(tensor);
    double total_sq = 0;
    for (float v : m) total_sq += static_cast<double>(v) * static_cast<double>(v);
    const size_t rows = static_cast<size_t>(info.shape[0]);
    const size_t cols = static_cast<size_t>(info.shape[1]);
    kernels::SvdFactors svd;
    if (total_sq > 0) svd = TruncatedSvd(m, rows, cols, rank, options.seed);
    const size_t kept = KeptRank(svd.s, rank, 0.0);
    const std::string& module = modules[t.module].module;
    (*summaries)[t.module] = LoraModuleSummary{module, static_cast<int64_t>(kept),
                                               std::sqrt(total_sq),
                                               KeptEnergy(svd.s, kept, total_sq)};
    if (kept > 0) (*factors)[t.module] = SplitSvd(module, svd, kept, t.transposed, t.embedding);
    if (options.progress) options.progress(++done, targets.size(), module);
  };
  ALLOY_ASSIGN_OR_RETURN(MergeReport merged, ExecutePlan(plan, ordered, sink, exec));
  (void)merged;
  return Status::OK();
}

}  // namespace

Result<LoraBuildReport> CombineLora(const std::vector<std::string>& adapters,
                                    const std::vector<double>& weights,
                                    const CombineOptions& combine, const std::string& out_dir,
                                    const LoraBuildOptions& options) {
  const std::vector<std::string>& known = CombineMethods();
  if (std::find(known.begin(), known.end(), combine.method) == known.end()) {
    std::string list;
    for (const std::string& m : known) list += (list.empty() ? "" : ", ") + m;
    return Status::InvalidArgument("unknown --method '" + combine.method + "' (available: " +
                                   list + ")");
  }
  const bool dense = combine.method != "linear" && combine.method != "svd";
  if (combine.rank < 1) return Status::InvalidArgument("--rank must be at least 1");
  if (combine.density && !dense) {
    return Status::InvalidArgument("--density applies to ties, dare_* and magnitude_prune, not " +
                                   combine.method);
  }
  if (dense && !combine.density) {
    return Status::InvalidArgument("--method " + combine.method +
                                   " needs --density (the fraction of each delta kept)");
  }
  kernels::SetThreads(options.threads);
  ALLOY_ASSIGN_OR_RETURN(Gathered g, Gather(adapters, weights, out_dir, options));
  const Sources& s = g.sources;
  const std::vector<UnionModule>& modules = g.modules;
  LoraBuildReport& report = g.report;
  AdapterContents& contents = g.contents;
  const size_t rank = static_cast<size_t>(combine.rank);
  std::vector<std::optional<ModuleFactors>> factors(modules.size());
  std::vector<LoraModuleSummary> summaries(modules.size());
  if (dense) {
    ALLOY_RETURN_IF_ERROR(CombineWithEngine(s, modules, combine, options, &factors, &summaries));
  } else {
    size_t done = 0;
    for (size_t j = 0; j < modules.size(); ++j) {
      if (!modules[j].factors.empty()) {
        ALLOY_ASSIGN_OR_RETURN(factors[j], CombineLowRank(s, modules[j], rank, &summaries[j]));
      }
      if (options.progress) options.progress(++done, modules.size(), modules[j].module);
    }
  }
  for (size_t j = 0; j < modules.size(); ++j) {
    const UnionModule& m = modules[j];
    if (!m.factors.empty()) {
      if (factors[j]) {
        report.modules.push_back(summaries[j]);
        contents.modules.push_back(std::move(*factors[j]));
      } else {
        report.warnings.push_back("module '" + m.module +
                                  "': the combined delta is zero; it is left out");
      }
    }
    if (!m.biases.empty()) {
      ALLOY_ASSIGN_OR_RETURN(std::vector<double> bias, SumBiases(s, m));
      contents.biases.emplace_back(m.module, std::move(bias));
    }
  }
  std::string what = "A rank-" + std::to_string(rank) + " combination (`" + combine.method +
                     "`" + (combine.density ? ", density " + Num(*combine.density) : "") +
                     ") of " + std::to_string(adapters.size()) +
                     " LoRA adapters: per module, the best rank-" + std::to_string(rank) +
                     " factorization of the combined delta of w_i·s_i·B_i·A_i, with\n\n";
  for (size_t i = 0; i < adapters.size(); ++i) {
    what += "- `" + adapters[i] + "`, weight " + Num(s.weights[i]) + "\n";
  }
  return Write(out_dir, contents, options,
               AdapterCard("LoRA combination", contents.base_model, what, options.command),
               std::move(report));
}

namespace {

Result<std::vector<std::regex>> CompileAll(const std::vector<std::string>& patterns,
                                           const char* flag) {
  std::vector<std::regex> out;
  for (const std::string& p : patterns) {
    try {
      out.emplace_back(p, std::regex::optimize);
    } catch (const std::regex_error& e) {
      return Status::InvalidArgument(std::string(flag) + " '" + p + "' is not a valid regex: " +
                                     e.what());
    }
  }
  return out;
}

bool AnyMatch(const std::vector<std::regex>& res, const std::string& name) {
  for (const std::regex& re : res) {
    if (std::regex_search(name, re)) return true;
  }
  return false;
}

// Reads `info` of `src` whole as float32.
Status ReadF32(formats::TensorSource& src, const formats::TensorInfo& info,
               std::vector<uint8_t>* bytes, std::vector<float>* out) {
  bytes->resize(info.nbytes);
  ALLOY_RETURN_IF_ERROR(src.Read(info, 0, *bytes));
  out->resize(info.numel());
  DecodeToF32(info.dtype, *bytes, *out);
  src.Release(info);
  return Status::OK();
}

// Whether tensor `a` of `sa` and `b` of `sb` hold the same bytes (same dtype
// and shape), compared in chunks.
Result<bool> SameBytes(formats::TensorSource& sa, const formats::TensorInfo& a,
                       formats::TensorSource& sb, const formats::TensorInfo& b,
                       std::vector<uint8_t>* scratch) {
  if (a.dtype != b.dtype || a.nbytes != b.nbytes) return false;
  constexpr uint64_t kChunk = uint64_t{8} << 20;
  scratch->resize(static_cast<size_t>(2 * std::min(kChunk, a.nbytes)));
  for (uint64_t off = 0; off < a.nbytes; off += kChunk) {
    const size_t n = static_cast<size_t>(std::min(kChunk, a.nbytes - off));
    std::span<uint8_t> x(scratch->data(), n), y(scratch->data() + n, n);
    ALLOY_RETURN_IF_ERROR(sa.Read(a, off, x));
    ALLOY_RETURN_IF_ERROR(sb.Read(b, off, y));
    sa.Release(a, off, n);
    sb.Release(b, off, n);
    if (std::memcmp(x.data(), y.data(), n) != 0) return false;
  }
  return true;
}

}  // namespace

Result<LoraBuildReport> ExtractLora(const std::string& base_ref, const std::string& ft_ref,
                                    const ExtractOptions& extract, const std::string& out_dir,
                                    const LoraBuildOptions& options) {
  if (extract.rank < 1) return Status::InvalidArgument("--rank must be at least 1");
  if (!(extract.sv_epsilon >= 0)) return Status::InvalidArgument("--sv-epsilon must be ≥ 0");
  ALLOY_ASSIGN_OR_RETURN(const std::vector<std::regex> include,
                         CompileAll(extract.include, "--include"));
  ALLOY_ASSIGN_OR_RETURN(const std::vector<std::regex> exclude,
                         CompileAll(extract.exclude, "--exclude"));
  kernels::SetThreads(options.threads);
  LoraBuildReport report;
  ALLOY_ASSIGN_OR_RETURN(const std::string base_dir, formats::ResolveModelReference(base_ref));
  ALLOY_ASSIGN_OR_RETURN(const std::string ft_dir, formats::ResolveModelReference(ft_ref));
  ALLOY_RETURN_IF_ERROR(formats::CheckOutputOutsideInputs(out_dir, {base_dir, ft_dir}));
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::TensorSource> base,
                         OpenCheckpoint(base_dir, formats::FileAccess::kPread,
                                            &report.warnings, options.symlinks));
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::TensorSource> ft,
                         OpenCheckpoint(ft_dir, formats::FileAccess::kPread,
                                            &report.warnings, options.symlinks));
  AdapterContents contents;
  contents.dtype = options.dtype;
  contents.base_model = base_ref;
  const size_t rank = static_cast<size_t>(extract.rank);
  std::vector<uint8_t> bytes;
  std::vector<float> w_base, delta;
  size_t unchanged = 0, done = 0;
  std::vector<std::string> missing;
  const std::vector<formats::TensorInfo>& tensors = ft->tensors();
  for (const formats::TensorInfo& t : tensors) {
    const bool wanted = (include.empty() || AnyMatch(include, t.name)) && !AnyMatch(exclude, t.name);
    const formats::TensorInfo* b = base->Find(t.name);
    if (!wanted || !formats::IsConvertibleFloat(t.dtype)) {
      if (options.progress) options.progress(++done, tensors.size(), t.name);
      continue;
    }
    if (b == nullptr) {
      missing.push_back(t.name);
      if (options.progress) options.progress(++done, tensors.size(), t.name);
      continue;
    }
    if (b->shape != t.shape) {
      return Status::InvalidArgument(
          "tensor '" + t.name + "' is " + formats::ShapeString(t.shape) + " in " + ft_ref +
          " but " + formats::ShapeString(b->shape) + " in " + base_ref +
          ": an adapter cannot change a tensor's shape (a resized vocabulary needs the base "
          "resized first)");
    }
    const bool is_weight = t.name.size() > 7 && t.name.ends_with(".weight");
    const std::string module = is_weight ? t.name.substr(0, t.name.size() - 7) : t.name;
    const bool embed = plan_internal::IsEmbedName(t.name);
    const bool head = t.name.find("lm_head") != std::string::npos ||
                      t.name.find("embed_out") != std::string::npos;
    if (t.shape.size() != 2 || !is_weight || (embed && !extract.embed_lora)) {
      // Norms, biases, embeddings without --embed-lora, and tensors of other
      // ranks: stored whole (modules_to_save) when they differ.
      ALLOY_ASSIGN_OR_RETURN(const bool same, SameBytes(*ft, t, *base, *b, &bytes));
      if (same) {
        ++unchanged;
      } else {
        contents.saved.push_back(SavedTensor{t.name, ft.get(), &t});
      }
      if (options.progress) options.progress(++done, tensors.size(), t.name);
      continue;
    }
    ALLOY_RETURN_IF_ERROR(ReadF32(*ft, t, &bytes, &delta));
    ALLOY_RETURN_IF_ERROR(ReadF32(*base, *b, &bytes, &w_base));
    double total_sq = 0;
    for (size_t i = 0; i < delta.size(); ++i) {
      delta[i] -= w_base[i];
      total_sq += static_cast<double>(delta[i]) * static_cast<double>(delta[i]);
    }
    const size_t rows = static_cast<size_t>(t.shape[0]);
    const size_t cols = static_cast<size_t>(t.shape[1]);
    const size_t want = std::min({rank, rows, cols});
    kernels::SvdFactors svd;
    if (total_sq > 0) svd = TruncatedSvd(delta, rows, cols, want, options.seed);
    const size_t kept = KeptRank(svd.s, want, extract.sv_epsilon);
    if (kept == 0) {
      ++unchanged;
    } else {
      contents.modules.push_back(SplitSvd(module, svd, kept, embed && !head, embed && !head));
      report.modules.push_back(LoraModuleSummary{module, static_cast<int64_t>(kept),
                                                 std::sqrt(total_sq),
                                                 KeptEnergy(svd.s, kept, total_sq)});
    }
    if (options.progress) options.progress(++done, tensors.size(), t.name);
  }
  if (!missing.empty()) {
    report.warnings.push_back(std::to_string(missing.size()) + " tensor(s) of " + ft_ref +
                              " are not in " + base_ref + " and are left out (first: '" +
                              missing[0] + "')");
  }
  if (contents.modules.empty() && contents.saved.empty()) {
    return Status::InvalidArgument(ft_ref + " does not differ from " + base_ref +
                                   " in any tensor selected: there is nothing to extract");
  }
  // A bias saved whole next to its LoRA'd weight: make it lora_B.bias, since
  // PEFT saves modules, not single tensors.
  std::set<std::string> lora_modules;
  for (const ModuleFactors& m : contents.modules) lora_modules.insert(m.module);
  std::vector<SavedTensor> saved;
  for (const SavedTensor& st : contents.saved) {
    const bool bias = st.name.ends_with(".bias");
    const std::string module = bias ? st.name.substr(0, st.name.size() - 5) : "";
    if (bias && lora_modules.count(module) && st.info->shape.size() == 1) {
      std::vector<float> values;
      ALLOY_RETURN_IF_ERROR(ReadF32(*ft, *st.info, &bytes, &values));
      ALLOY_RETURN_IF_ERROR(ReadF32(*base, *base->Find(st.name), &bytes, &w_base));
      std::vector<double> d(values.size());
      for (size_t i = 0; i < d.size(); ++i) {
        d[i] = static_cast<double>(values[i] - w_base[i]);
      }
      contents.biases.emplace_back(module, std::move(d));
    } else {
      saved.push_back(st);
    }
  }
  contents.saved = std::move(saved);
  const std::string what =
      "A rank-" + std::to_string(rank) + " LoRA adapter extracted from `" + ft_ref +
      "` on `" + base_ref + "`: per 2-D weight, the best rank-" + std::to_string(rank) +
      " factors of W_ft − W_base (√σ on each side); " + std::to_string(contents.saved.size()) +
      " tensor(s) stored whole; " + std::to_string(unchanged) + " unchanged tensor(s) left out.";
  return Write(out_dir, contents, options,
               AdapterCard("Extracted LoRA", base_ref, what, options.command), std::move(report));
}

}  // namespace alloy::merge
