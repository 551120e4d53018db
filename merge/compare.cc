#include "merge/compare.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <regex>
#include <set>

#include "formats/model_dir.h"
#include "formats/model_ref.h"
#include "kernels/blend.h"
#include "kernels/parallel.h"
#include "kernels/random.h"
#include "kernels/reduce.h"
#include "kernels/sketch.h"
#include "merge/codec.h"
#include "merge/gguf_model.h"
#include "merge/model_info.h"
#include "merge/scratch.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::Status;
using formats::TensorInfo;
using formats::TensorSource;

constexpr size_t kChunkElems = size_t{1} << 16;  // the unit of parallel work and of partials
constexpr size_t kTileElems = 2048;               // decoded tiles stay in L1/L2
constexpr double kTopFraction = 0.2;              // "top 20% of entries" (top20_mass)

// max that keeps a NaN (std::max drops one in its second argument), so a
// tensor holding NaN reports max |A − B| as undefined instead of a smaller
// finite value.
double MaxKeepNaN(double a, double b) {
  if (std::isnan(a)) return a;
  return std::isnan(b) || b > a ? b : a;
}


// Where each sum of a chunk lives in the flat per-chunk records.
struct Layout {
  size_t n_models = 0;
  size_t n_pairs = 0;
  bool base = false;
  // float64 sums (combined in chunk order)
  size_t sq = 0, ab = 0, dd = 0, base_sq = 0, tau_sq = 0, tau_ab = 0, n_doubles = 0;
  // integers and maxima (combined in any order)
  size_t same = 0, both = 0, opp = 0, multi = 0, mixed = 0, n_ints = 0;

  Layout(size_t models, size_t pairs, bool has_base) : n_models(models), n_pairs(pairs), base(has_base) {
    sq = 0;
    ab = sq + n_models;
    dd = ab + n_pairs;
    base_sq = dd + n_pairs;
    tau_sq = base_sq + 1;
    tau_ab = tau_sq + n_models;
    n_doubles = tau_ab + n_pairs;
    same = 0;
    both = same + n_pairs;
    opp = both + n_pairs;
    multi = opp + n_pairs;
    mixed = multi + 1;
    n_ints = mixed + 1;
  }
};

// Scratch of one worker, reused for every chunk of every tensor.
struct SlotBuffers {
  std::vector<std::vector<uint8_t>> raw;  // per input (models, then base)
  std::vector<std::vector<float>> f32;    // per input: one tile
  std::vector<std::vector<float>> tau;    // per model: one tile
  std::vector<uint64_t> hist_count;       // per model × kAbsBins
  std::vector<uint64_t> hist_low;
  std::vector<std::span<const float>> x;  // per input: the decoded tile
  std::vector<const float*> taus;         // per model: the task-vector tile
  bool hist_dirty = false;
};

std::string JoinLabels(const std::vector<std::string>& labels, const std::vector<size_t>& which) {
  std::string out;
  for (size_t i : which) out += (out.empty() ? "" : ", ") + labels[i];
  return out;
}

class Comparer {
 public:
  Comparer(const CompareOptions& options, std::vector<std::unique_ptr<TensorSource>> sources,
           CompareReport& report)
      : options_(options),
        sources_(std::move(sources)),
        report_(report),
        layout_(options.models.size(), report.pairs.size(), options.base.has_value()) {
    slots_.resize(static_cast<size_t>(std::max(1, kernels::Threads())));
  }

  size_t n_models() const { return layout_.n_models; }
  size_t n_inputs() const { return sources_.size(); }  // models, then the base

