// The merge executor: streams a MergePlan into a TensorSink, one output
// tensor at a time, with memory bounded by chunk size × inputs × threads.
//
// For every output tensor the executor hands the method a TensorPass. A pass
// walks the tensor in fixed chunks (boundaries depend only on the tensor's
// shape, never on the thread count), reads each input's chunk with pread into
// reused buffers, decodes it to float32 and calls the method's callback. A
// method that needs whole-tensor statistics (a top-k threshold, an L1 norm)
// runs statistics passes first and an emitting pass last; nothing bigger than
// a chunk per input is ever held. Emitted values are float64 and are rounded
// once to the output dtype (mergekit-semantics.md Decision (a)).
//
// Determinism: callbacks run concurrently on different chunks. Methods keep
// floating partials per chunk (Chunk::index) and combine them in chunk order;
// integer counts may be combined in any order. Ordered passes additionally
// give each chunk the exclusive prefix sums, over all earlier chunks, of
// counters the method computes per chunk — what "the lowest flat indices
// among equal magnitudes" (Decision (f)) needs. Random draws are keyed by
// (seed, tensor name, model, element) (Decision (b)). Output is therefore
// bit-identical at any --threads.
//
// Thread safety: one RunMerge at a time per process (it sets the kernel
// thread count).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"
#include "formats/tensor_sink.h"
#include "formats/tensor_source.h"
#include "kernels/convert.h"
#include "merge/plan.h"

namespace alloy::merge {

// Default elements per chunk: the unit of parallel work and of per-chunk partials.
inline constexpr size_t kMergeChunkElems = size_t{1} << 16;

// One chunk of an output tensor, decoded.
struct Chunk {
  size_t index = 0;    // chunk number within the tensor
  uint64_t begin = 0;  // flat index of the first element
  size_t size = 0;     // elements in this chunk
  size_t slot = 0;     // in [0, TensorPass::num_slots()): no two concurrent calls share one
  std::span<const float* const> inputs;  // inputs[i][0..size): input i of PlannedTensor::inputs
};

using ScanFn = std::function<void(const Chunk&)>;
using EmitFn = std::function<void(const Chunk&, std::span<double> out)>;
using CountFn = std::function<void(const Chunk&, std::span<uint64_t> counters)>;
using OrderedScanFn = std::function<void(const Chunk&, std::span<const uint64_t> prefix)>;
using OrderedEmitFn =
    std::function<void(const Chunk&, std::span<const uint64_t> prefix, std::span<double> out)>;
using PartialFn = std::function<void(const Chunk&, std::span<double> partial)>;
using CombineFn = std::function<void(std::span<const double> partial)>;

class TensorPass {
 public:
  virtual ~TensorPass() = default;

  virtual const PlannedTensor& tensor() const = 0;
  uint64_t numel() const { return numel_; }
  size_t num_inputs() const { return tensor().inputs.size(); }
  // Index into inputs of the slice's base, or -1.
  int base_input() const { return base_input_; }
  uint64_t seed() const { return seed_; }
  uint64_t name_hash() const { return name_hash_; }  // kernels::HashName(output name)
  size_t num_slots() const { return num_slots_; }
  size_t chunk_elems() const { return chunk_elems_; }
  size_t num_chunks() const { return (numel_ + chunk_elems_ - 1) / chunk_elems_; }
  // The length of a row: the last dimension (1-D tensors are one row).
  uint64_t row_len() const;

  // Makes every chunk hold whole rows: chunk_elems becomes the largest
  // multiple of row_len() not above kMergeChunkElems (or one row when a row is
  // longer). Call before the first pass.
  void AlignChunksToRows();

