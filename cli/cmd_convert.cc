#include "cli/cmd_convert.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/input_flags.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "formats/gguf.h"
#include "formats/model_writer.h"
#include "merge/convert_job.h"

namespace alloy::cli {

using formats::DType;
using formats::Status;

CLI::App* SetupConvert(CLI::App& app, ConvertCmdOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Stream-convert a checkpoint to another dtype (bf16, f16, f32, f8_e4m3), or between "
      "Hugging Face and GGUF layouts");
  cmd->add_option("IN", options.input,
                  "Model directory, .safetensors / .bin / .gguf file, or hub id "
                  "org/name[@revision]")
      ->required();
  cmd->add_option("OUT", options.output,
                  "Output directory (written under a temporary name, renamed when complete), or "
                  "a file ending in .gguf")
      ->required();
  cmd->add_option("--dtype", options.dtype,
                  "Target dtype of floating tensors: bf16, f16, f32, f8_e4m3 (also f8_e5m2, f64); "
                  "for a .gguf output f32, f16, bf16, q8_0 or q4_0 (norms stay f32). Integer "
                  "tensors are copied unchanged")
      ->required();
  cmd->add_option("--out-shard-size", options.shard_size,
                  "Maximum bytes per output shard: 5B (= 5e9, the default), 500M, 2GB, 1GiB, ...")
      ->capture_default_str();
  cmd->add_flag("--clamp-f16", options.clamp_f16,
                "Saturate values beyond ±65504 when writing f16 (default: fail and name the tensor)");
  cmd->add_flag("--overwrite", options.overwrite, "Replace OUT if it exists and is not empty");
  cmd->add_flag("--fsync", options.fsync, "fsync every output file before renaming it into place");
  cmd->add_option("--threads", options.threads, "Worker threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", options.quiet, "No progress bar and no summary");
  cmd->add_flag("--json", options.json, "Print a JSON summary (tensors, bytes, seconds, peak RSS)");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  cmd->footer(
      "Examples:\n"
      "  alloy convert ./Llama-3.2-1B ./Llama-3.2-1B-f16 --dtype f16\n"
      "  alloy convert org/model@main ./model-f32 --dtype f32 --out-shard-size 2GB\n"
      "  alloy convert ./model ./model-fp8 --dtype f8_e4m3   # saturating, reports clamped values\n"
      "  alloy convert ./Llama-3.2-1B llama-1b-q8_0.gguf --dtype q8_0   # HF -> GGUF (llama, qwen2)\n"
      "  alloy convert llama-1b-q8_0.gguf ./llama-1b-hf --dtype bf16   # GGUF -> HF safetensors\n"
      "Companion files (config.json, tokenizer files, ...) are copied; config.json's torch_dtype\n"
      "is updated. Exit codes: 0 ok, 2 bad input (incl. f16 overflow), 3 I/O failure.");
  return cmd;
}

int RunConvert(const ConvertCmdOptions& options, std::ostream& out, std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  std::optional<DType> dtype = formats::ParseUserDType(options.dtype);
  std::optional<formats::GgmlType> gguf_type;
  if (!dtype) {
    gguf_type = formats::ParseGgmlTypeName(options.dtype);
    if (gguf_type == formats::GgmlType::kQ8_0 || gguf_type == formats::GgmlType::kQ4_0) {
      dtype = DType::kF32;
    } else {
      gguf_type.reset();
    }
  }
  if (!dtype || !formats::IsConvertibleFloat(*dtype)) {
    return ReportError(Status::InvalidArgument("--dtype '" + options.dtype +
                                               "' is not a target alloy can write; use bf16, "
                                               "f16, f32, f8_e4m3, f8_e5m2 or f64 (and q8_0 or "
                                               "q4_0 for a .gguf output)"),
                       err);
  }
  auto shard = formats::ParseByteSize(options.shard_size);
  if (!shard.ok()) return ReportError(shard.status().WithContext("--out-shard-size"), err);

  ProgressBar bar("convert", !options.quiet && !options.json);
  merge::ConvertModelOptions job;
  job.convert.dtype = *dtype;
  job.gguf_type = gguf_type;
  job.convert.clamp_f16 = options.clamp_f16;
  job.convert.threads = options.threads;
  job.convert.progress = [&bar](uint64_t done, uint64_t total, std::string_view tensor) {
    bar.Update(done, total, tensor);
  };
  job.convert.cancel = InstallInterruptHandler();
  job.max_shard_bytes = *shard;
  job.overwrite = options.overwrite;
  job.fsync = options.fsync;
  job.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  std::vector<std::string> warnings;
  auto report = merge::ConvertModel(options.input, options.output, job, &warnings);
  bar.Finish();
  for (const std::string& w : warnings) err << "alloy: warning: " << w << "\n";
  if (!report.ok() && job.convert.cancel->load()) {
    err << "alloy: interrupted; the partial output was removed\n";
    return ToInt(ExitCode::kInterrupted);
  }
  if (!report.ok()) return ReportError(report.status(), err);

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.json) {
    nlohmann::json issues = nlohmann::json::array();
    for (const merge::TensorIssue& issue : report->issues) {
      issues.push_back({{"tensor", issue.name},
                        {"overflowed", issue.stats.n_overflow},
                        {"clamped", issue.stats.n_clamped},
                        {"nan", issue.stats.n_nan},
                        {"max_abs", issue.stats.max_abs_finite}});
    }
    nlohmann::json j = {{"output", options.output},
                        {"dtype", std::string(formats::DTypeName(*dtype))},
                        {"tensors", report->n_tensors},
                        {"converted", report->n_converted},
                        {"copied", report->n_copied},
                        {"bytes_in", report->bytes_in},
                        {"bytes_out", report->bytes_out},
                        {"overflowed", report->n_overflow},
                        {"clamped", report->n_clamped},
                        {"nan", report->n_nan},
                        {"issues", issues},
                        {"seconds", secs},
                        {"peak_rss_bytes", PeakRssBytes()}};
    out << j.dump(2) << "\n";
  } else if (!options.quiet) {
    char rate[64];
    std::snprintf(rate, sizeof(rate), "%.2f s, %s/s", secs,
                  HumanBytes(static_cast<double>(report->bytes_in) / std::max(secs, 1e-9)).c_str());
    out << "converted " << report->n_tensors << " tensors (" << report->n_converted
        << " to " << formats::DTypeName(*dtype) << ", " << report->n_copied << " copied), "
        << HumanBytes(static_cast<double>(report->bytes_in)) << " -> "
        << HumanBytes(static_cast<double>(report->bytes_out)) << " in " << rate << "\n";
    for (const merge::TensorIssue& issue : report->issues) {
      out << "  note: " << merge::DescribeIssue(issue) << "\n";
    }
    out << "wrote " << options.output << "\n";
  }
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
