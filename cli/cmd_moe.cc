#include "cli/cmd_moe.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/generated_recipe.h"
#include "cli/input_flags.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "merge/moe.h"

namespace alloy::cli {
namespace {

using formats::Status;

void AddCommon(CLI::App* cmd, MoeCmdOptions& options) {
  cmd->add_option("--layout", options.layout,
                  "legacy: per-expert tensors (block_sparse_moe.experts.E.w1/w2/w3, what llama.cpp "
                  "reads); fused: transformers v5 (mlp.experts.gate_up_proj / down_proj)")
      ->check(CLI::IsMember({"legacy", "fused"}))
      ->capture_default_str();
  cmd->add_option("--seed", options.seed, "Seed of the random routers and of expert noise")
      ->capture_default_str();
  cmd->add_option("--threads", options.threads, "Worker threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--overwrite", options.overwrite, "Replace OUT if it exists and is not empty");
  cmd->add_flag("-q,--quiet", options.quiet, "No progress bar and no summary");
  cmd->add_flag("--json", options.json, "Print the summary as JSON");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
}

int Run(const std::string& recipe, const std::string& name, const MoeCmdOptions& options,
        bool allow_all_same, std::ostream& out, std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  merge::MoeOptions m;
  m.layout = options.layout;
  m.seed = options.seed;
  m.allow_all_same_experts = allow_all_same;
  m.threads = options.threads;
  m.overwrite = options.overwrite;
  m.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  m.cancel = InstallInterruptHandler();
  ProgressBar bar("moe", !options.quiet && !options.json);
  m.progress = [&](uint64_t done, uint64_t total, std::string_view tensor) {
    bar.Update(done, total, tensor);
  };
  auto report = merge::RunMoeText(recipe, name, options.output, m);
  bar.Finish();
  if (!report.ok()) return ReportFailure(report.status(), {}, m.cancel->load(), err);
  ReportWarnings(report->warnings, err);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.json) {
    const nlohmann::json j = {{"output", report->output},
                              {"architecture", report->architecture},
                              {"layout", options.layout},
                              {"experts", report->n_experts},
                              {"shared_experts", report->n_shared_experts},
                              {"layers", report->n_layers},
                              {"tensors", report->n_tensors},
                              {"bytes_written", report->bytes_written},
                              {"files", report->files},
                              {"warnings", report->warnings},
                              {"seconds", secs},
                              {"peak_rss_bytes", PeakRssBytes()}};
    out << j.dump(2) << "\n";
    return ToInt(ExitCode::kOk);
  }
  if (options.quiet) return ToInt(ExitCode::kOk);
  out << "wrote " << report->output << " (" << report->architecture << ", " << report->n_experts
      << " experts" << (report->n_shared_experts ? " + 1 shared" : "") << ", "
      << report->n_layers << " layers, " << report->n_tensors << " tensors, "
      << HumanBytes(static_cast<double>(report->bytes_written)) << ") " << TimeAndMemory(secs)
      << "\n";
  return ToInt(ExitCode::kOk);
}

}  // namespace

