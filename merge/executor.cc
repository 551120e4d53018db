#include "merge/executor.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>

#include "kernels/parallel.h"
#include "kernels/random.h"
#include "merge/codec.h"
#include "merge/scratch.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::Status;
using formats::TensorInfo;

// Scratch of one slot, grown on demand and reused for every chunk of every
// tensor (fresh pages are expensive: performance-notes.md).
struct SlotBuffers {
  std::vector<std::vector<uint8_t>> raw;  // per input
  std::vector<uint8_t> cast;              // one tile in the input_cast dtype
  std::vector<std::vector<float>> f32;    // per input
  std::vector<const float*> inputs;
  std::vector<double> out;
  std::vector<float> narrow;
  std::vector<uint8_t> encoded;
};

// Per-merge state shared by every tensor's pass.
struct Shared {
  std::vector<SlotBuffers> slots;
  const std::atomic<bool>* cancel = nullptr;
  uint64_t seed = 0;
  std::vector<double> reduce;  // ScanReduce partials: slot × partial size
  std::optional<DType> input_cast;  // MergePlan::input_cast
};

class StreamingPass final : public TensorPass {
 public:
  StreamingPass(const PlannedTensor& tensor, size_t out_index,
                std::vector<formats::TensorSource*> sources, std::vector<const TensorInfo*> infos,
                formats::TensorSink& sink, Shared& shared)
      : tensor_(tensor),
        out_index_(out_index),
        sources_(std::move(sources)),
        infos_(std::move(infos)),
        sink_(sink),
        shared_(shared) {
    numel_ = 1;
    for (int64_t d : tensor.shape) numel_ *= static_cast<uint64_t>(d);
    for (size_t i = 0; i < tensor.inputs.size(); ++i) {
      if (tensor.inputs[i].is_base) base_input_ = static_cast<int>(i);
    }
    seed_ = shared.seed;
    name_hash_ = kernels::HashName(tensor.output_name);
    num_slots_ = shared.slots.size();
  }

  const PlannedTensor& tensor() const override { return tensor_; }

  Status Scan(const ScanFn& fn) override {
    return RunUnordered([&](const Chunk& c, SlotBuffers&) { fn(c); });
  }

  Status Emit(const EmitFn& fn) override {
    return RunUnordered([&](const Chunk& c, SlotBuffers& buf) { EmitChunk(c, buf, fn); });
  }

  Status EmitElementwise(const EmitFn& fn) override {
    return RunUnordered([&](const Chunk& c, SlotBuffers& buf) { EmitTiles(c, buf, fn); },
                        /*decode=*/false);
  }

  Status ScanOrdered(size_t n_counters, const CountFn& count, const OrderedScanFn& fn) override {
    return RunOrdered(n_counters, count, [&](const Chunk& c, std::span<const uint64_t> prefix,
                                             SlotBuffers&) { fn(c, prefix); });
  }

  Status ScanReduce(size_t partial_size, const PartialFn& fn, const CombineFn& combine) override {
    const size_t n_chunks = num_chunks();
    const size_t batch = num_slots_;
    std::vector<Status> statuses(batch);
    std::vector<double>& reduce = shared_.reduce;
    Grow(reduce, batch * partial_size);
    for (size_t first = 0; first < n_chunks; first += batch) {
      const size_t len = std::min(batch, n_chunks - first);
      kernels::ParallelForChunks(len, 1, [&](size_t j, size_t, size_t) {
        Chunk chunk;
        statuses[j] = Load(first + j, j, shared_.slots[j], &chunk);
        if (!statuses[j].ok()) return;
        const std::span<double> partial(reduce.data() + j * partial_size, partial_size);
        std::fill(partial.begin(), partial.end(), 0.0);
        fn(chunk, partial);
      });
      for (size_t j = 0; j < len; ++j) {
        if (!statuses[j].ok()) return statuses[j];
        combine(std::span<const double>(reduce.data() + j * partial_size, partial_size));
      }
    }
    return Status::OK();
  }

