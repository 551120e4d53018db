#include "cli/cmd_upscale.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <system_error>

#include "cli/exit_codes.h"
#include "cli/generated_recipe.h"
#include "cli/input_flags.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "merge/merge_job.h"
#include "merge/model_opener.h"
#include "merge/plan.h"
#include "merge/recipe.h"
#include "merge/recipe_model_ref.h"

namespace alloy::cli {

using formats::Status;

namespace {

constexpr const char* kRecipeName = "upscale recipe";  // stands for the file in messages

std::string Str(int64_t v) { return std::to_string(v); }

// "1 layer pair", "2 layer pairs".
std::string Pairs(int64_t k) { return Str(k) + (k == 1 ? " layer pair" : " layer pairs"); }

// "3" or "3-7": inclusive, for people.
std::string Span(int64_t begin, int64_t end) {
  return end - begin == 1 ? Str(begin) : Str(begin) + "-" + Str(end - 1);
}

// One `sources:` entry of the recipe.
void AddSource(std::string& y, const std::string& model, int64_t begin, int64_t end,
               const char* weight) {
  y += "      - model: " + model + "\n";
  y += "        layer_range: [" + Str(begin) + ", " + Str(end) + "]\n";
  if (weight != nullptr) y += "        parameters:\n          weight: " + std::string(weight) + "\n";
}

// The layer map printed with the summary.
std::string DescribeLayout(const std::string& model, const UpscaleLayout& l) {
  std::string s = "upscale " + model + ": " + Str(l.n) + " -> " + Str(l.layers) + " layers";
  s += l.blend ? " (" + Pairs(l.blend) + " blended)\n" : "\n";
  char line[256];
  auto row = [&](int64_t out_begin, int64_t out_end, const std::string& from) {
    std::snprintf(line, sizeof(line), "  layers %-9s <- %s\n", Span(out_begin, out_end).c_str(),
                  from.c_str());
    s += line;
  };
  const int64_t first_stack = l.first_end() - l.blend;  // copy 1 layers stacked as they are
  const std::string first_note =
      " (copy 1" + (l.drop_first ? ", without its last " + Str(l.drop_first) : "") + ")";
  const std::string second_note =
      " (copy 2" + (l.drop_second ? ", without its first " + Str(l.drop_second) : "") + ")";
  if (first_stack > 0) row(0, first_stack, "layers " + Span(0, first_stack) + first_note);
  if (l.blend) {
    row(first_stack, first_stack + l.blend,
        "0.5 x layers " + Span(first_stack, l.first_end()) + " + 0.5 x layers " +
            Span(l.second_begin(), l.second_begin() + l.blend) + " (blended seam)");
  }
  const int64_t second_from = l.second_begin() + l.blend;
  if (second_from < l.n) {
    const int64_t out_begin = first_stack + l.blend;
    row(out_begin, out_begin + l.n - second_from, "layers " + Span(second_from, l.n) + second_note);
  }
  return s;
}

// A name for the seam document that differs from the model reference.
std::string SeamName(const std::string& model) {
  std::string name = "upscale-seam";
  while (name == model) name += "-2";
  return name;
}

}  // namespace

formats::Result<UpscaleLayout> ComputeUpscaleLayout(int64_t n, int64_t layers,
                                                    std::optional<int64_t> blend) {
  if (n <= 0) {
    return Status::InvalidArgument("the model has no decoder layers (num_hidden_layers is " +
                                   Str(n) + "); there is nothing to up-scale");
  }
  const int64_t k = blend.value_or(0);
  if (blend && k < 1) {
    return Status::InvalidArgument("--blend " + Str(k) +
                                   " must be at least 1 (the number of layer pairs averaged at "
                                   "the seam); leave it out to stack the copies");
  }
  if (k > n - 1) {
    return Status::InvalidArgument("--blend " + Str(k) + " is too large for a model of " + Str(n) +
                                   " layers: at most " + Str(n - 1) +
                                   " seam pairs can be blended while still adding layers");
  }
  const int64_t max_layers = 2 * n - k;
  const std::string range = "; possible values are " + Str(n + 1) + " to " + Str(max_layers);
  if (layers <= n) {
    return Status::InvalidArgument("--layers " + Str(layers) +
                                   " is not more than the model's " + Str(n) +
                                   " layers" + range);
  }
  if (layers > max_layers) {
    const std::string cap =
        k ? "2 × " + Str(n) + " - " + Str(k) + " = " + Str(max_layers) +
                " layers (two full copies minus the " + Str(k) + " blended pairs)"
          : "2 × " + Str(n) + " layers (two full copies)";
    return Status::InvalidArgument("--layers " + Str(layers) + " is more than " + cap + range);
  }
  UpscaleLayout layout;
  layout.n = n;
  layout.layers = layers;
  layout.blend = k;
  const int64_t dropped = 2 * n - layers - k;
  layout.drop_first = (dropped + 1) / 2;
  layout.drop_second = dropped / 2;
  return layout;
}

std::string UpscaleRecipe(const std::string& model, const UpscaleLayout& l, formats::DType dtype,
                          const std::string& seam_name) {
  const std::string m = YamlScalar(model);
  const std::string dtype_line = "dtype: " + std::string(formats::DTypeTorchName(dtype)) + "\n";
  std::string y = "# alloy upscale: depthwise up-scaling (SOLAR) of " + model + ", " + Str(l.n) +
                  " -> " + Str(l.layers) + " layers.\n";
  y += "# Copy 1 keeps layers [0, " + Str(l.first_end()) + "), copy 2 keeps [" +
       Str(l.second_begin()) + ", " + Str(l.n) + ")";
  if (l.blend == 0) {
    y += ".\n";
    y += "merge_method: passthrough\n" + dtype_line + "slices:\n";
    y += "  - sources:\n";
    AddSource(y, m, 0, l.first_end(), nullptr);
    y += "  - sources:\n";
    AddSource(y, m, l.second_begin(), l.n, nullptr);
    return y;
  }
  const int64_t first_stack = l.first_end() - l.blend;
  y += "; the " + Pairs(l.blend) + " at the seam " + (l.blend == 1 ? "is" : "are") +
       " averaged.\n";
  y += "# `" + seam_name + "` holds copy 2's seam layers: a slice reads a model only once\n";
  y += "# (a second source of the same model is ignored), so the seam is a model of its own.\n";
  y += "name: " + seam_name + "\n";
  y += "merge_method: passthrough\n" + dtype_line + "slices:\n";
  y += "  - sources:\n";
  AddSource(y, m, l.second_begin(), l.second_begin() + l.blend, nullptr);
  y += "---\n";
  y += "merge_method: linear\n" + dtype_line + "slices:\n";
  if (first_stack > 0) {
    y += "  - sources:\n";
    AddSource(y, m, 0, first_stack, "1");
  }
  for (int64_t i = 0; i < l.blend; ++i) {
    y += "  - sources:\n";
    AddSource(y, m, first_stack + i, first_stack + i + 1, "0.5");
    AddSource(y, seam_name, i, i + 1, "0.5");
  }
  if (l.second_begin() + l.blend < l.n) {
    y += "  - sources:\n";
    AddSource(y, m, l.second_begin() + l.blend, l.n, "1");
  }
  return y;
}

CLI::App* SetupUpscale(CLI::App& app, UpscaleCmdOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "upscale", "Depth up-scaling (SOLAR): stack two copies of a model into more layers");
  cmd->add_option("MODEL", options.model,
                  "Model directory or hub id org/name[@revision] (as in a recipe)")
      ->required();
  cmd->add_option("OUT", options.output,
                  "Output directory (written under a temporary name, renamed when complete; not "
                  "needed with --print-recipe)");
  cmd->add_option("--layers", options.layers,
                  "Output layer count N, from n+1 to 2n (n = the model's layers; 2n-K with "
                  "--blend K)")
      ->required();
  cmd->add_option_function<int64_t>(
      "--blend", [&options](const int64_t& k) { options.blend = k; },
      "Average the K layer pairs that meet at the seam (0.5/0.5) instead of stacking both");
  CLI::Option* print = cmd->add_flag(
      "--print-recipe", options.print_recipe,
      "Print the generated mergekit recipe and exit (edit it and run `alloy merge` on it)");
  CLI::Option* dry = cmd->add_flag(
      "--dry-run", options.dry_run,
      "Validate everything and print the layer map and the merge plan; write nothing");
  cmd->add_flag("--overwrite", options.overwrite, "Replace OUT if it exists and is not empty");
  cmd->add_option("--threads", options.threads,
                  "Worker threads (0 = all cores); the output is identical at any value")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", options.quiet, "No progress bar and no summary");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  CLI::Option* json = cmd->add_flag(
      "--json", options.json,
      "Print a JSON summary (layers, tensors, bytes, seconds, peak RSS, output files)");
  print->excludes(dry)->excludes(json);
  cmd->footer(
      "Copy 1 drops its last d1 layers, copy 2 its first d2, d1 + d2 = 2n - N (- K with\n"
      "--blend K), d1 = ceil, d2 = floor of half of it. Embeddings, final norm and lm_head\n"
      "come from the model once; config.json gets num_hidden_layers = N.\n"
      "Examples:\n"
      "  alloy upscale ./Mistral-7B ./solar-base --layers 48      # SOLAR: [0, 24) + [8, 32)\n"
      "  alloy upscale ./Mistral-7B ./out --layers 46 --blend 2   # average 2 seam layer pairs\n"
      "  alloy upscale org/model@main --layers 48 --print-recipe > upscale.yaml\n"
      "  alloy upscale ./model ./out --layers 40 --dry-run\n"
      "See docs/upscale.md.\n"
      "Exit codes: 0 ok, 1 internal error, 2 bad input (model, --layers, --blend), 3 I/O "
      "failure, 130 interrupted.");
  return cmd;
}