MoeCommands SetupMoe(CLI::App& app, MoeCmdOptions& options) {
  MoeCommands c;
  c.moe = app.add_subcommand("moe", "Build a mixture of experts from a mergekit-moe recipe");
  c.moe->add_option("RECIPE", options.recipe, "mergekit-moe YAML (base_model, experts, ...)")
      ->required();
  c.moe->add_option("OUT", options.output, "Output model directory")->required();
  c.moe->add_flag("--i-understand-this-is-not-useful-without-training", options.allow_all_same,
                  "Allow every expert to be the same model (mergekit's flag)");
  AddCommon(c.moe, options);
  c.moe->footer(
      "Architectures (chosen as mergekit-moe does): Mixtral (llama/mistral models, no shared\n"
      "experts), DeepSeek-MoE (≤ 1 shared expert), Qwen2-MoE (exactly 1 shared expert),\n"
      "Qwen3-MoE (qwen3 models); `architecture:` in the recipe narrows the choice.\n"
      "Gates: random, uniform_random, orthogonal. hidden / cheap_embed need a forward pass that\n"
      "alloy does not have yet and are refused. docs/moe.md explains layouts and how to run\n"
      "the result. Exit codes: 0 ok, 1 internal error, 2 bad input, 3 I/O failure,\n"
      "130 interrupted.");

  c.upcycle = app.add_subcommand(
      "upcycle", "Sparse upcycling: one dense model → N experts (copies of its MLP) + routers");
  c.upcycle->add_option("MODEL", options.model, "Dense model: directory or org/name[@rev]")
      ->required();
  c.upcycle->add_option("OUT", options.output, "Output model directory (not needed with "
                                               "--print-recipe)");
  c.upcycle->add_option("--experts", options.experts, "Number of experts N")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  c.upcycle->add_option("--top-k", options.top_k, "Experts per token")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}))
      ->capture_default_str();
  c.upcycle->add_option("--noise", options.noise,
                        "Add S·N(0,1) to every expert weight (mergekit's noise_scale; LLM MLP "
                        "weights are ~0.02, so 1e-3 is mild); 0 keeps exact copies")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c.upcycle->add_option("--gate", options.gate, "Router initialisation")
      ->check(CLI::IsMember({"random", "uniform_random", "orthogonal"}))
      ->capture_default_str();
  c.upcycle->add_flag("--print-recipe", options.print_recipe,
                      "Print the equivalent mergekit-moe recipe and exit");
  AddCommon(c.upcycle, options);
  c.upcycle->footer(
      "Komatsuzaki et al. 2022: every expert starts as the dense MLP, so with --noise 0 the\n"
      "model computes what the dense one did whatever the router says; train it to specialise.\n"
      "Example:\n"
      "  alloy upcycle ./Llama-3.2-1B ./Llama-3.2-8x1B --experts 8 --top-k 2\n"
      "Exit codes: 0 ok, 1 internal error, 2 bad input, 3 I/O failure, 130 interrupted.");
  return c;
}

int RunMoeCommands(const MoeCommands& c, const MoeCmdOptions& options, std::ostream& out,
                   std::ostream& err) {
  if (c.moe->parsed()) return RunMoe(options, out, err);
  if (c.upcycle->parsed()) return RunUpcycle(options, out, err);
  return -1;
}

int RunMoe(const MoeCmdOptions& options, std::ostream& out, std::ostream& err) {
  auto text = formats::ReadSmallFile(options.recipe);
  if (!text.ok()) return ReportError(text.status(), err);
  return Run(*text, options.recipe, options, options.allow_all_same, out, err);
}

std::string UpcycleRecipe(const MoeCmdOptions& options) {
  std::string y = "# alloy upcycle: sparse upcycling of one dense model\n";
  y += "base_model: " + YamlScalar(options.model) + "\n";
  y += "gate_mode: " + options.gate + "\n";
  y += "experts_per_token: " + std::to_string(options.top_k) + "\n";
  y += "experts:\n";
  char noise[40];
  std::snprintf(noise, sizeof(noise), "%.17g", options.noise);
  for (int64_t e = 0; e < options.experts; ++e) {
    y += "  - source_model: " + YamlScalar(options.model) + "\n";
    if (options.noise > 0) y += "    noise_scale: " + std::string(noise) + "\n";
  }
  return y;
}

int RunUpcycle(const MoeCmdOptions& options, std::ostream& out, std::ostream& err) {
  if (options.top_k > options.experts) {
    return ReportError(Status::InvalidArgument("--top-k " + std::to_string(options.top_k) +
                                               " is more than --experts " +
                                               std::to_string(options.experts)),
                       err);
  }
  const std::string recipe = UpcycleRecipe(options);
  if (options.print_recipe) {
    out << recipe;
    return ToInt(ExitCode::kOk);
  }
  if (options.output.empty()) {
    return ReportError(Status::InvalidArgument("OUT is required (or pass --print-recipe)"), err);
  }
  return Run(recipe, "upcycle recipe", options, /*allow_all_same=*/true, out, err);
}

}  // namespace alloy::cli
