// `alloy lora apply | concat | combine | extract` (cmd_lora.h).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cmd_lora.h"
#include "cli/exit_codes.h"
#include "cli/generated_recipe.h"
#include "cli/input_flags.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "formats/dtype.h"
#include "merge/lora_ops.h"
#include "merge/merge_job.h"

namespace alloy::cli {
namespace {

using formats::DType;
using formats::Status;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// --dtype for factors: float32 unless given; floats only.
formats::Result<DType> FactorDType(const std::string& text, DType fallback) {
  if (text.empty()) return fallback;
  std::optional<DType> d = formats::ParseUserDType(text);
  if (!d || (*d != DType::kF32 && *d != DType::kBF16 && *d != DType::kF16 &&
             *d != DType::kF64)) {
    return Status::InvalidArgument("--dtype '" + text +
                                   "' is not one of float32, bfloat16, float16, float64");
  }
  return *d;
}

formats::Result<merge::LoraBuildOptions> BuildOptions(const LoraCmdOptions& options) {
  merge::LoraBuildOptions b;
  ALLOY_ASSIGN_OR_RETURN(b.dtype, FactorDType(options.dtype, DType::kF32));
  b.overwrite = options.overwrite;
  b.command = options.command;
  b.threads = options.threads;
  b.seed = options.seed;
  b.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  return b;
}

// Runs `build` with a progress bar over modules, then prints the summary.
int RunBuild(const LoraCmdOptions& options, const char* label, std::ostream& out,
             std::ostream& err,
             const std::function<formats::Result<merge::LoraBuildReport>(
                 const merge::LoraBuildOptions&)>& build) {
  const auto start = std::chrono::steady_clock::now();
  formats::Result<merge::LoraBuildOptions> b = BuildOptions(options);
  if (!b.ok()) return ReportError(b.status(), err);
  ProgressBar bar(label, !options.quiet && !options.json, "modules");
  b->progress = [&](size_t done, size_t total, std::string_view module) {
    bar.Update(done, total, module);
  };
  formats::Result<merge::LoraBuildReport> report = build(*b);
  bar.Finish();
  if (!report.ok()) return ReportError(report.status(), err);
  ReportWarnings(report->warnings, err);
  const double secs = SecondsSince(start);
  if (options.json) {
    nlohmann::json modules = nlohmann::json::array();
    for (const merge::LoraModuleSummary& m : report->modules) {
      modules.push_back(
          {{"module", m.module}, {"rank", m.rank}, {"norm", m.norm}, {"kept_energy", m.kept}});
    }
    const nlohmann::json j = {{"output", report->output},
                              {"modules", modules},
                              {"modules_to_save", report->n_saved},
                              {"r", report->max_rank},
                              {"bytes", report->bytes},
                              {"warnings", report->warnings},
                              {"seconds", secs},
                              {"peak_rss_bytes", PeakRssBytes()}};
    out << j.dump(2) << "\n";
    return ToInt(ExitCode::kOk);
  }
  if (options.quiet) return ToInt(ExitCode::kOk);
  // The modules whose factors keep least of their delta, when not exact.
  std::vector<const merge::LoraModuleSummary*> lossy;
  for (const merge::LoraModuleSummary& m : report->modules) {
    if (m.kept < 0.9999) lossy.push_back(&m);
  }
  if (lossy.empty() && !report->modules.empty() && report->modules.front().norm > 0) {
    out << "the factors keep over 99.99% of every module's ‖ΔW‖²\n";
  }
  if (!lossy.empty()) {
    std::sort(lossy.begin(), lossy.end(),
              [](const auto* a, const auto* b) { return a->kept < b->kept; });
    double sum = 0;
    for (const auto* m : lossy) sum += m->kept;
    char line[160];
    std::snprintf(line, sizeof(line),
                  "share of ‖ΔW‖² the factors keep: mean %.4f over the %zu modules below 0.9999; "
                  "lowest:\n",
                  sum / static_cast<double>(lossy.size()), lossy.size());
    out << line;
    for (size_t i = 0; i < lossy.size() && i < 5; ++i) {
      std::snprintf(line, sizeof(line), "  %-48s rank %-5lld %.4f\n", lossy[i]->module.c_str(),
                    static_cast<long long>(lossy[i]->rank), lossy[i]->kept);
      out << line;
    }
  }
  out << "wrote " << report->output << ": " << report->n_modules << " LoRA modules (r = "
      << report->max_rank << "), " << report->n_saved << " saved whole, "
      << HumanBytes(static_cast<double>(report->bytes)) << " " << TimeAndMemory(secs) << "\n";
  return ToInt(ExitCode::kOk);
}

}  // namespace

int RunLoraApply(const LoraCmdOptions& options, std::ostream& out, std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  const std::string ref = options.apply_base + "+" + options.adapter;
  if (options.apply_base.find('+') != std::string::npos ||
      options.adapter.find('+') != std::string::npos) {
    return ReportError(Status::InvalidArgument("BASE and ADAPTER must not contain '+' (it "
                                               "separates a model from its adapter)"),
                       err);
  }
  if (!std::isfinite(options.scale)) {
    return ReportError(Status::InvalidArgument("--scale must be a finite number"), err);
  }
  formats::Result<ProbedModel> probed = ProbeModel(ref, SymlinkPolicyOf(options.follow_symlinks));
  if (!probed.ok()) return ReportError(probed.status(), err);
  formats::Result<DType> dtype = FactorDType(options.dtype, probed->dtype);
  if (!dtype.ok()) return ReportError(dtype.status(), err);
  const std::string recipe = "merge_method: passthrough\ndtype: " +
                             std::string(formats::DTypeTorchName(*dtype)) +
                             "\nmodels:\n  - model: " + YamlScalar(ref) + "\n";
  merge::MergeJobOptions job;
  job.overwrite = options.overwrite;
  job.execute.threads = options.threads;
  job.execute.cancel = InstallInterruptHandler();
  job.lora_scale = options.scale;
  job.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  ProgressBar bar("apply", !options.quiet && !options.json);
  job.execute.progress = [&](uint64_t done, uint64_t total, std::string_view tensor) {
    bar.Update(done, total, tensor);
  };
  std::vector<std::string> warnings_on_error;
  job.warnings_on_error = &warnings_on_error;
  auto report = merge::RunMergeText(recipe, "lora apply recipe", options.output, job);
  bar.Finish();
  if (!report.ok()) {
    return ReportFailure(report.status(), warnings_on_error, job.execute.cancel->load(), err);
  }
  ReportWarnings(report->warnings, err);
  const merge::DocumentReport& doc = report->documents.back();
  const double secs = SecondsSince(start);
  if (options.json) {
    const nlohmann::json j = {{"base", options.apply_base},
                              {"adapter", options.adapter},
                              {"output", doc.output},
                              {"scale", options.scale},
                              {"dtype", formats::DTypeTorchName(*dtype)},
                              {"tensors", doc.merge.n_tensors},
                              {"bytes_written", doc.merge.bytes_written},
                              {"files", doc.files},
                              {"warnings", report->warnings},
                              {"seconds", secs},
                              {"peak_rss_bytes", PeakRssBytes()}};
    out << j.dump(2) << "\n";
    return ToInt(ExitCode::kOk);
  }
  if (options.quiet) return ToInt(ExitCode::kOk);
  out << "wrote " << doc.merge.n_tensors << " tensors ("
      << HumanBytes(static_cast<double>(doc.merge.bytes_written)) << ") to " << doc.output << " "
      << TimeAndMemory(secs) << "\n";
  return ToInt(ExitCode::kOk);
}

int RunLoraConcat(const LoraCmdOptions& options, std::ostream& out, std::ostream& err) {
  return RunBuild(options, "concat", out, err, [&](const merge::LoraBuildOptions& b) {
    return merge::ConcatLora(options.adapters, options.weights, options.output, b);
  });
}

int RunLoraCombine(const LoraCmdOptions& options, std::ostream& out, std::ostream& err) {
  merge::CombineOptions combine;
  combine.method = options.method;
  combine.rank = options.rank;
  if (options.density >= 0) combine.density = options.density;
  return RunBuild(options, "combine", out, err, [&](const merge::LoraBuildOptions& b) {
    return merge::CombineLora(options.adapters, options.weights, combine, options.output, b);
  });
}

int RunLoraExtract(const LoraCmdOptions& options, std::ostream& out, std::ostream& err) {
  merge::ExtractOptions extract;
  extract.rank = options.rank;
  extract.sv_epsilon = options.sv_epsilon;
  extract.include = options.include;
  extract.exclude = options.exclude;
  extract.embed_lora = options.embed_lora;
  return RunBuild(options, "extract", out, err, [&](const merge::LoraBuildOptions& b) {
    return merge::ExtractLora(options.base, options.model, extract, options.output, b);
  });
}

}  // namespace alloy::cli