  Status Run() {
    ALLOY_ASSIGN_OR_RETURN(std::vector<std::vector<const TensorInfo*>> plan, Plan());
    uint64_t total = 0, done = 0;
    for (const auto& infos : plan) {
      for (const TensorInfo* info : infos) total += info->nbytes;
    }
    for (const auto& infos : plan) {
      TensorComparison cmp;
      cmp.name = infos[0]->name;
      cmp.layer = LayerIndexOf(cmp.name);
      cmp.kind = ModuleKindOf(cmp.name);
      cmp.shape = infos[0]->shape;
      for (const TensorInfo* info : infos) cmp.dtypes.push_back(info->dtype);
      ALLOY_RETURN_IF_ERROR(CompareTensor(infos, &cmp.sums));
      if (options_.rank > 0 && cmp.shape.size() == 2) {
        ALLOY_RETURN_IF_ERROR(Spectrum(infos, &cmp.sums));
      }
      for (size_t i = 0; i < infos.size(); ++i) {
        sources_[i]->Release(*infos[i]);
        done += infos[i]->nbytes;
      }
      report_.tensors.push_back(std::move(cmp));
      if (options_.progress) options_.progress(done, total, infos[0]->name);
    }
    report_.bytes_read = done;
    return Status::OK();
  }

 private:
  // The tensors to compare (per tensor: its info in every input), in the
  // first model's order; everything else becomes a mismatch.
  formats::Result<std::vector<std::vector<const TensorInfo*>>> Plan() {
    std::optional<std::regex> filter;
    if (!options_.tensor_regex.empty()) {
      try {
        filter.emplace(options_.tensor_regex, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        return Status::InvalidArgument("--tensors: '" + options_.tensor_regex +
                                       "' is not a valid regular expression (" + e.what() + ")");
      }
    }
    std::vector<std::string> labels = report_.labels;
    if (options_.base) labels.push_back("base");
    std::vector<std::vector<const TensorInfo*>> plan;
    std::set<std::string> seen;
    for (size_t s = 0; s < n_inputs(); ++s) {
      for (const TensorInfo& t : sources_[s]->tensors()) {
        if (!seen.insert(t.name).second) continue;
        if (filter && !std::regex_search(t.name, *filter)) continue;
        std::vector<const TensorInfo*> infos(n_inputs());
        TensorMismatch mismatch;
        mismatch.name = t.name;
        std::vector<size_t> present, absent;
        bool same_shape = true, decodable = true;
        for (size_t i = 0; i < n_inputs(); ++i) {
          infos[i] = sources_[i]->Find(t.name);
          mismatch.present.push_back(infos[i] != nullptr);
          mismatch.shapes.push_back(infos[i] ? infos[i]->shape : std::vector<int64_t>{});
          mismatch.dtypes.push_back(infos[i] ? std::string(formats::DTypeName(infos[i]->dtype)) : "");
          (infos[i] ? present : absent).push_back(i);
          if (infos[i] && infos[i]->shape != t.shape) same_shape = false;
          if (infos[i] && !(formats::IsConvertibleFloat(infos[i]->dtype) && CanDecode(infos[i]->dtype))) {
            decodable = false;
          }
        }
        if (!absent.empty()) {
          mismatch.reason = "only in " + JoinLabels(labels, present);
        } else if (!same_shape) {
          mismatch.reason = "shapes differ";
        } else if (!decodable) {
          mismatch.reason = "not a float dtype";
        } else {
          plan.push_back(std::move(infos));
          continue;
        }
        report_.mismatches.push_back(std::move(mismatch));
      }
    }
    if (plan.empty()) {
      return Status::InvalidArgument(
          filter ? "no tensor shared by every model matches --tensors '" + options_.tensor_regex + "'"
                 : "the models share no tensor with the same name and shape");
    }
    return plan;
  }

  // One streaming pass over a tensor: per-chunk sums, folded in chunk order
  // wave by wave.
  Status CompareTensor(const std::vector<const TensorInfo*>& infos, TensorSums* out) {
    const uint64_t numel = infos[0]->numel();
    const size_t n_chunks = static_cast<size_t>((numel + kChunkElems - 1) / kChunkElems);
    const Layout& lay = layout_;
    const size_t n_max = std::max<size_t>(lay.n_pairs, 1);
    // Partials are kept for one wave of chunks at a time and folded in chunk
    // order, so their memory does not grow with the tensor.
    const size_t wave = std::max<size_t>(options_.wave_chunks, 1);
    Grow(doubles_, wave * lay.n_doubles);
    Grow(ints_, wave * lay.n_ints);
    Grow(maxima_, wave * n_max);
    // Every worker's scratch is sized here, outside the parallel region (an
    // allocation failure there could not be reported).
    for (SlotBuffers& buf : slots_) SizeSlot(infos, buf);
    TensorSums& s = *out;
    s.numel = numel;
    s.n_tensors = 1;
    s.sq.assign(lay.n_models, 0.0);
    s.pairs.assign(lay.n_pairs, PairSums{});
    if (lay.base) {
      s.tau_sq.assign(lay.n_models, 0.0);
      s.tau_pairs.assign(lay.n_pairs, TaskPairSums{});
    }
    std::vector<Status> statuses(wave);
    for (size_t first = 0; first < n_chunks; first += wave) {
      const size_t len = std::min(wave, n_chunks - first);
      kernels::ParallelForChunks(len, 1, [&](size_t j, size_t, size_t) {
        SlotBuffers& buf = slots_[static_cast<size_t>(kernels::ThreadIndex())];
        statuses[j] = CompareChunk(infos, first + j, j, numel, buf);
      });
      for (size_t j = 0; j < len; ++j) ALLOY_RETURN_IF_ERROR(statuses[j]);
      for (size_t c = 0; c < len; ++c) {
        const double* d = &doubles_[c * lay.n_doubles];
        const uint64_t* n = &ints_[c * lay.n_ints];
        const double* mx = &maxima_[c * n_max];
        for (size_t i = 0; i < lay.n_models; ++i) s.sq[i] += d[lay.sq + i];
        for (size_t p = 0; p < lay.n_pairs; ++p) {
          s.pairs[p].dot += d[lay.ab + p];
          s.pairs[p].diff_sq += d[lay.dd + p];
          s.pairs[p].max_abs_diff = MaxKeepNaN(s.pairs[p].max_abs_diff, mx[p]);
          s.pairs[p].same_sign += n[lay.same + p];
        }
        if (!lay.base) continue;
        s.base_sq += d[lay.base_sq];
        for (size_t i = 0; i < lay.n_models; ++i) s.tau_sq[i] += d[lay.tau_sq + i];
        for (size_t p = 0; p < lay.n_pairs; ++p) {
          s.tau_pairs[p].dot += d[lay.tau_ab + p];
          s.tau_pairs[p].both_nonzero += n[lay.both + p];
          s.tau_pairs[p].opposite += n[lay.opp + p];
        }
        s.multi_nonzero += n[lay.multi];
        s.mixed_sign += n[lay.mixed];
      }
    }
    if (lay.base) TopMasses(&s);
    return Status::OK();
  }

  void SizeSlot(const std::vector<const TensorInfo*>& infos, SlotBuffers& buf) {
    const size_t n_in = n_inputs();
    if (buf.raw.size() < n_in) buf.raw.resize(n_in);
    if (buf.f32.size() < n_in) buf.f32.resize(n_in);
    if (buf.tau.size() < layout_.n_models) buf.tau.resize(layout_.n_models);
    buf.x.resize(n_in);
    buf.taus.resize(layout_.n_models);
    for (size_t i = 0; i < n_in; ++i) {
      Grow(buf.raw[i], kChunkElems * ElementBytes(infos[i]->dtype));
      Grow(buf.f32[i], kTileElems);
    }
    if (layout_.base) {
      for (size_t i = 0; i < layout_.n_models; ++i) Grow(buf.tau[i], kTileElems);
      Grow(buf.hist_count, layout_.n_models * kernels::kAbsBins);
      Grow(buf.hist_low, layout_.n_models * kernels::kAbsBins);
    }
  }

  // Chunk `chunk` of the tensor into partial slot `j` of the wave.
  Status CompareChunk(const std::vector<const TensorInfo*>& infos, size_t chunk, size_t j,
                      uint64_t numel, SlotBuffers& buf) {
    if (options_.cancel && options_.cancel->load(std::memory_order_relaxed)) {
      return Status::IoError("interrupted");
    }
    const Layout& lay = layout_;
    const uint64_t begin = static_cast<uint64_t>(chunk) * kChunkElems;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(numel - begin, kChunkElems));
    const size_t n_in = n_inputs();
    for (size_t i = 0; i < n_in; ++i) {
      const size_t elem = ElementBytes(infos[i]->dtype);
      ALLOY_RETURN_IF_ERROR(sources_[i]->Read(*infos[i], begin * elem,
                                              std::span<uint8_t>(buf.raw[i].data(), n * elem)));
    }
    if (lay.base) buf.hist_dirty = true;

    double* d = &doubles_[j * lay.n_doubles];
    uint64_t* cnt = &ints_[j * lay.n_ints];
    double* mx = &maxima_[j * std::max<size_t>(lay.n_pairs, 1)];
    std::fill(d, d + lay.n_doubles, 0.0);
    std::fill(cnt, cnt + lay.n_ints, uint64_t{0});
    std::fill(mx, mx + lay.n_pairs, 0.0);
    std::vector<const float*>& taus = buf.taus;
    std::vector<std::span<const float>>& x = buf.x;
    for (size_t t = 0; t < n; t += kTileElems) {
      const size_t len = std::min(kTileElems, n - t);
      for (size_t i = 0; i < n_in; ++i) {
        const size_t elem = ElementBytes(infos[i]->dtype);
        DecodeToF32(infos[i]->dtype, std::span<const uint8_t>(buf.raw[i].data() + t * elem, len * elem),
                    std::span<float>(buf.f32[i].data(), len));
        x[i] = std::span<const float>(buf.f32[i].data(), len);
      }
      if (lay.n_pairs == 0) d[lay.sq] += kernels::SumSquares(x[0]);
      for (size_t p = 0; p < lay.n_pairs; ++p) {
        const auto [a, b] = report_.pairs[p];
        const kernels::PairStats ps = kernels::ComparePair(x[a], x[b]);
        // Σx² of every model comes with the pairs (0, i), the first ones.
        if (a == 0) {
          if (b == 1) d[lay.sq] += ps.aa;
          d[lay.sq + b] += ps.bb;
        }
        d[lay.ab + p] += ps.ab;
        d[lay.dd + p] += ps.dd;
        mx[p] = MaxKeepNaN(mx[p], ps.max_abs_diff);
        cnt[lay.same + p] += ps.same_sign;
      }
      if (!lay.base) continue;
      const std::span<const float> base = x[lay.n_models];
      d[lay.base_sq] += kernels::SumSquares(base);
      for (size_t i = 0; i < lay.n_models; ++i) {
        const std::span<float> tau(buf.tau[i].data(), len);
        kernels::Subtract(x[i], base, tau);
        taus[i] = tau.data();
        d[lay.tau_sq + i] += kernels::SumSquares(tau);
        kernels::AddAbsHistogram(tau, &buf.hist_count[i * kernels::kAbsBins],
                                 &buf.hist_low[i * kernels::kAbsBins]);
      }
      for (size_t p = 0; p < lay.n_pairs; ++p) {
        const auto [a, b] = report_.pairs[p];
        const kernels::TaskPairStats ts = kernels::CompareTaskPair(
            std::span<const float>(taus[a], len), std::span<const float>(taus[b], len));
        d[lay.tau_ab + p] += ts.ab;
        cnt[lay.both + p] += ts.both_nonzero;
        cnt[lay.opp + p] += ts.opposite;
      }
      if (lay.n_models >= 3) kernels::CountMixedSigns(taus, len, &cnt[lay.multi], &cnt[lay.mixed]);
    }
    return Status::OK();
  }

