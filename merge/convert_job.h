// ConvertModel: stream a checkpoint into another dtype, tensor by tensor.
//
// The first streaming job and the template for the merge executor: every
// tensor is read in fixed-size chunks (pread into reused per-thread buffers),
// converted, and written with pwrite at its final offset, so memory stays
// bounded by chunk size × threads whatever the model size. Floating tensors
// are converted; integer and bool tensors are copied unchanged. Output is
// bit-identical at any thread count.
//
// Thread safety: one job at a time per sink; internally parallel.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/dtype.h"
#include "formats/gguf.h"
#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_sink.h"
#include "formats/tensor_source.h"
#include "kernels/convert.h"

namespace alloy::merge {

// Called from the coordinating thread after each tensor.
using ProgressFn =
    std::function<void(uint64_t bytes_done, uint64_t bytes_total, std::string_view tensor)>;

struct ConvertOptions {
  formats::DType dtype = formats::DType::kBF16;  // target for floating tensors
  // When set, the target of each floating tensor (overrides `dtype`).
  std::function<formats::DType(const formats::TensorInfo&)> dtype_for;
  bool clamp_f16 = false;  // saturate at ±65504 instead of failing on overflow
  size_t chunk_elems = size_t{1} << 20;
  int threads = 0;  // worker threads (0 = all cores); output does not depend on it
  ProgressFn progress;
  // When set and it becomes true (e.g. from a SIGINT handler), the job stops
  // at the next chunk with kIoError "interrupted"; the sink then removes its
  // temporary output.
  const std::atomic<bool>* cancel = nullptr;
};

// A tensor whose values did not survive unchanged in range.
struct TensorIssue {
  std::string name;
  formats::DType from = formats::DType::kF32;
  formats::DType to = formats::DType::kF32;
  kernels::EncodeStats stats;
};

struct ConvertReport {
  size_t n_tensors = 0;
  size_t n_converted = 0;  // dtype changed
  size_t n_copied = 0;     // same dtype, or not a floating type
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t n_overflow = 0;
  uint64_t n_clamped = 0;
  uint64_t n_nan = 0;
  std::vector<TensorIssue> issues;  // in tensor order
};

// The output tensor list for converting `src` to options.dtype.
std::vector<formats::TensorInfo> PlanConvertTensors(const formats::TensorSource& src,
                                                    const ConvertOptions& options);

// Streams every tensor of `src` into `sink` (Begin, WriteAt..., but not
// Finish: the caller finishes after adding its files).
// Fails with kInvalidArgument when a finite value overflows f16 and clamping
// was not requested (the message names the tensor, the count and max |x|),
// or with the source's/sink's error.
formats::Result<ConvertReport> ConvertTensors(formats::TensorSource& src, formats::TensorSink& sink,
                                     const ConvertOptions& options);

struct ConvertModelOptions {
  ConvertOptions convert;
  // For an output path ending in .gguf: the stored type of 2-D tensors
  // (F32, F16, BF16, Q8_0 or Q4_0; 1-D tensors stay float32, as llama.cpp
  // writes them). Unset: convert.dtype.
  std::optional<formats::GgmlType> gguf_type;
  uint64_t max_shard_bytes = 0;  // 0 = default (5e9)
  bool overwrite = false;
  bool fsync = false;
  // Whether the input directory's files (weights, config.json, tokenizer and
  // other companion files) may be symlinks leading outside it.
  formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside;
};

// Resolves `in_ref` (path or hub id), converts its weights into a new HF
// directory `out_dir`, copies companion files and rewrites config.json's
// torch_dtype. The directory appears only when complete.
// GGUF both ways (merge/gguf_model.h): a GGUF input becomes an HF directory
// (llama/qwen2 names, Q/K un-permuted, config.json from the metadata; the
// vocabulary is not converted); an `out_dir` ending in .gguf is written as one
// GGUF file (from an HF llama/mistral/qwen2 model with its tokenizer, or from
// a GGUF file, re-typed).
formats::Result<ConvertReport> ConvertModel(const std::string& in_ref, const std::string& out_dir,
                                   const ConvertModelOptions& options,
                                   std::vector<std::string>* warnings);

// Human-readable f16 overflow / clamp summary of one issue.
std::string DescribeIssue(const TensorIssue& issue);

}  // namespace alloy::merge