  Status EmitOrdered(size_t n_counters, const CountFn& count, const OrderedEmitFn& fn) override {
    return RunOrdered(n_counters, count,
                      [&](const Chunk& c, std::span<const uint64_t> prefix, SlotBuffers& buf) {
                        EmitChunk(c, buf, [&](const Chunk& cc, std::span<double> out) {
                          fn(cc, prefix, out);
                        });
                      });
  }

  const kernels::EncodeStats& encode_stats() const { return stats_; }
  bool emitted() const { return emitted_; }

 private:
  template <typename Body>
  Status RunUnordered(const Body& body, bool decode = true) {
    const size_t n_chunks = num_chunks();
    std::vector<Status> statuses(n_chunks);
    kernels::ParallelForChunks(n_chunks, 1, [&](size_t chunk_idx, size_t, size_t) {
      SlotBuffers& buf = shared_.slots[static_cast<size_t>(kernels::ThreadIndex())];
      Chunk chunk;
      statuses[chunk_idx] =
          Load(chunk_idx, static_cast<size_t>(kernels::ThreadIndex()), buf, &chunk, decode);
      if (statuses[chunk_idx].ok()) body(chunk, buf);
    });
    return FirstError(statuses);
  }

  template <typename Body>
  Status RunOrdered(size_t n_counters, const CountFn& count, const Body& body) {
    const size_t n_chunks = num_chunks();
    const size_t batch = num_slots_;
    std::vector<Status> statuses(batch);
    std::vector<Chunk> chunks(batch);
    std::vector<uint64_t> counters(batch * n_counters);
    std::vector<uint64_t> prefix(batch * n_counters);
    std::vector<uint64_t> running(n_counters, 0);
    for (size_t first = 0; first < n_chunks; first += batch) {
      const size_t len = std::min(batch, n_chunks - first);
      kernels::ParallelForChunks(len, 1, [&](size_t j, size_t, size_t) {
        statuses[j] = Load(first + j, j, shared_.slots[j], &chunks[j]);
        if (statuses[j].ok()) count(chunks[j], std::span<uint64_t>(&counters[j * n_counters], n_counters));
      });
      for (size_t j = 0; j < len; ++j) {
        if (!statuses[j].ok()) return statuses[j];
        for (size_t k = 0; k < n_counters; ++k) {
          prefix[j * n_counters + k] = running[k];
          running[k] += counters[j * n_counters + k];
        }
      }
      kernels::ParallelForChunks(len, 1, [&](size_t j, size_t, size_t) {
        body(chunks[j], std::span<const uint64_t>(&prefix[j * n_counters], n_counters),
             shared_.slots[j]);
      });
      if (write_error_set_.load()) break;
    }
    return WriteError();
  }

  Status FirstError(const std::vector<Status>& statuses) {
    for (const Status& st : statuses) {
      if (!st.ok()) return st;
    }
    return WriteError();
  }

  Status WriteError() {
    if (!write_error_set_.load()) return Status::OK();
    std::lock_guard<std::mutex> lock(mu_);
    return write_error_;
  }

