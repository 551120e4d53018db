// sce (mergekit-semantics.md §1.12). With the task vectors TV_i = X_i − B
// (float32) of the non-base inputs in recipe order (Decision c):
// 1. select_topk p < 1: var = population variance of the TV_i per element;
//    nz = #(var ≠ 0); k = int(nz·p); keep the k largest variances, among
//    equal ones the lowest flat indices (Decision f); p ≤ 0 or k = 0 keeps
//    nothing. TV_i ← TV_i·mask. p ≥ 1 masks nothing.
// 2. s_i = mean(TV_i²) over the tensor, normalised by Σs (1/n when Σs < 1e-6).
// 3. Unweighted sign election: maj = +1 where Σ_i TV_i ≥ 0, else −1;
//    M_i = (sign(TV_i) == maj), so zeros never agree.
// 4. out = B + Σ_i TV_i·s_i·M_i / max(Σ_i s_i·M_i, 1e-6).
//
// Streaming passes: with 0 < p < 1 one Scan counts nz, StreamSelector finds
// the k-th largest variance key (one or two Scans), an ordered Scan gathers
// the per-chunk Σ TV_i² partials (its counters give each chunk the cut-off
// ties of earlier chunks, which it records) and a plain Emit writes.
// Otherwise one Scan for s and one Emit. Variances, votes and sums are
// float64; s partials are kept per chunk and added in chunk order, so the
// output is identical at any thread count.
//
// Like mergekit, the masks are multiplied in: a NaN or inf delta poisons its
// element even when masked out or outvoted, and through s every element.
// k is computed as torch does, float32(nz)·float32(p) truncated (capped at nz).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/select.h"
#include "merge/methods/methods.h"
#include "merge/methods/stream_select.h"

namespace alloy::merge::methods {
namespace {

// Elements per block in the per-element loops: the float64 block arrays stay
// in L1 while each model's inputs are read sequentially.
constexpr size_t kBlock = 512;

enum class MaskMode : uint8_t { kAll, kNone, kTopK };

class Sce final : public MergeMethod {
 public:
  formats::Status Check(const MergePlan&, const PlannedTensor& t) const override {
    return RequireBase(t);
  }

  formats::Status Merge(TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    base_ = static_cast<size_t>(pass.base_input());
    others_ = NonBaseInputs(pass);
    if (others_.empty()) {  // mergekit: no task vectors → the base
      return pass.Emit([&](const Chunk& c, std::span<double> out) {
        const float* b = c.inputs[base_];
        for (size_t j = 0; j < c.size; ++j) out[j] = static_cast<double>(b[j]);
      });
    }
    const size_t slots = pass.num_slots();
    const size_t need = slots * pass.chunk_elems();
    if (keys_.size() < need) keys_.resize(need);
    if (mask_.size() < need) mask_.resize(need);
    chunk_elems_ = pass.chunk_elems();

    const double p = Param(t.params, "select_topk");
    mode_ = MaskMode::kAll;
    if (p <= 0) {
      mode_ = MaskMode::kNone;
    } else if (p < 1) {
      ALLOY_RETURN_IF_ERROR(ChooseCutoff(pass, p));
    }
    ALLOY_RETURN_IF_ERROR(ComputeWeights(pass));
    // A plain Emit: the s pass recorded every chunk's ties before it.
    return pass.Emit([&](const Chunk& c, std::span<double> out) {
      if (mode_ == MaskMode::kTopK) ComputeKeys(c, SlotKeys(c.slot));
      EmitChunk(c, out);
    });
  }

 private:
  uint32_t* SlotKeys(size_t slot) { return keys_.data() + slot * chunk_elems_; }
  float* SlotMask(size_t slot) { return mask_.data() + slot * chunk_elems_; }

  // keys[j] = kernels::MagnitudeKey(float32(population variance over models
  // of TV_i[j])): the variance's bit pattern, NaN the largest key.
  void ComputeKeys(const Chunk& c, uint32_t* keys) const {
    std::array<double, kBlock> mean, sq;
    std::array<float, kBlock> var;
    const double n = static_cast<double>(others_.size());
    for (size_t begin = 0; begin < c.size; begin += kBlock) {
      const size_t len = std::min(kBlock, c.size - begin);
      const float* b = c.inputs[base_] + begin;
      std::fill_n(mean.begin(), len, 0.0);
      std::fill_n(sq.begin(), len, 0.0);
      for (size_t i : others_) {
        const float* x = c.inputs[i] + begin;
        for (size_t j = 0; j < len; ++j) mean[j] += static_cast<double>(x[j] - b[j]);
      }
      for (size_t j = 0; j < len; ++j) mean[j] /= n;
      for (size_t i : others_) {
        const float* x = c.inputs[i] + begin;
        for (size_t j = 0; j < len; ++j) {
          const double d = static_cast<double>(x[j] - b[j]) - mean[j];
          sq[j] += d * d;
        }
      }
      for (size_t j = 0; j < len; ++j) var[j] = static_cast<float>(sq[j] / n);
      kernels::MagnitudeKeys(std::span<const float>(var.data(), len),
                             std::span<uint32_t>(keys + begin, len));
    }
  }