  // Σ|τ| and its top-20% share from the workers' histograms (integer counts:
  // summing them in any order is exact), then clears them for the next tensor.
  void TopMasses(TensorSums* s) {
    const size_t bins = kernels::kAbsBins;
    std::vector<uint64_t>& count = merged_count_;
    std::vector<uint64_t>& low = merged_low_;
    Grow(count, bins);
    Grow(low, bins);
    s->tau_abs.assign(n_models(), 0.0);
    s->tau_top_abs.assign(n_models(), 0.0);
    for (size_t i = 0; i < n_models(); ++i) {
      std::fill(count.begin(), count.end(), uint64_t{0});
      std::fill(low.begin(), low.end(), uint64_t{0});
      for (SlotBuffers& buf : slots_) {
        if (!buf.hist_dirty) continue;
        for (size_t b = 0; b < bins; ++b) {
          count[b] += buf.hist_count[i * bins + b];
          low[b] += buf.hist_low[i * bins + b];
        }
      }
      const kernels::TopMass m = kernels::AbsTopMass(count.data(), low.data(), kTopFraction);
      s->tau_abs[i] = m.total;
      s->tau_top_abs[i] = m.top;
    }
    for (SlotBuffers& buf : slots_) {
      if (!buf.hist_dirty) continue;
      std::fill(buf.hist_count.begin(), buf.hist_count.end(), uint64_t{0});
      std::fill(buf.hist_low.begin(), buf.hist_low.end(), uint64_t{0});
      buf.hist_dirty = false;
    }
  }