  // Reads chunk `chunk_idx` of every input into `buf` and, when `decode`,
  // decodes it to float32 (else EmitTiles decodes it piece by piece).
  Status Load(size_t chunk_idx, size_t slot, SlotBuffers& buf, Chunk* chunk, bool decode = true) {
    if (shared_.cancel && shared_.cancel->load(std::memory_order_relaxed)) {
      return Status::IoError("interrupted");
    }
    const uint64_t begin = static_cast<uint64_t>(chunk_idx) * chunk_elems_;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(numel_ - begin, chunk_elems_));
    const size_t n_in = tensor_.inputs.size();
    if (buf.raw.size() < n_in) buf.raw.resize(n_in);
    if (buf.f32.size() < n_in) buf.f32.resize(n_in);
    buf.inputs.resize(n_in);
    for (size_t i = 0; i < n_in; ++i) {
      const PlannedInput& in = tensor_.inputs[i];
      const size_t elem = ElementBytes(in.input_dtype);
      Grow(buf.raw[i], chunk_elems_ * elem);
      Grow(buf.f32[i], chunk_elems_);
      std::span<uint8_t> bytes(buf.raw[i].data(), n * elem);
      ALLOY_RETURN_IF_ERROR(ReadInput(i, begin, bytes));
      if (decode) Decode(i, bytes, std::span<float>(buf.f32[i].data(), n), buf);
      buf.inputs[i] = buf.f32[i].data();
    }
    chunk->index = chunk_idx;
    chunk->begin = begin;
    chunk->size = n;
    chunk->slot = slot;
    chunk->inputs = std::span<const float* const>(buf.inputs.data(), n_in);
    return Status::OK();
  }

  // Input i's bytes as float32, rounded to the recipe's `dtype` when it is
  // another float dtype (mergekit casts inputs before merging).
  void Decode(size_t i, std::span<const uint8_t> bytes, std::span<float> out, SlotBuffers& buf) {
    const DType dtype = tensor_.inputs[i].input_dtype;
    DecodeToF32(dtype, bytes, out);
    const std::optional<DType>& cast = shared_.input_cast;
    if (!cast || *cast == dtype || *cast == DType::kF32 || *cast == DType::kF64) return;
    const size_t elem = ElementBytes(*cast);
    constexpr size_t kPiece = 4096;
    Grow(buf.cast, kPiece * elem);
    for (size_t done = 0; done < out.size(); done += kPiece) {
      const std::span<float> piece = out.subspan(done, std::min(kPiece, out.size() - done));
      const std::span<uint8_t> bytes_out(buf.cast.data(), piece.size() * elem);
      EncodeFromF32(*cast, piece, bytes_out, kernels::Overflow::kToInf, nullptr);
      DecodeToF32(*cast, bytes_out, piece);
    }
  }

  // Bytes of output elements [begin, begin + n) of input i. An input larger
  // than the output (an embedding with a bigger vocabulary) contributes its
  // top-left block, row by row.
  Status ReadInput(size_t i, uint64_t begin, std::span<uint8_t> bytes) {
    const PlannedInput& in = tensor_.inputs[i];
    const size_t elem = ElementBytes(in.input_dtype);
    const TensorInfo& info = *infos_[i];
    if (in.input_shape == tensor_.shape) {
      return sources_[i]->Read(info, begin * elem, bytes);
    }
    const uint64_t cols = static_cast<uint64_t>(tensor_.shape.back());
    const uint64_t in_cols = static_cast<uint64_t>(in.input_shape.back());
    const uint64_t n = bytes.size() / elem;
    uint64_t done = 0;
    while (done < n) {
      const uint64_t flat = begin + done;
      const uint64_t row = flat / cols, col = flat % cols;
      const uint64_t len = std::min(cols - col, n - done);
      ALLOY_RETURN_IF_ERROR(sources_[i]->Read(info, (row * in_cols + col) * elem,
                                              bytes.subspan(done * elem, len * elem)));
      done += len;
    }
    return Status::OK();
  }

  template <typename Fn>
  void EmitChunk(const Chunk& c, SlotBuffers& buf, const Fn& fn) {
    GrowOutput(buf);
    std::span<double> out(buf.out.data(), c.size);
    fn(c, out);
    kernels::EncodeStats stats;
    EncodePiece(buf, out, 0, &stats);
    WriteChunk(c, buf, stats);
  }

  // EmitChunk for an undecoded chunk, in tiles that stay in cache: decode
  // every input's tile, call fn on it, encode it; then write the chunk.
  void EmitTiles(const Chunk& c, SlotBuffers& buf, const EmitFn& fn) {
    constexpr size_t kTile = 1024;
    GrowOutput(buf);
    kernels::EncodeStats stats;
    Chunk piece = c;
    for (size_t t = 0; t < c.size; t += kTile) {
      const size_t len = std::min(kTile, c.size - t);
      for (size_t i = 0; i < tensor_.inputs.size(); ++i) {
        const DType dtype = tensor_.inputs[i].input_dtype;
        const size_t elem = ElementBytes(dtype);
        Decode(i, std::span<const uint8_t>(buf.raw[i].data() + t * elem, len * elem),
               std::span<float>(buf.f32[i].data(), len), buf);
      }
      piece.begin = c.begin + t;
      piece.size = len;
      std::span<double> out(buf.out.data(), len);
      fn(piece, out);
      EncodePiece(buf, out, t, &stats);
    }
    WriteChunk(c, buf, stats);
  }

  void GrowOutput(SlotBuffers& buf) {
    Grow(buf.out, chunk_elems_);
    Grow(buf.narrow, chunk_elems_);
    Grow(buf.encoded, chunk_elems_ * ElementBytes(tensor_.out_dtype));
  }

  // Rounds out (elements [first, first + out.size()) of the chunk) into buf.encoded.
  void EncodePiece(SlotBuffers& buf, std::span<const double> out, size_t first,
                   kernels::EncodeStats* stats) {
    const size_t out_elem = ElementBytes(tensor_.out_dtype);
    std::span<uint8_t> bytes(buf.encoded.data() + first * out_elem, out.size() * out_elem);
    EncodeFromF64(tensor_.out_dtype, out, bytes, std::span<float>(buf.narrow.data(), out.size()),
                  kernels::Overflow::kToInf, stats);
  }

  void WriteChunk(const Chunk& c, SlotBuffers& buf, const kernels::EncodeStats& stats) {
    const size_t out_elem = ElementBytes(tensor_.out_dtype);
    Status st = sink_.WriteAt(out_index_, c.begin * out_elem,
                              std::span<const uint8_t>(buf.encoded.data(), c.size * out_elem));
    std::lock_guard<std::mutex> lock(mu_);
    stats_.n_overflow += stats.n_overflow;
    stats_.n_nan += stats.n_nan;
    stats_.n_clamped += stats.n_clamped;
    emitted_ = true;
    if (!st.ok() && !write_error_set_.load()) {
      write_error_ = std::move(st);
      write_error_set_.store(true);
    }
  }

  const PlannedTensor& tensor_;
  size_t out_index_;
  std::vector<formats::TensorSource*> sources_;  // per input
  std::vector<const TensorInfo*> infos_;         // per input
  formats::TensorSink& sink_;
  Shared& shared_;
  std::mutex mu_;
  kernels::EncodeStats stats_;
  bool emitted_ = false;
  std::atomic<bool> write_error_set_{false};
  Status write_error_;
};