  // 0 < p < 1: counts nz, then finds the cut-off key and how many of the
  // elements equal to it are kept (the first ones in flat order).
  formats::Status ChooseCutoff(TensorPass& pass, double p) {
    nonzero_.assign(pass.num_slots(), 0);
    ALLOY_RETURN_IF_ERROR(pass.Scan([&](const Chunk& c) {
      uint32_t* keys = SlotKeys(c.slot);
      ComputeKeys(c, keys);
      uint64_t count = 0;
      for (size_t j = 0; j < c.size; ++j) count += keys[j] != 0;
      nonzero_[c.slot] += count;
    }));
    uint64_t nz = 0;
    for (uint64_t count : nonzero_) nz += count;
    // torch: count_nonzero(var) * select_topk is a float32 product.
    const float product = static_cast<float>(nz) * static_cast<float>(p);
    const uint64_t k = std::min(nz, static_cast<uint64_t>(product));
    if (k == 0) {
      mode_ = MaskMode::kNone;
      return formats::Status::OK();
    }
    const KeyQuery query{0, pass.numel() - k};
    ALLOY_ASSIGN_OR_RETURN(std::vector<KeyAnswer> answers,
                           selector_.Select(pass, 1, std::span<const KeyQuery>(&query, 1),
                                            [&](const Chunk& c, size_t, std::span<uint32_t> keys) {
                                              ComputeKeys(c, keys.data());
                                            }));
    const KeyAnswer& cut = answers[0];
    const uint64_t n_above = pass.numel() - cut.n_below - cut.n_equal;
    cutoff_ = cut.key;
    keep_equal_ = k - n_above;  // in [1, n_equal]
    mode_ = MaskMode::kTopK;
    return formats::Status::OK();
  }

  // Ordered-pass counter: the chunk's keys (cached in its slot for the body)
  // and how many equal the cut-off.
  void CountTies(const Chunk& c, std::span<uint64_t> counters) {
    uint32_t* keys = SlotKeys(c.slot);
    ComputeKeys(c, keys);
    uint64_t equal = 0;
    for (size_t j = 0; j < c.size; ++j) equal += keys[j] == cutoff_;
    tie_count_[c.index] = equal;
    counters[0] = equal;
  }

  // The 0/1 mask of chunk c in its slot. For kTopK the slot holds the
  // chunk's keys, and tie_prefix_/tie_count_ its ties (set by the s pass).
  const float* FillMask(const Chunk& c) {
    float* m = SlotMask(c.slot);
    if (mode_ != MaskMode::kTopK) {
      const float value = mode_ == MaskMode::kAll ? 1.0f : 0.0f;
      for (size_t j = 0; j < c.size; ++j) m[j] = value;
      return m;
    }
    const uint32_t* keys = SlotKeys(c.slot);
    const uint32_t cut = cutoff_;
    const uint64_t eq_before = tie_prefix_[c.index];
    uint64_t budget = keep_equal_ > eq_before ? keep_equal_ - eq_before : 0;
    if (budget == 0) {
      for (size_t j = 0; j < c.size; ++j) m[j] = keys[j] > cut ? 1.0f : 0.0f;
    } else if (budget >= tie_count_[c.index]) {
      for (size_t j = 0; j < c.size; ++j) m[j] = keys[j] >= cut ? 1.0f : 0.0f;
    } else {  // the chunk where the cut-off ties run out
      for (size_t j = 0; j < c.size; ++j) {
        bool keep = keys[j] > cut;
        if (keys[j] == cut && budget > 0) {
          keep = true;
          --budget;
        }
        m[j] = keep ? 1.0f : 0.0f;
      }
    }
    return m;
  }