  // The top-k spectrum of every model's task vector of a 2-D tensor: the
  // sketch's passes each stream the rows of model and base once more.
  Status Spectrum(const std::vector<const TensorInfo*>& infos, TensorSums* s) {
    const uint64_t rows = static_cast<uint64_t>(infos[0]->shape[0]);
    const uint64_t cols = static_cast<uint64_t>(infos[0]->shape[1]);
    if (rows == 0 || cols == 0) return Status::OK();
    const size_t block_rows = static_cast<size_t>(std::max<uint64_t>(1, kChunkElems / cols));
    const size_t base_index = n_models();
    std::vector<uint8_t> raw_x, raw_b;
    std::vector<float> x, b;
    s->rank.assign(n_models(), RankStats{});
    s->rank_count = 1;
    for (size_t i = 0; i < n_models(); ++i) {
      kernels::SketchOptions so;
      so.rank = static_cast<size_t>(options_.rank);
      so.seed = kernels::HashName(infos[0]->name) ^ (0x9e3779b97f4a7c15ull * (i + 1));
      kernels::RowSketch sketch(rows, cols, so);
      for (int pass = 0; pass < sketch.num_passes(); ++pass) {
        for (uint64_t r = 0; r < rows; r += block_rows) {
          if (options_.cancel && options_.cancel->load(std::memory_order_relaxed)) {
            return Status::IoError("interrupted");
          }
          const size_t nr = static_cast<size_t>(std::min<uint64_t>(block_rows, rows - r));
          const size_t n = nr * static_cast<size_t>(cols);
          ALLOY_RETURN_IF_ERROR(ReadRows(i, *infos[i], r * cols, n, raw_x, x));
          ALLOY_RETURN_IF_ERROR(ReadRows(base_index, *infos[base_index], r * cols, n, raw_b, b));
          kernels::Subtract(std::span<const float>(x.data(), n), std::span<const float>(b.data(), n),
                            std::span<float>(x.data(), n));
          sketch.AddRows(pass, r, nr, std::span<const float>(x.data(), n));
        }
        sketch.FinishPass(pass);
      }
      double sum = 0, sum_sq = 0;
      for (double sigma : sketch.SingularValues()) {
        sum += sigma;
        sum_sq += sigma * sigma;
      }
      const double fro = s->tau_sq[i];
      // A zero task vector (a frozen tensor) has rank 0, and its top k hold all of it.
      s->rank[i].effective_rank = fro > 0 ? sum * sum / fro : 0.0;
      s->rank[i].energy_top_k = fro > 0 ? std::min(1.0, sum_sq / fro) : 1.0;
    }
    return Status::OK();
  }

