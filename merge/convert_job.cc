#include "merge/convert_job.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/model_dir.h"
#include "formats/model_ref.h"
#include "formats/model_writer.h"
#include "formats/output_overlap.h"
#include "kernels/parallel.h"
#include "merge/codec.h"
#include "merge/fp8_model.h"
#include "merge/gguf_model.h"
#include "merge/scratch.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::Status;
using formats::TensorInfo;

// Per-thread scratch, allocated once and reused for every chunk of every
// tensor: fresh pages are expensive on this class of machine.
struct ChunkBuffers {
  std::vector<uint8_t> in;
  std::vector<uint8_t> out;
  std::vector<float> f32;
};
ChunkBuffers& ThreadBuffers() {
  thread_local ChunkBuffers buffers;
  return buffers;
}

void Accumulate(const kernels::EncodeStats& s, kernels::EncodeStats* into) {
  into->n_overflow += s.n_overflow;
  into->n_clamped += s.n_clamped;
  into->n_nan += s.n_nan;
  into->max_abs_finite = std::max(into->max_abs_finite, s.max_abs_finite);
}

DType TargetDType(const TensorInfo& info, const ConvertOptions& options) {
  if (formats::IsConvertibleFloat(info.dtype) && CanDecode(info.dtype)) {
    return options.dtype_for ? options.dtype_for(info) : options.dtype;
  }
  return info.dtype;
}

std::string FormatFloat(float x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", static_cast<double>(x));
  return buf;
}

// Converts one tensor chunk by chunk; chunks run in parallel.
Status ConvertOne(formats::TensorSource& src, formats::TensorSink& sink, size_t out_index,
                  const TensorInfo& in, DType to, const ConvertOptions& options,
                  kernels::EncodeStats* stats) {
  const uint64_t numel = in.numel();
  if (numel == 0) return Status::OK();
  const size_t in_elem = static_cast<size_t>(formats::DTypeBits(in.dtype)) / 8;
  const size_t out_elem = static_cast<size_t>(formats::DTypeBits(to)) / 8;
  const bool raw_copy = in.dtype == to;
  // Sub-byte or exotic types are copied as raw bytes: chunk over bytes.
  const size_t chunk = std::max<size_t>(options.chunk_elems, 1);
  const size_t n_units = raw_copy ? in.nbytes : numel;
  const size_t unit_in = raw_copy ? 1 : in_elem;
  const size_t unit_out = raw_copy ? 1 : out_elem;
  const size_t n_chunks = (n_units + chunk - 1) / chunk;
  std::vector<Status> statuses(n_chunks);
  std::vector<kernels::EncodeStats> chunk_stats(n_chunks);
  const kernels::Overflow overflow =
      options.clamp_f16 ? kernels::Overflow::kSaturate : kernels::Overflow::kToInf;

  kernels::ParallelForChunks(n_units, chunk, [&](size_t chunk_idx, size_t begin, size_t end) {
    ChunkBuffers& buf = ThreadBuffers();
    const size_t n = end - begin;
    Grow(buf.in, chunk * unit_in);
    std::span<uint8_t> in_bytes(buf.in.data(), n * unit_in);
    if (options.cancel && options.cancel->load(std::memory_order_relaxed)) {
      statuses[chunk_idx] = Status::IoError("interrupted");
      return;
    }
    Status st = src.Read(in, begin * unit_in, in_bytes);
    if (st.ok() && raw_copy) {
      st = sink.WriteAt(out_index, begin * unit_out, in_bytes);
    } else if (st.ok()) {
      Grow(buf.out, chunk * unit_out);
      Grow(buf.f32, chunk);
      std::span<uint8_t> out_bytes(buf.out.data(), n * unit_out);
      ConvertElements(in.dtype, to, in_bytes, out_bytes, std::span<float>(buf.f32.data(), n),
                      overflow, &chunk_stats[chunk_idx]);
      st = sink.WriteAt(out_index, begin * unit_out, out_bytes);
    }
    statuses[chunk_idx] = std::move(st);
  });
  for (Status& st : statuses) {
    if (!st.ok()) return st;
  }
  for (const auto& s : chunk_stats) Accumulate(s, stats);
  src.Release(in);
  return Status::OK();
}

// Sets torch_dtype (and transformers v5's dtype) in config.json and any nested
// sub-config that has one.
void SetConfigDType(nlohmann::json& node, std::string_view torch_name) {
  if (!node.is_object()) return;
  for (const char* key : {"torch_dtype", "dtype"}) {
    auto it = node.find(key);
    if (it != node.end() && it->is_string()) *it = std::string(torch_name);
  }
  for (auto& [key, value] : node.items()) {
    if (value.is_object()) SetConfigDType(value, torch_name);
  }
}

}  // namespace

std::vector<TensorInfo> PlanConvertTensors(const formats::TensorSource& src,
                                           const ConvertOptions& options) {
  std::vector<TensorInfo> out;
  out.reserve(src.tensors().size());
  for (const TensorInfo& in : src.tensors()) {
    TensorInfo t;
    t.name = in.name;
    t.dtype = TargetDType(in, options);
    t.shape = in.shape;
    t.nbytes = in.dtype == t.dtype ? in.nbytes
                                   : in.numel() * static_cast<uint64_t>(formats::DTypeBits(t.dtype)) / 8;
    out.push_back(std::move(t));
  }
  return out;
}

