#include "merge/lora_source.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "kernels/lowrank.h"
#include "merge/codec.h"
#include "merge/lora_io.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::LoraDelta;
using formats::LoraKind;
using formats::Result;
using formats::Status;
using formats::TensorInfo;

// One delta as a product L·R in float64: L is rows × rank, R is rank × cols,
// both row-major, so element (i, j) of the base tensor changes by
// scale · Σ_k L[i][k]·R[k][j].
struct Factors {
  size_t rank = 0;
  size_t cols = 0;
  std::vector<double> l, r;
};

enum class Origin : uint8_t { kBase, kDelta, kReplaced };

struct Entry {
  Origin origin = Origin::kBase;
  const TensorInfo* base = nullptr;         // the base's tensor (kBase, kDelta)
  const LoraDelta* delta = nullptr;         // kDelta
  const TensorInfo* replacement = nullptr;  // kReplaced: the adapter's tensor
};

class LoraSource final : public formats::TensorSource {
 public:
  LoraSource(std::unique_ptr<formats::TensorSource> base,
             std::unique_ptr<formats::LoraAdapter> adapter, double scale_multiplier)
      : base_(std::move(base)), adapter_(std::move(adapter)), multiplier_(scale_multiplier) {
    name_ = base_->name() + "+" + adapter_->directory();
    files_ = base_->files();
    for (const std::string& f : adapter_->tensors().files()) files_.push_back(f);
  }

  Status Init(bool apply_saved) {
    const std::string& dir = adapter_->directory();
    std::map<std::string, Entry, std::less<>> by_name;
    for (const LoraDelta& d : adapter_->deltas()) {
      const TensorInfo* info = base_->Find(d.base_name);
      const std::string where = "LoRA adapter " + dir + ": module '" + d.module + "'";
      if (info == nullptr) {
        return Status::InvalidArgument(where + " changes tensor '" + d.base_name + "', which " +
                                       base_->name() + " does not have; is this adapter for "
                                       "another base model" +
                                       (adapter_->base_model().empty()
                                            ? std::string("?")
                                            : " (it was trained on " + adapter_->base_model() +
                                                  ")?"));
      }
      if (!formats::IsConvertibleFloat(info->dtype)) {
        return Status::InvalidArgument(where + ": base tensor '" + d.base_name + "' is " +
                                       std::string(formats::DTypeName(info->dtype)));
      }
      std::vector<int64_t> want;
      switch (d.kind) {
        case LoraKind::kLinear: want = {d.b->shape[0], d.a->shape[1]}; break;
        case LoraKind::kTransposed: want = {d.a->shape[1], d.b->shape[0]}; break;
        case LoraKind::kBias: want = {d.b->shape[0]}; break;
      }
      if (info->shape != want) {
        return Status::InvalidArgument(where + ": the factors make a delta of shape " +
                                       formats::ShapeString(want) + " but '" + d.base_name +
                                       "' in " + base_->name() + " is " +
                                       formats::ShapeString(info->shape));
      }
      by_name[d.base_name] = Entry{Origin::kDelta, info, &d, nullptr};
    }
    for (const auto& [name, repl] : adapter_->replacements()) {
      if (!apply_saved) break;
      const TensorInfo* info = base_->Find(name);
      const std::string where = "LoRA adapter " + dir + ": saved module tensor '" + name + "'";
      if (info == nullptr || info->shape != repl->shape) {
        return Status::InvalidArgument(
            where + (info == nullptr ? " has no counterpart in " + base_->name()
                                     : " is " + formats::ShapeString(repl->shape) + " but " +
                                           base_->name() + " has " +
                                           formats::ShapeString(info->shape)));
      }
      if (by_name.count(name)) {
        return Status::InvalidArgument(where + " also has LoRA factors");
      }
      by_name[name] = Entry{Origin::kReplaced, info, nullptr, repl};
    }
    for (const TensorInfo& info : base_->tensors()) {
      TensorInfo mine = info;
      Entry entry{Origin::kBase, &info, nullptr, nullptr};
      auto it = by_name.find(info.name);
      if (it != by_name.end()) entry = it->second;
      if (entry.origin == Origin::kReplaced) {
        mine.dtype = entry.replacement->dtype;
        mine.nbytes = entry.replacement->nbytes;
      }
      index_[info.name] = infos_.size();
      infos_.push_back(std::move(mine));
      entries_.push_back(entry);
    }
    return Status::OK();
  }