  // s_i: per-chunk partials of Σ (TV_i·mask)², added in chunk order. For
  // kTopK this is the one ordered pass: it also records every chunk's ties
  // and the ties before it, for the Emit.
  formats::Status ComputeWeights(TensorPass& pass) {
    const size_t n = others_.size();
    partials_.assign(pass.num_chunks() * n, 0.0);
    auto body = [&](const Chunk& c) {
      const float* m = FillMask(c);
      const float* b = c.inputs[base_];
      for (size_t k = 0; k < n; ++k) {
        const float* x = c.inputs[others_[k]];
        // Eight fixed lanes break the add dependency chain; the lane layout
        // depends only on the chunk, so the sum is reproducible.
        std::array<double, 8> lanes{};
        size_t j = 0;
        for (; j + 8 <= c.size; j += 8) {
          for (size_t l = 0; l < 8; ++l) {
            const float tv = (x[j + l] - b[j + l]) * m[j + l];
            lanes[l] += static_cast<double>(tv * tv);
          }
        }
        for (; j < c.size; ++j) {
          const float tv = (x[j] - b[j]) * m[j];
          lanes[0] += static_cast<double>(tv * tv);
        }
        partials_[c.index * n + k] = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                                     ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
      }
    };
    if (mode_ == MaskMode::kTopK) {
      tie_count_.assign(pass.num_chunks(), 0);
      tie_prefix_.assign(pass.num_chunks(), 0);
      ALLOY_RETURN_IF_ERROR(pass.ScanOrdered(
          1, [&](const Chunk& c, std::span<uint64_t> counters) { CountTies(c, counters); },
          [&](const Chunk& c, std::span<const uint64_t> prefix) {
            tie_prefix_[c.index] = prefix[0];
            body(c);
          }));
    } else {
      ALLOY_RETURN_IF_ERROR(pass.Scan(body));
    }
    weights_.assign(n, 0.0);
    const double numel = static_cast<double>(pass.numel());
    double sum = 0;
    for (size_t k = 0; k < n; ++k) {
      double total = 0;
      for (size_t chunk = 0; chunk < pass.num_chunks(); ++chunk) total += partials_[chunk * n + k];
      weights_[k] = total / numel;
      sum += weights_[k];
    }
    for (size_t k = 0; k < n; ++k) {
      weights_[k] = std::fabs(sum) < 1e-6 ? 1.0 / static_cast<double>(n) : weights_[k] / sum;
    }
    return formats::Status::OK();
  }

  void EmitChunk(const Chunk& c, std::span<double> out) {
    const float* mask = FillMask(c);
    std::array<double, kBlock> vote, mixed, divisor;
    std::array<float, kBlock> majority;
    for (size_t begin = 0; begin < c.size; begin += kBlock) {
      const size_t len = std::min(kBlock, c.size - begin);
      const float* b = c.inputs[base_] + begin;
      const float* m = mask + begin;
      std::fill_n(vote.begin(), len, 0.0);
      std::fill_n(mixed.begin(), len, 0.0);
      std::fill_n(divisor.begin(), len, 0.0);
      for (size_t i : others_) {
        const float* x = c.inputs[i] + begin;
        for (size_t j = 0; j < len; ++j) vote[j] += static_cast<double>((x[j] - b[j]) * m[j]);
      }
      // A NaN vote elects −1, as torch's (sum >= 0)·2 − 1.
      for (size_t j = 0; j < len; ++j) majority[j] = vote[j] >= 0.0 ? 1.0f : -1.0f;
      for (size_t k = 0; k < others_.size(); ++k) {
        const float* x = c.inputs[others_[k]] + begin;
        const double s = weights_[k];
        const double s_disagree = s * 0.0;  // s·M with M = 0: 0, or NaN for a NaN s
        for (size_t j = 0; j < len; ++j) {
          const float tv = (x[j] - b[j]) * m[j];
          // sign(tv) == majority; a zero or NaN entry never agrees. tv is
          // multiplied by its weight even when that is 0, so a NaN or inf
          // entry still poisons its element, as in mergekit.
          const double weight = tv * majority[j] > 0.0f ? s : s_disagree;
          mixed[j] += static_cast<double>(tv) * weight;
          divisor[j] += weight;
        }
      }
      double* o = out.data() + begin;
      for (size_t j = 0; j < len; ++j) {
        // std::max keeps a NaN divisor, as torch's clamp does.
        o[j] = static_cast<double>(b[j]) + mixed[j] / std::max(divisor[j], 1e-6);
      }
    }
  }

  size_t base_ = 0;
  size_t chunk_elems_ = 0;
  std::vector<size_t> others_;
  MaskMode mode_ = MaskMode::kAll;
  uint32_t cutoff_ = 0;      // kTopK: the k-th largest variance key
  uint64_t keep_equal_ = 0;  // kTopK: elements equal to cutoff_ that are kept
  StreamSelector selector_;
  // Scratch reused across tensors (grow-only, or small).
  std::vector<uint32_t> keys_;        // [slot][chunk element]
  std::vector<float> mask_;           // [slot][chunk element]
  std::vector<uint64_t> tie_count_;   // [chunk]: keys equal to cutoff_
  std::vector<uint64_t> tie_prefix_;  // [chunk]: keys equal to cutoff_ in earlier chunks
  std::vector<uint64_t> nonzero_;     // [slot]
  std::vector<double> partials_;      // [chunk][model]
  std::vector<double> weights_;       // s_i, normalised
};

}  // namespace

std::unique_ptr<MergeMethod> MakeSce() { return std::make_unique<Sce>(); }

}  // namespace alloy::merge::methods