int RunUpscale(const UpscaleCmdOptions& options, std::ostream& out, std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  if (!options.print_recipe && options.output.empty()) {
    return ReportError(Status::InvalidArgument("OUT is required (or pass --print-recipe)"), err);
  }
  formats::Result<ProbedModel> probed =
      ProbeModel(options.model, SymlinkPolicyOf(options.follow_symlinks));
  if (!probed.ok()) return ReportError(probed.status(), err);
  formats::Result<UpscaleLayout> layout =
      ComputeUpscaleLayout(probed->layers, options.layers, options.blend);
  if (!layout.ok()) return ReportError(layout.status(), err);
  const std::string seam_name = SeamName(options.model);
  const std::string recipe = UpscaleRecipe(options.model, *layout, probed->dtype, seam_name);
  if (options.print_recipe) {
    out << recipe;
    return ToInt(ExitCode::kOk);
  }

  namespace fs = std::filesystem;
  std::string out_dir = options.output;
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
  std::error_code ec;
  if (!options.dry_run && !options.overwrite && fs::is_directory(out_dir, ec) &&
      !fs::is_empty(out_dir, ec)) {
    // The writer says the same, but only after the seam document is written.
    return ReportError(Status::InvalidArgument("output directory " + out_dir +
                                               " exists and is not empty; pass --overwrite to "
                                               "replace it"),
                       err);
  }
  merge::MergeJobOptions job;
  job.overwrite = options.overwrite;
  job.dry_run = options.dry_run;
  job.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  job.execute.threads = options.threads;
  job.execute.cancel = InstallInterruptHandler();
  // The seam document (--blend) goes to a directory of this run, removed
  // afterwards; only a directory this run creates is ever removed.
  job.intermediate_dir = out_dir + ".alloy-upscale-" + std::to_string(::getpid());
  const bool remove_intermediates = layout->blend > 0 && !options.dry_run;
  if (remove_intermediates && fs::exists(job.intermediate_dir, ec)) {
    return ReportError(Status::InvalidArgument(job.intermediate_dir +
                                               " exists (left by an earlier run?); remove it"),
                       err);
  }

  const bool show = !options.quiet && !options.json && !options.dry_run;
  std::unique_ptr<ProgressBar> bar;
  job.on_document = [&](const std::string& name, const merge::MergePlan&) {
    if (show) bar = std::make_unique<ProgressBar>(name.empty() ? "upscale" : name, true);
  };
  job.execute.progress = [&](uint64_t done, uint64_t total, std::string_view tensor) {
    if (bar) bar->Update(done, total, tensor);
  };
  std::vector<std::string> warnings_on_error;
  job.warnings_on_error = &warnings_on_error;
  auto report = merge::RunMergeText(recipe, kRecipeName, out_dir, job);
  if (bar) bar->Finish();
  if (remove_intermediates) fs::remove_all(job.intermediate_dir, ec);

  if (!report.ok()) {
    return ReportFailure(report.status(), warnings_on_error, job.execute.cancel->load(), err);
  }
  ReportWarnings(report->warnings, err);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const merge::DocumentReport* final_doc =
      report->documents.empty() ? nullptr : &report->documents.back();
  if (options.json) {
    nlohmann::json j = {
        {"model", options.model},
        {"output", options.output},
        {"dry_run", options.dry_run},
        {"layers_in", layout->n},
        {"layers_out", layout->layers},
        {"blend", layout->blend},
        {"first_copy", {0, layout->first_end()}},
        {"second_copy", {layout->second_begin(), layout->n}},
        {"recipe", recipe},
        {"warnings", report->warnings},
        {"seconds", secs},
        {"peak_rss_bytes", PeakRssBytes()},
    };
    j["method"] = final_doc ? final_doc->method : "";
    j["planned"] = final_doc != nullptr && final_doc->planned;
    j["tensors"] = final_doc == nullptr  ? 0
                   : options.dry_run     ? final_doc->planned_tensors
                                         : final_doc->merge.n_tensors;
    j["planned_bytes"] = final_doc ? final_doc->planned_bytes : 0;
    j["bytes_written"] = final_doc ? final_doc->merge.bytes_written : 0;
    j["files"] = final_doc ? final_doc->files : std::vector<std::string>{};
    out << j.dump(2) << "\n";
    return ToInt(ExitCode::kOk);
  }
  if (options.quiet) return ToInt(ExitCode::kOk);
  out << DescribeLayout(options.model, *layout);
  if (options.dry_run) {
    for (const merge::DocumentReport& d : report->documents) {
      const std::string label =
          d.name.empty() ? "final merge" : "seam layers (intermediate '" + d.name + "')";
      if (!d.planned) {
        out << label << ": planned at run time (it reads the seam layers, written first)\n";
        continue;
      }
      out << label << " -> " << d.output << "\n" << d.plan_summary;
      if (!d.plan_summary.empty() && d.plan_summary.back() != '\n') out << "\n";
    }
    out << "dry run: the recipe is valid; nothing was written\n";
    return ToInt(ExitCode::kOk);
  }
  if (final_doc != nullptr) {
    out << "wrote " << final_doc->merge.n_tensors << " tensors (" << layout->layers
        << " layers, " << HumanBytes(static_cast<double>(final_doc->merge.bytes_written))
        << ") to " << final_doc->output << "\n";
  }
  out << "done " << TimeAndMemory(secs) << "\n";
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