  const std::string& name() const override { return name_; }
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const TensorInfo* Find(std::string_view name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &infos_[it->second];
  }

  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    const Entry& e = EntryOf(info);
    if (e.origin == Origin::kBase) return base_->View(*e.base);
    if (e.origin == Origin::kReplaced) return adapter_->tensors().View(*e.replacement);
    return Status::Unsupported(name_ + ": tensor '" + info.name +
                               "' is computed from a LoRA adapter and has no bytes to map; "
                               "read it with Read");
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    const Entry& e = EntryOf(info);
    switch (e.origin) {
      case Origin::kBase: return base_->Read(*e.base, offset, out);
      case Origin::kReplaced: return adapter_->tensors().Read(*e.replacement, offset, out);
      case Origin::kDelta: return ReadDelta(e, offset, out);
    }
    return Status::OK();
  }

  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    const Entry& e = EntryOf(info);
    if (e.origin == Origin::kReplaced) {
      adapter_->tensors().Release(*e.replacement, offset, len);
    } else {
      base_->Release(*e.base, offset, len);
    }
  }

  const std::map<std::string, std::string>& metadata() const override { return base_->metadata(); }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  const Entry& EntryOf(const TensorInfo& info) const {
    auto it = index_.find(info.name);
    ALLOY_CHECK(it != index_.end() && "the TensorInfo came from this source");
    return entries_[it->second];
  }

  // Bytes [offset, offset + out.size()) of W + scale·L·R, rounded once to W's dtype.
  Status ReadDelta(const Entry& e, uint64_t offset, std::span<uint8_t> out) const {
    const TensorInfo& w = *e.base;
    const size_t elem = ElementBytes(w.dtype);
    if (offset % elem != 0 || out.size() % elem != 0) {
      return Status::InvalidArgument(name_ + ": read of [offset " + std::to_string(offset) + ", +" +
                                     std::to_string(out.size()) + ") of LoRA-applied tensor '" +
                                     w.name + "' does not cover whole elements");
    }
    ALLOY_RETURN_IF_ERROR(base_->Read(w, offset, out));
    ALLOY_ASSIGN_OR_RETURN(std::shared_ptr<const Factors> f, FactorsOf(*e.delta));
    const size_t n = out.size() / elem;
    thread_local std::vector<float> values, scratch;
    thread_local std::vector<double> result;
    if (values.size() < n) values.resize(n), scratch.resize(n), result.resize(n);
    DecodeToF32(w.dtype, out, std::span<float>(values.data(), n));
    const uint64_t first = offset / elem;
    const double scale = e.delta->scale * multiplier_;
    for (size_t done = 0; done < n;) {
      const uint64_t flat = first + done;
      const size_t row = static_cast<size_t>(flat / f->cols);
      const size_t col = static_cast<size_t>(flat % f->cols);
      if (col == 0 && n - done >= f->cols) {  // whole rows: several at a time
        const size_t rows = (n - done) / f->cols;
        kernels::LowRankRows(f->l.data() + row * f->rank, rows, f->rank, f->r.data(), f->cols,
                             f->cols, result.data() + done);
        done += rows * f->cols;
        continue;
      }
      const size_t len = std::min(f->cols - col, n - done);
      kernels::LowRankRow(std::span<const double>(f->l.data() + row * f->rank, f->rank),
                          f->r.data() + col, f->cols, std::span<double>(result.data() + done, len));
      done += len;
    }
    for (size_t j = 0; j < n; ++j) {
      result[j] = static_cast<double>(values[j]) + scale * result[j];
    }
    EncodeFromF64(w.dtype, std::span<const double>(result.data(), n), out,
                  std::span<float>(scratch.data(), n), kernels::Overflow::kToInf, nullptr);
    return Status::OK();
  }

  // The factors of `d` as L·R, from a small cache (the executor works on one
  // tensor at a time; a few entries cover a slice's inputs).
  Result<std::shared_ptr<const Factors>> FactorsOf(const LoraDelta& d) const {
    std::lock_guard<std::mutex> lock(factors_mu_);
    for (const auto& [key, f] : factors_) {
      if (key == &d) return f;
    }
    auto f = std::make_shared<Factors>();
    formats::TensorSource& src = adapter_->tensors();
    std::vector<double> a, b;
    ALLOY_RETURN_IF_ERROR(ReadTensorF64(src, *d.b, &b));
    if (d.kind == LoraKind::kBias) {
      f->rank = 1;
      f->cols = b.size();
      f->l = {1.0};
      f->r = std::move(b);
    } else {
      ALLOY_RETURN_IF_ERROR(ReadTensorF64(src, *d.a, &a));
      const size_t rank = static_cast<size_t>(d.rank);
      const size_t in = static_cast<size_t>(d.a->shape[1]);
      const size_t out = static_cast<size_t>(d.b->shape[0]);
      f->rank = rank;
      if (d.kind == LoraKind::kLinear) {  // W[out, in] += B·A
        f->cols = in;
        f->l = std::move(b);
        f->r = std::move(a);
      } else {  // W[in, out] += (B·A)ᵀ = Aᵀ·Bᵀ
        f->cols = out;
        f->l.resize(in * rank);
        f->r.resize(rank * out);
        for (size_t k = 0; k < rank; ++k) {
          for (size_t i = 0; i < in; ++i) f->l[i * rank + k] = a[k * in + i];
          for (size_t j = 0; j < out; ++j) f->r[k * out + j] = b[j * rank + k];
        }
      }
    }
    constexpr size_t kCached = 4;
    if (factors_.size() == kCached) factors_.pop_front();
    factors_.emplace_back(&d, f);
    return std::shared_ptr<const Factors>(f);
  }

  std::unique_ptr<formats::TensorSource> base_;
  std::unique_ptr<formats::LoraAdapter> adapter_;
  double multiplier_ = 1.0;
  std::string name_;
  std::vector<std::string> files_;
  std::vector<TensorInfo> infos_;
  std::vector<Entry> entries_;
  std::map<std::string, size_t, std::less<>> index_;
  mutable std::mutex factors_mu_;
  mutable std::deque<std::pair<const LoraDelta*, std::shared_ptr<const Factors>>> factors_;
};

}  // namespace

formats::Result<std::unique_ptr<formats::TensorSource>> ApplyLora(
    std::unique_ptr<formats::TensorSource> base, std::unique_ptr<formats::LoraAdapter> adapter,
    double scale_multiplier, bool apply_saved) {
  auto source =
      std::make_unique<LoraSource>(std::move(base), std::move(adapter), scale_multiplier);
  ALLOY_RETURN_IF_ERROR(source->Init(apply_saved));
  return std::unique_ptr<formats::TensorSource>(std::move(source));
}

}  // namespace alloy::merge