// Writes inputs[0]'s bytes unchanged (non-float tensors).
Status CopyTensor(formats::TensorSource& src, const TensorInfo& info,
                  formats::TensorSink& sink, size_t out_index, Shared& shared) {
  const uint64_t n = info.nbytes;
  const size_t chunk = kMergeChunkElems * 4;
  std::vector<Status> statuses((n + chunk - 1) / chunk);
  kernels::ParallelForChunks(n, chunk, [&](size_t idx, size_t begin, size_t end) {
    SlotBuffers& buf = shared.slots[static_cast<size_t>(kernels::ThreadIndex())];
    Grow(buf.encoded, chunk);
    std::span<uint8_t> bytes(buf.encoded.data(), end - begin);
    Status st = src.Read(info, begin, bytes);
    if (st.ok()) st = sink.WriteAt(out_index, begin, bytes);
    statuses[idx] = std::move(st);
  });
  for (Status& st : statuses) {
    if (!st.ok()) return st;
  }
  return Status::OK();
}

}  // namespace

uint64_t TensorPass::row_len() const {
  const PlannedTensor& t = tensor();
  if (t.shape.empty()) return 1;
  return std::max<uint64_t>(1, static_cast<uint64_t>(t.shape.back()));
}

void TensorPass::AlignChunksToRows() {
  const uint64_t row = row_len();
  chunk_elems_ = row >= kMergeChunkElems
                     ? static_cast<size_t>(row)
                     : static_cast<size_t>(kMergeChunkElems / row * row);
}