  Status ReadRows(size_t input, const TensorInfo& info, uint64_t first, size_t n,
                  std::vector<uint8_t>& raw, std::vector<float>& out) {
    const size_t elem = ElementBytes(info.dtype);
    Grow(raw, n * elem);
    Grow(out, n);
    ALLOY_RETURN_IF_ERROR(
        sources_[input]->Read(info, first * elem, std::span<uint8_t>(raw.data(), n * elem)));
    DecodeToF32(info.dtype, std::span<const uint8_t>(raw.data(), n * elem),
                std::span<float>(out.data(), n));
    return Status::OK();
  }

  const CompareOptions& options_;
  std::vector<std::unique_ptr<TensorSource>> sources_;
  CompareReport& report_;
  Layout layout_;
  std::vector<SlotBuffers> slots_;
  std::vector<double> doubles_;  // chunk × layout.n_doubles
  std::vector<uint64_t> ints_;   // chunk × layout.n_ints
  std::vector<double> maxima_;   // chunk × pairs
  std::vector<uint64_t> merged_count_, merged_low_;  // TopMasses scratch
};

}  // namespace

std::string_view ModuleKindName(ModuleKind kind) {
  switch (kind) {
    case ModuleKind::kEmbedding: return "embed";
    case ModuleKind::kAttnQ: return "q";
    case ModuleKind::kAttnK: return "k";
    case ModuleKind::kAttnV: return "v";
    case ModuleKind::kAttnO: return "o";
    case ModuleKind::kMlpGate: return "gate";
    case ModuleKind::kMlpUp: return "up";
    case ModuleKind::kMlpDown: return "down";
    case ModuleKind::kNorm: return "norm";
    case ModuleKind::kHead: return "head";
    case ModuleKind::kOther: return "other";
  }
  return "other";
}