  // Calls fn for every chunk, in parallel.
  virtual formats::Status Scan(const ScanFn& fn) = 0;
  // Same; fn fills out[0..size) and the values are rounded and written. Call
  // exactly once per tensor, as the last pass.
  virtual formats::Status Emit(const EmitFn& fn) = 0;
  // Emit for methods whose output element depends only on the inputs at that
  // element (and on Chunk::begin, for random keys): fn may be called on any
  // piece of a chunk, which lets the executor decode, blend and encode in
  // cache-sized tiles. Chunk::index and slot are the enclosing chunk's.
  virtual formats::Status EmitElementwise(const EmitFn& fn) = 0;
  // Ordered variants: count(chunk, counters) fills n_counters values for every
  // chunk; fn then receives, per counter, the sum over all earlier chunks.
  virtual formats::Status ScanOrdered(size_t n_counters, const CountFn& count,
                                      const OrderedScanFn& fn) = 0;
  virtual formats::Status EmitOrdered(size_t n_counters, const CountFn& count,
                                      const OrderedEmitFn& fn) = 0;
  // A floating reduction too large to keep per chunk (e.g. one sum per
  // column): fn fills a zeroed partial of `partial_size` values for each
  // chunk, in parallel; combine then receives the partials one at a time in
  // chunk order, so the result does not depend on the thread count. Memory:
  // num_slots() partials.
  virtual formats::Status ScanReduce(size_t partial_size, const PartialFn& fn,
                                     const CombineFn& combine) = 0;

 protected:
  uint64_t numel_ = 0;
  int base_input_ = -1;
  uint64_t seed_ = 0;
  uint64_t name_hash_ = 0;
  size_t num_slots_ = 1;
  size_t chunk_elems_ = kMergeChunkElems;
};

// A merge method: computes one output tensor through a TensorPass. One
// instance serves a whole merge (it may keep scratch across tensors) and is
// called from one thread at a time; its callbacks run in parallel.
class MergeMethod {
 public:
  virtual ~MergeMethod() = default;
  // Checks what needs no tensor data: parameter values against the tensor's
  // shape and inputs (kInvalidArgument naming the tensor and the model).
  // CheckPlan calls it for every tensor before anything is read or written,
  // so `alloy merge --dry-run` reports these errors too. Accepts by default.
  virtual formats::Status Check(const MergePlan& plan, const PlannedTensor& tensor) const;
  // True when the output tensor is inputs[0]'s bytes unchanged (same dtype
  // and shape, nothing computed): the executor then copies them without
  // decoding, and Merge is not called. False by default.
  virtual bool CopiesInput(const PlannedTensor& tensor) const;
  // Runs zero or more Scan passes, then exactly one Emit. Called only for
  // tensors Check accepted.
  virtual formats::Status Merge(TensorPass& pass) = 0;
};

// The implementation of `name` (a KnownMergeMethods() name), or
// kUnsupported for methods alloy does not have yet.
formats::Result<std::unique_ptr<MergeMethod>> MakeMergeMethod(std::string_view name);

// True when MakeMergeMethod(name) succeeds.
bool HasMergeMethod(std::string_view name);

// MakeMergeMethod(plan.method), then its Check for every merged tensor; the
// first error. ExecutePlan calls it before writing anything.
formats::Status CheckPlan(const MergePlan& plan);

// Called from the coordinating thread after each tensor.
using MergeProgressFn = std::function<void(uint64_t bytes_done, uint64_t bytes_total,
                                           std::string_view tensor)>;

struct ExecuteOptions {
  uint64_t seed = 0;
  int threads = 0;  // 0 = all cores; output does not depend on it
  MergeProgressFn progress;
  // When it becomes true, the merge stops at the next chunk with kIoError
  // "interrupted".
  const std::atomic<bool>* cancel = nullptr;
};

struct MergeReport {
  size_t n_tensors = 0;
  size_t n_copied = 0;       // copy_only tensors
  uint64_t bytes_read = 0;   // input bytes of one pass
  uint64_t bytes_written = 0;
  uint64_t n_overflow = 0;   // values that became ±inf in the output dtype
  uint64_t n_nan = 0;        // NaN outputs
  std::vector<std::string> warnings;
};

// The TensorInfo list a sink must Begin with for `plan` (names, out dtype,
// shapes, sizes), in plan order.
std::vector<formats::TensorInfo> PlannedOutputTensors(const MergePlan& plan);

// Streams every tensor of `plan` into `sink`: Begin, WriteAt..., but not
// Finish. sources[i] reads plan.models[i]. Fails with the sources' or sink's
// error, a method's kInvalidArgument, or kIoError "interrupted".
formats::Result<MergeReport> ExecutePlan(const MergePlan& plan,
                                         std::span<formats::TensorSource* const> sources,
                                         formats::TensorSink& sink, const ExecuteOptions& options);

}  // namespace alloy::merge