std::string DescribeIssue(const TensorIssue& issue) {
  std::string msg = "tensor '" + issue.name + "' (" + std::string(formats::DTypeName(issue.from)) +
                    " -> " + std::string(formats::DTypeName(issue.to)) + "):";
  if (issue.stats.n_overflow) msg += " " + std::to_string(issue.stats.n_overflow) + " overflowed to inf;";
  if (issue.stats.n_clamped) msg += " " + std::to_string(issue.stats.n_clamped) + " clamped;";
  if (issue.stats.n_nan) msg += " " + std::to_string(issue.stats.n_nan) + " NaN;";
  msg += " max |x| = " + FormatFloat(issue.stats.max_abs_finite);
  return msg;
}

formats::Result<ConvertReport> ConvertTensors(formats::TensorSource& src, formats::TensorSink& sink,
                                     const ConvertOptions& options) {
  if (!CanEncode(options.dtype)) {
    return Status::InvalidArgument("cannot convert to " +
                                   std::string(formats::DTypeName(options.dtype)));
  }
  kernels::SetThreads(options.threads);
  const std::vector<TensorInfo> plan = PlanConvertTensors(src, options);
  ALLOY_RETURN_IF_ERROR(sink.Begin(plan, src.metadata()));

  ConvertReport report;
  uint64_t total = 0;
  for (const TensorInfo& t : src.tensors()) total += t.nbytes;
  const std::vector<TensorInfo>& inputs = src.tensors();
  for (size_t tensor_idx = 0; tensor_idx < inputs.size(); ++tensor_idx) {
    const TensorInfo& in = inputs[tensor_idx];
    const DType to = plan[tensor_idx].dtype;
    kernels::EncodeStats stats;
    ALLOY_RETURN_IF_ERROR(ConvertOne(src, sink, tensor_idx, in, to, options, &stats));
    ++report.n_tensors;
    (in.dtype == to ? report.n_copied : report.n_converted) += 1;
    report.bytes_in += in.nbytes;
    report.bytes_out += plan[tensor_idx].nbytes;
    if (stats.n_overflow || stats.n_clamped || stats.n_nan) {
      TensorIssue issue{in.name, in.dtype, to, stats};
      if (stats.n_overflow && to == DType::kF16 && !options.clamp_f16) {
        return Status::InvalidArgument(
            DescribeIssue(issue) +
            ". f16 cannot hold values beyond ±65504: pass --clamp-f16 to saturate them, or "
            "convert to bf16/f32 instead");
      }
      report.n_overflow += stats.n_overflow;
      report.n_clamped += stats.n_clamped;
      report.n_nan += stats.n_nan;
      report.issues.push_back(std::move(issue));
    }
    if (options.progress) options.progress(report.bytes_in, total, in.name);
  }
  return report;
}