ModuleKind ModuleKindOf(std::string_view name) {
  auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  // Norms first: "post_attention_layernorm" must not read as attention.
  if (has("norm") || has(".ln_") || has("ln_f.") || has("ln_1") || has("ln_2")) return ModuleKind::kNorm;
  if (has("embed_tokens") || has("wte.") || has("word_embeddings") || has("tok_embeddings")) {
    return ModuleKind::kEmbedding;
  }
  if (has("lm_head") || name == "output.weight") return ModuleKind::kHead;
  if (has("q_proj") || has(".wq.") || has("query")) return ModuleKind::kAttnQ;
  if (has("k_proj") || has(".wk.") || has(".key.")) return ModuleKind::kAttnK;
  if (has("v_proj") || has(".wv.") || has(".value.")) return ModuleKind::kAttnV;
  if (has("o_proj") || has(".wo.") || has("attn.c_proj") || has("attention.dense") ||
      has("out_proj")) {
    return ModuleKind::kAttnO;
  }
  if (has("gate_proj") || has(".w1.")) return ModuleKind::kMlpGate;
  if (has("up_proj") || has(".w3.") || has("c_fc") || has("dense_h_to_4h")) return ModuleKind::kMlpUp;
  if (has("down_proj") || has(".w2.") || has("mlp.c_proj") || has("dense_4h_to_h")) {
    return ModuleKind::kMlpDown;
  }
  return ModuleKind::kOther;
}

formats::Result<CompareReport> CompareModels(const CompareOptions& options) {
  const size_t n = options.models.size();
  if (n < 2 && !(n == 1 && options.base)) {
    return Status::InvalidArgument(
        "compare needs at least two models, or one model and --base BASE (got " +
        std::to_string(n) + ")");
  }
  if (n > 26) {
    return Status::InvalidArgument("compare takes at most 26 models (A to Z); got " +
                                   std::to_string(n));
  }
  if (options.rank < 0) return Status::InvalidArgument("--rank must be 0 (off) or positive");
  if (options.rank > 0 && !options.base) {
    return Status::InvalidArgument(
        "--rank analyses task vectors (model − base): give the base model with --base BASE");
  }
  CompareReport report;
  report.models = options.models;
  report.base = options.base;
  report.rank = options.rank;
  report.SetModels(n);
  report.metrics = CompareMetrics(n, options.base.has_value(), options.rank > 0);

  std::vector<std::string> refs = options.models;
  if (options.base) refs.push_back(*options.base);
  std::vector<std::unique_ptr<TensorSource>> sources;
  for (const std::string& ref : refs) {
    ALLOY_ASSIGN_OR_RETURN(std::string path, formats::ResolveModelReference(ref));
    ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<TensorSource> src,
                           OpenCheckpoint(path, formats::FileAccess::kPread, &report.warnings,
                                          options.symlinks));
    sources.push_back(std::move(src));
  }
  kernels::SetThreads(options.threads);
  Comparer comparer(options, std::move(sources), report);
  ALLOY_RETURN_IF_ERROR(comparer.Run());
  return report;
}

}  // namespace alloy::merge