std::vector<TensorInfo> PlannedOutputTensors(const MergePlan& plan) {
  std::vector<TensorInfo> out;
  out.reserve(plan.tensors.size());
  for (const PlannedTensor& t : plan.tensors) {
    TensorInfo info;
    info.name = t.output_name;
    info.dtype = t.out_dtype;
    info.shape = t.shape;
    info.nbytes = t.nbytes;
    out.push_back(std::move(info));
  }
  return out;
}

formats::Result<MergeReport> ExecutePlan(const MergePlan& plan,
                                         std::span<formats::TensorSource* const> sources,
                                         formats::TensorSink& sink, const ExecuteOptions& options) {
  ALLOY_CHECK(sources.size() == plan.models.size());
  ALLOY_RETURN_IF_ERROR(CheckPlan(plan));
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<MergeMethod> method, MakeMergeMethod(plan.method));
  kernels::SetThreads(options.threads);
  Shared shared;
  shared.slots.resize(static_cast<size_t>(std::max(1, kernels::Threads())));
  shared.cancel = options.cancel;
  shared.seed = options.seed;
  if (plan.input_cast && formats::IsConvertibleFloat(*plan.input_cast)) {
    shared.input_cast = plan.input_cast;
  }

  ALLOY_RETURN_IF_ERROR(sink.Begin(PlannedOutputTensors(plan), {{"format", "pt"}}));
  MergeReport report;
  for (size_t idx = 0; idx < plan.tensors.size(); ++idx) {
    const PlannedTensor& t = plan.tensors[idx];
    std::vector<formats::TensorSource*> srcs;
    std::vector<const TensorInfo*> infos;
    for (const PlannedInput& in : t.inputs) {
      formats::TensorSource* src = sources[in.model_index];
      const TensorInfo* info = src->Find(in.input_name);
      if (info == nullptr) {
        return Status::NotFound("tensor '" + in.input_name + "' is missing from " + src->name());
      }
      srcs.push_back(src);
      infos.push_back(info);
      report.bytes_read += info->nbytes;
    }
    // A raw copy skips decoding, so it cannot apply the recipe's dtype rounding.
    const bool raw_copy = t.nbytes > 0 && method->CopiesInput(t) &&
                          (!shared.input_cast || *shared.input_cast == t.inputs[0].input_dtype);
    if (t.copy_only || raw_copy) {
      ALLOY_RETURN_IF_ERROR(CopyTensor(*srcs[0], *infos[0], sink, idx, shared));
      ++report.n_copied;
    } else if (t.nbytes > 0) {
      StreamingPass pass(t, idx, srcs, infos, sink, shared);
      Status st = method->Merge(pass);
      if (!st.ok()) return st;
      if (!pass.emitted()) {
        ALLOY_CHECK(false && "a merge method returned without emitting its tensor");
      }
      report.n_overflow += pass.encode_stats().n_overflow;
      report.n_nan += pass.encode_stats().n_nan;
    }
    for (size_t i = 0; i < srcs.size(); ++i) srcs[i]->Release(*infos[i]);
    ++report.n_tensors;
    report.bytes_written += t.nbytes;
    if (options.progress) options.progress(report.bytes_written, plan.total_bytes, t.output_name);
  }
  if (report.n_overflow) {
    report.warnings.push_back(std::to_string(report.n_overflow) + " output values overflowed to " +
                              "±inf in " + std::string(formats::DTypeName(plan.out_dtype)));
  }
  if (report.n_nan) {
    report.warnings.push_back(std::to_string(report.n_nan) + " output values are NaN");
  }
  return report;
}

}  // namespace alloy::merge
