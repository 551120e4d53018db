#include "cli/cmd_merge.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/input_flags.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "formats/model_writer.h"
#include "merge/merge_job.h"

namespace alloy::cli {

using formats::Status;

CLI::App* SetupMerge(CLI::App& app, MergeCmdOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "merge", "Run a mergekit-compatible YAML recipe and write the merged model");
  cmd->add_option("RECIPE", options.recipe,
                  "Recipe file (mergekit-yaml; several `---` documents with `name:` run as "
                  "mergekit-multi)")
      ->required();
  cmd->add_option("OUT", options.output,
                  "Output directory (written under a temporary name, renamed when complete)")
      ->required();
  cmd->add_flag("--dry-run", options.dry_run,
                "Validate everything (files, tensor names, shapes, parameters, layer counts) and "
                "print the plan; write nothing");
  cmd->add_option("--path-map", options.path_map,
                  "FROM=TO: read model paths starting with FROM from TO instead (repeatable; "
                  "backslashes count as '/', so E:\\models=/data/models works)");
  cmd->add_option("--seed", options.seed,
                  "Seed of the random methods (DARE, DELLA); recorded in the model card")
      ->capture_default_str();
  cmd->add_option("--threads", options.threads,
                  "Worker threads (0 = all cores); the output is identical at any value")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--out-shard-size", options.shard_size,
                  "Maximum bytes per output shard: 5B (= 5e9, the default), 500M, 2GB, 1GiB, ...")
      ->capture_default_str();
  cmd->add_option("--intermediate-dir", options.intermediate_dir,
                  "Where named documents of a multi-document recipe are written "
                  "(default: OUT.intermediates)");
  cmd->add_flag("--no-lazy", options.no_lazy,
                "Re-run intermediates even when their output directory is already complete");
  cmd->add_flag("--allow-crimes", options.allow_crimes,
                "Allow merging models of different architectures");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  cmd->add_flag("--overwrite", options.overwrite, "Replace OUT if it exists and is not empty");
  cmd->add_flag("--fsync", options.fsync, "fsync every output file before renaming it into place");
  cmd->add_flag("-q,--quiet", options.quiet, "No progress bar and no summary");
  cmd->add_flag("--json", options.json,
                "Print a JSON summary (tensors, bytes, seconds, peak RSS, output files)");
  cmd->footer(
      "Examples:\n"
      "  alloy merge ties.yaml ./merged\n"
      "  alloy merge recipe.yaml ./out --dry-run        # plan and validate in well under a second\n"
      "  alloy merge dare.yaml ./out --seed 42 --threads 8\n"
      "  alloy merge published.yaml ./out --path-map 'E:\\models=/data/models'\n"
      "Methods: linear, task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs,\n"
      "breadcrumbs_ties, della, della_linear, sce, ram, ramplus_tl, slerp, nearswap,\n"
      "passthrough, nuslerp, multislerp, karcher, model_stock, arcee_fusion. See\n"
      "docs/merge.md and docs/recipes.md.\n"
      "Exit codes: 0 ok, 1 internal error, 2 bad recipe or input, 3 I/O failure, 130 interrupted.");
  return cmd;
}

int RunMerge(const MergeCmdOptions& options, std::ostream& out, std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  merge::MergeJobOptions job;
  for (const std::string& entry : options.path_map) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      return ReportError(Status::InvalidArgument("--path-map '" + entry +
                                                 "' must look like FROM=TO"),
                         err);
    }
    job.path_map.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  auto shard = formats::ParseByteSize(options.shard_size);
  if (!shard.ok()) return ReportError(shard.status().WithContext("--out-shard-size"), err);
  job.max_shard_bytes = *shard;
  job.intermediate_dir = options.intermediate_dir;
  job.overwrite = options.overwrite;
  job.fsync = options.fsync;
  job.dry_run = options.dry_run;
  job.allow_crimes = options.allow_crimes;
  job.lazy = !options.no_lazy;
  job.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  job.execute.seed = options.seed;
  job.execute.threads = options.threads;
  job.execute.cancel = InstallInterruptHandler();

  const bool show = !options.quiet && !options.json && !options.dry_run;
  std::unique_ptr<ProgressBar> bar;
  job.on_document = [&](const std::string& name, const merge::MergePlan& plan) {
    if (!show) return;
    bar = std::make_unique<ProgressBar>(name.empty() ? plan.method : name, true);
  };
  job.execute.progress = [&](uint64_t done, uint64_t total, std::string_view tensor) {
    if (bar) bar->Update(done, total, tensor);
  };
  std::vector<std::string> warnings_on_error;
  job.warnings_on_error = &warnings_on_error;
  auto report = merge::RunMergeFile(options.recipe, options.output, job);
  if (bar) bar->Finish();
  if (!report.ok()) {
    return ReportFailure(report.status(), warnings_on_error, job.execute.cancel->load(), err);
  }
  ReportWarnings(report->warnings, err);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.json) {
    nlohmann::json docs = nlohmann::json::array();
    for (const merge::DocumentReport& d : report->documents) {
      docs.push_back({{"name", d.name},
                      {"output", d.output},
                      {"method", d.method},
                      {"skipped", d.skipped},
                      {"planned", d.planned},
                      {"models", d.n_models},
                      {"tensors", options.dry_run ? d.planned_tensors : d.merge.n_tensors},
                      {"planned_bytes", d.planned_bytes},
                      {"bytes_read", d.merge.bytes_read},
                      {"bytes_written", d.merge.bytes_written},
                      {"files", d.files}});
    }
    nlohmann::json j = {{"output", options.output},
                        {"dry_run", options.dry_run},
                        {"seed", options.seed},
                        {"documents", docs},
                        {"warnings", report->warnings},
                        {"seconds", secs},
                        {"peak_rss_bytes", PeakRssBytes()}};
    if (!report->documents.empty()) {
      const merge::DocumentReport& last = report->documents.back();
      j["tensors"] = options.dry_run ? last.planned_tensors : last.merge.n_tensors;
      j["bytes_written"] = last.merge.bytes_written;
      j["files"] = last.files;
    }
    out << j.dump(2) << "\n";
    return ToInt(ExitCode::kOk);
  }
  if (options.quiet) return ToInt(ExitCode::kOk);
  for (const merge::DocumentReport& d : report->documents) {
    const std::string label = d.name.empty() ? "final merge" : "intermediate '" + d.name + "'";
    if (d.skipped) {
      out << label << ": " << d.output << " is already complete; skipped (--no-lazy re-runs it)\n";
      continue;
    }
    if (options.dry_run) {
      if (!d.planned) {
        out << label << ": planned at run time (it reads an intermediate that does not exist "
            << "yet)\n";
        continue;
      }
      out << label << " -> " << d.output << "\n" << d.plan_summary;
      if (!d.plan_summary.empty() && d.plan_summary.back() != '\n') out << "\n";
      continue;
    }
    out << label << ": merged " << d.merge.n_tensors << " tensors from " << d.n_models
        << " models with " << d.method << ", wrote "
        << HumanBytes(static_cast<double>(d.merge.bytes_written)) << " to " << d.output << "\n";
  }
  if (options.dry_run) {
    out << "dry run: the recipe is valid; nothing was written\n";
  } else {
    out << "done " << TimeAndMemory(secs) << "\n";
  }
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