namespace {

bool EndsWithGguf(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

std::string StemOf(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  if (EndsWithGguf(base)) base.resize(base.size() - 5);
  return base;
}

// `src` (HF, or GGUF to re-type) into the GGUF file `out_path`.
formats::Result<ConvertReport> ConvertToGguf(std::unique_ptr<formats::TensorSource> src,
                                             const std::string& in_dir,
                                             const std::string& out_path,
                                             const ConvertModelOptions& options,
                                             std::vector<std::string>* warnings) {
  std::error_code ec;
  if (std::filesystem::exists(out_path, ec) && !options.overwrite) {
    return Status::InvalidArgument(out_path + " already exists (pass --overwrite to replace it)");
  }
  std::vector<formats::GgufKv> kvs;
  if (const formats::GgufHeader* h = GgufHeaderOf(*src)) {
    for (const formats::GgufKv& kv : h->kvs) {
      // Split keys describe the donor's files, and the layout alloy writes
      // (default alignment) replaces the donor's.
      if (kv.key.rfind("split.", 0) != 0 && kv.key != "general.alignment") kvs.push_back(kv);
    }
  } else {
    const std::string config_path = in_dir + "/config.json";
    if (!formats::IsRegularFile(config_path)) {
      return Status::InvalidArgument(in_dir + " has no config.json; converting to GGUF needs the "
                                              "model's configuration");
    }
    ALLOY_ASSIGN_OR_RETURN(std::string raw, formats::ReadSmallFile(config_path));
    ALLOY_ASSIGN_OR_RETURN(nlohmann::json config, formats::ParseStrictJson(raw, config_path));
    ALLOY_ASSIGN_OR_RETURN(kvs, GgufMetadataForHf(config, in_dir, StemOf(out_path), warnings));
    ALLOY_ASSIGN_OR_RETURN(src, HfAsGguf(std::move(src), config));
  }
  const formats::GgmlType type = options.gguf_type.value_or(
      formats::GgmlTypeOfDType(options.convert.dtype).value_or(formats::GgmlType::kF32));
  const bool quant = !formats::GgmlPlainDType(static_cast<uint32_t>(type));
  ConvertOptions convert = options.convert;
  convert.dtype = quant ? DType::kF32 : *formats::GgmlPlainDType(static_cast<uint32_t>(type));
  const DType matrix_dtype = convert.dtype;
  convert.dtype_for = [matrix_dtype](const TensorInfo& t) {
    return t.shape.size() >= 2 ? matrix_dtype : DType::kF32;
  };
  GgufSinkOptions sink_options;
  sink_options.kvs = std::move(kvs);
  sink_options.fsync = options.fsync;
  sink_options.type_for = [type, quant](const TensorInfo& t) {
    if (quant && t.dtype == DType::kF32 && t.shape.size() >= 2 && t.shape.back() % 32 == 0) {
      return type;
    }
    return formats::GgmlTypeOfDType(t.dtype).value_or(formats::GgmlType::kF32);
  };
  std::unique_ptr<formats::TensorSink> sink = MakeGgufSink(out_path, std::move(sink_options));
  ALLOY_ASSIGN_OR_RETURN(ConvertReport report, ConvertTensors(*src, *sink, convert));
  ALLOY_RETURN_IF_ERROR(sink->Finish());
  return report;
}

}  // namespace

formats::Result<ConvertReport> ConvertModel(const std::string& in_ref, const std::string& out_dir,
                                   const ConvertModelOptions& options,
                                   std::vector<std::string>* warnings) {
  ALLOY_ASSIGN_OR_RETURN(std::string in_path, formats::ResolveModelReference(in_ref));
  ALLOY_RETURN_IF_ERROR(formats::CheckOutputOutsideInputs(
      out_dir, {in_path.ends_with(".index.json") ? formats::ModelDirectoryOf(in_path) : in_path}));
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::TensorSource> src,
                         OpenCheckpoint(in_path, formats::FileAccess::kPread, warnings,
                                        options.symlinks));
  const std::string in_dir = formats::ModelDirectoryOf(in_path);
  // config.json and the tokenizer files are read, and the companions copied,
  // from the input's directory (not for a GGUF input, which carries its own).
  if (GgufHeaderOf(*src) == nullptr) {
    ALLOY_RETURN_IF_ERROR(formats::CheckFilesInsideDirectory(in_dir, formats::CompanionFileNames(),
                                                             options.symlinks));
  }
  if (EndsWithGguf(out_dir)) return ConvertToGguf(std::move(src), in_dir, out_dir, options, warnings);
  if (options.gguf_type && formats::GgmlPlainDType(static_cast<uint32_t>(*options.gguf_type)) ==
                               std::nullopt) {
    return Status::InvalidArgument("quantized types (q8_0, q4_0) are written only to GGUF: give an "
                                   "output path ending in .gguf");
  }

  // Read config.json before writing anything, so a malformed one fails early.
  std::string config_text;
  const std::string config_path = in_dir + "/config.json";
  if (const formats::GgufHeader* h = GgufHeaderOf(*src)) {
    nlohmann::json config = ConfigFromGguf(*h, *src);
    SetConfigDType(config, formats::DTypeTorchName(options.convert.dtype));
    config_text = config.dump(2) + "\n";
    ALLOY_ASSIGN_OR_RETURN(src, GgufAsHf(std::move(src)));
    if (warnings) {
      warnings->push_back("the GGUF vocabulary is not converted: copy tokenizer.json and "
                          "tokenizer_config.json from the original model into " + out_dir);
    }
  } else if (formats::IsRegularFile(config_path)) {
    ALLOY_ASSIGN_OR_RETURN(std::string raw, formats::ReadSmallFile(config_path));
    ALLOY_ASSIGN_OR_RETURN(nlohmann::json config, formats::ParseStrictJson(raw, config_path));
    SetConfigDType(config, formats::DTypeTorchName(options.convert.dtype));
    DropFp8QuantizationConfig(config);  // the weights are written dequantized
    config_text = config.dump(2) + "\n";
  }
  const bool copy_companions = GgufHeaderOf(*src) == nullptr;

  formats::ModelWriterOptions writer_options;
  if (options.max_shard_bytes) writer_options.max_shard_bytes = options.max_shard_bytes;
  writer_options.overwrite = options.overwrite;
  writer_options.fsync = options.fsync;
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::ModelDirWriter> sink,
                         formats::ModelDirWriter::Create(out_dir, writer_options));

  ALLOY_ASSIGN_OR_RETURN(ConvertReport report, ConvertTensors(*src, *sink, options.convert));
  for (const std::string& name : formats::ListCompanionFiles(in_dir)) {
    if (name == "config.json" || !copy_companions) continue;
    ALLOY_RETURN_IF_ERROR(sink->CopyFile(in_dir + "/" + name, name));
  }
  if (!config_text.empty()) ALLOY_RETURN_IF_ERROR(sink->AddFile("config.json", config_text));
  ALLOY_RETURN_IF_ERROR(sink->Finish());
  return report;
}

}  // namespace alloy::merge
