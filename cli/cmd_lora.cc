#include "cli/cmd_lora.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/input_flags.h"
#include "cli/progress.h"
#include "formats/tensor_info.h"
#include "merge/lora_inspect.h"

namespace alloy::cli {
namespace {

std::string Fmt(double v, const char* format = "%.4g") {
  char buf[40];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string KindName(formats::LoraKind kind) {
  switch (kind) {
    case formats::LoraKind::kLinear: return "linear";
    case formats::LoraKind::kTransposed: return "transposed";
    case formats::LoraKind::kBias: return "bias";
  }
  return "linear";
}

}  // namespace

LoraCommands SetupLora(CLI::App& app, LoraCmdOptions& options) {
  CLI::App* lora = app.add_subcommand(
      "lora", "PEFT LoRA adapters: inspect, apply, concat, combine, extract");
  lora->require_subcommand(1);
  lora->footer("Run 'alloy lora COMMAND --help' for a command's options. docs/lora.md has the "
               "math and examples.");
  LoraCommands c;
  const char* kDtypeHelp =
      "Dtype of the factors written: float32 (default), bfloat16, float16 (also f32, bf16, f16)";
  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("--threads", options.threads, "Worker threads (0: all cores); the output "
                                                  "does not depend on it")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--overwrite", options.overwrite, "Replace a non-empty output directory");
    cmd->add_flag("-q,--quiet", options.quiet, "No progress bar and no summary");
    cmd->add_flag("--json", options.json, "Print the summary as JSON");
    AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  };

  c.inspect = lora->add_subcommand(
      "inspect", "Per-module rank, scale and spectrum of an adapter's ΔW = s·B·A");
  c.inspect->add_option("ADAPTER", options.adapter,
                        "Adapter directory (adapter_config.json + adapter_model.safetensors)")
      ->required();
  c.inspect->add_option("--base", options.base,
                        "Base model: also ‖ΔW‖ / ‖W‖ per module, and a check that every module "
                        "fits");
  c.inspect->add_option("--top-k", options.top_k, "Report the energy in the top K singular values")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  c.inspect->add_flag("--json", options.json, "Print JSON (every singular value included)");
  AddFollowSymlinksFlag(c.inspect, options.follow_symlinks);
  c.inspect->footer(
      "Examples:\n"
      "  alloy lora inspect ./my-adapter\n"
      "  alloy lora inspect ./my-adapter --base ./Llama-3.2-1B --json > adapter.json\n"
      "Singular values are exact (QR of the factors, SVD of the r × r core). Effective rank is\n"
      "(‖ΔW‖_* / ‖ΔW‖_F)²: r when all of a module's singular values are equal, near 1 when one\n"
      "direction dominates. docs/lora.md explains every figure. Exit codes: 0 ok, 2 bad input.");

  c.apply = lora->add_subcommand(
      "apply", "Merge an adapter into its base: W ← W + scale·s·B·A, written as an HF model");
  c.apply->add_option("BASE", options.apply_base, "Base model: directory or org/name[@revision]")
      ->required();
  c.apply->add_option("ADAPTER", options.adapter, "Adapter directory or hub id")->required();
  c.apply->add_option("OUT", options.output, "Output model directory")->required();
  c.apply->add_option("--scale", options.scale,
                      "Multiply every module's scale (alpha/r) by S; saved modules still "
                      "replace their tensors whole")
      ->capture_default_str();
  c.apply->add_option("--dtype", options.dtype,
                      "Output dtype (default: the base's): float32, bfloat16, float16");
  add_common(c.apply);
  c.apply->footer(
      "The adapter is applied while streaming (mergekit's `BASE+ADAPTER` reference through a\n"
      "passthrough merge): each changed tensor is W + scale·s·B·A computed in float64 and\n"
      "rounded once; the output directory has config.json, tokenizer files and a model card.\n"
      "Example:\n"
      "  alloy lora apply ./Llama-3.2-1B ./my-adapter ./merged --scale 0.5\n"
      "Exit codes: 0 ok, 2 bad input, 3 I/O failure, 130 interrupted.");

  c.concat = lora->add_subcommand(
      "concat", "Concatenate adapters into one of rank Σ r_i that is exactly Σ w_i·s_i·B_i·A_i");
  c.concat->add_option("OUT", options.output, "Output adapter directory")->required();
  c.concat->add_option("ADAPTERS", options.adapters, "Two or more adapters (directories or hub "
                                                     "ids)")
      ->required()
      ->expected(1, -1);
  c.concat->add_option("--weights", options.weights, "One weight per adapter (default: all 1)")
      ->expected(1, -1);
  c.concat->add_option("--dtype", options.dtype, kDtypeHelp);
  add_common(c.concat);
  c.concat->footer(
      "A = [w_1·s_1·A_1; w_2·s_2·A_2; ...] (rows), B = [B_1 B_2 ...] (columns), lora_alpha = r\n"
      "in every module: applying the result equals applying the adapters one after another.\n"
      "Modules present in only some adapters get only their factors. Example:\n"
      "  alloy lora concat ./both ./adapter-math ./adapter-code --weights 1 0.5\n"
      "Exit codes: 0 ok, 2 bad input, 3 I/O failure.");

  c.combine = lora->add_subcommand(
      "combine", "Combine adapters' deltas (linear, svd, ties, dare, magnitude_prune) and keep "
                 "the best rank-R factors");
  c.combine->add_option("OUT", options.output, "Output adapter directory")->required();
  c.combine->add_option("ADAPTERS", options.adapters, "Adapters (directories or hub ids)")
      ->required()
      ->expected(1, -1);
  c.combine->add_option("--method", options.method,
                        "linear | svd | ties | dare_linear | dare_ties | magnitude_prune")
      ->required();
  c.combine->add_option("--rank", options.rank, "Rank R of the result")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c.combine->add_option("--weights", options.weights, "One weight per adapter (default: all 1)")
      ->expected(1, -1);
  c.combine->add_option("--density", options.density,
                        "Fraction of each delta kept (ties, dare_*, magnitude_prune)")
      ->check(CLI::Range(0.0, 1.0));
  c.combine->add_option("--seed", options.seed, "Seed of the DARE masks")->capture_default_str();
  c.combine->add_option("--dtype", options.dtype, kDtypeHelp);
  add_common(c.combine);
  c.combine->footer(
      "Each adapter's scale s_i enters once: linear and svd factor Σ w_i·s_i·B_i·A_i exactly\n"
      "(PEFT's svd folds s_i in twice). ties, dare_* and magnitude_prune run alloy's merge\n"
      "methods on the dense deltas (zero base), then keep the top R singular triplets.\n"
      "Example:\n"
      "  alloy lora combine ./mixed ./a1 ./a2 --method ties --density 0.3 --rank 16 --weights 1 1\n"
      "Exit codes: 0 ok, 2 bad input, 3 I/O failure.");

  c.extract = lora->add_subcommand(
      "extract", "Extract a LoRA adapter from a fine-tune: ΔW = W_ft − W_base at rank R");
  c.extract->add_option("--base", options.base, "Base model: directory or hub id")->required();
  c.extract->add_option("--model", options.model, "Fine-tuned model: directory or hub id")
      ->required();
  c.extract->add_option("OUT", options.output, "Output adapter directory")->required();
  c.extract->add_option("--rank", options.rank, "Largest rank R (mergekit's --max-rank)")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c.extract->add_option("--sv-epsilon", options.sv_epsilon,
                        "Drop singular values ≤ E, so a module may get a smaller rank")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c.extract->add_option("--include", options.include,
                        "Only tensors whose name matches this regex (repeatable)");
  c.extract->add_option("--exclude", options.exclude,
                        "Skip tensors whose name matches this regex (repeatable)");
  c.extract->add_flag("--embed-lora", options.embed_lora,
                      "Factorize embeddings and lm_head too (default: save them whole)");
  c.extract->add_option("--seed", options.seed, "Seed of the randomized SVD")
      ->capture_default_str();
  c.extract->add_option("--dtype", options.dtype, kDtypeHelp);
  add_common(c.extract);
  c.extract->footer(
      "Every 2-D weight that differs becomes lora_A = √S·Vᵀ, lora_B = U·√S (randomized SVD with\n"
      "power iterations; exact SVD for small matrices); 1-D tensors that differ and, without\n"
      "--embed-lora, embeddings are saved whole (modules_to_save). Output as\n"
      "mergekit-extract-lora: r = lora_alpha = the largest rank, rank_pattern for the others.\n"
      "Example:\n"
      "  alloy lora extract --base ./Llama-3.2-1B --model ./my-finetune ./extracted --rank 32\n"
      "Exit codes: 0 ok, 2 bad input, 3 I/O failure.");
  return c;
}

int RunLora(const LoraCommands& c, const LoraCmdOptions& options, std::ostream& out,
            std::ostream& err) {
  if (c.inspect->parsed()) return RunLoraInspect(options, out, err);
  if (c.apply->parsed()) return RunLoraApply(options, out, err);
  if (c.concat->parsed()) return RunLoraConcat(options, out, err);
  if (c.combine->parsed()) return RunLoraCombine(options, out, err);
  if (c.extract->parsed()) return RunLoraExtract(options, out, err);
  return -1;
}

int RunLoraInspect(const LoraCmdOptions& options, std::ostream& out, std::ostream& err) {
  std::optional<std::string> base;
  if (!options.base.empty()) base = options.base;
  auto report =
      merge::InspectLora(options.adapter, base, SymlinkPolicyOf(options.follow_symlinks));
  if (!report.ok()) return ReportError(report.status(), err);
  const merge::LoraInspectReport& r = *report;
  const size_t k = static_cast<size_t>(options.top_k);
  if (options.json) {
    nlohmann::json modules = nlohmann::json::array();
    for (const merge::LoraModuleReport& m : r.modules) {
      nlohmann::json j = {{"module", m.module},
                          {"base_tensor", m.base_name},
                          {"kind", KindName(m.kind)},
                          {"shape", m.shape},
                          {"rank", m.rank},
                          {"alpha", m.alpha},
                          {"scale", m.scale},
                          {"frobenius", m.frobenius},
                          {"nuclear", m.nuclear},
                          {"effective_rank", m.effective_rank},
                          {"energy_top_k", merge::EnergyTopK(m.singular_values, k)},
                          {"singular_values", m.singular_values}};
      if (m.base_frobenius) {
        j["base_frobenius"] = *m.base_frobenius;
        j["relative_frobenius"] =
            *m.base_frobenius > 0 ? nlohmann::json(m.frobenius / *m.base_frobenius) : nullptr;
      }
      modules.push_back(std::move(j));
    }
    const nlohmann::json j = {{"adapter", r.directory},
                              {"base_model_name_or_path", r.base_model},
                              {"r", r.default_rank},
                              {"lora_alpha", r.default_alpha},
                              {"use_rslora", r.use_rslora},
                              {"parameters", r.n_parameters},
                              {"top_k", k},
                              {"modules", modules},
                              {"modules_to_save", r.modules_to_save}};
    out << j.dump(2) << "\n";
    return ToInt(ExitCode::kOk);
  }
  out << "adapter: " << r.directory << "\n";
  out << "  r " << r.default_rank << ", lora_alpha " << Fmt(r.default_alpha, "%g")
      << (r.use_rslora ? ", rsLoRA (scale alpha/√r)" : ", scale alpha/r") << ", "
      << GroupedInt(r.n_parameters) << " parameters";
  if (!r.base_model.empty()) out << ", for " << r.base_model;
  out << "\n";
  size_t width = 6;
  for (const merge::LoraModuleReport& m : r.modules) width = std::max(width, m.module.size());
  const bool has_base = base.has_value();
  char head[256];
  std::snprintf(head, sizeof(head), "%-*s %-13s %4s %7s %9s %9s %8s %8s%s\n",
                static_cast<int>(width), "module", "shape", "r", "scale", "|dW|_F", "nuclear",
                "eff.rank", ("top" + std::to_string(k)).c_str(), has_base ? "  |dW|/|W|" : "");
  out << head;
  double sum_eff = 0;
  for (const merge::LoraModuleReport& m : r.modules) {
    char line[512];
    std::snprintf(line, sizeof(line), "%-*s %-13s %4lld %7s %9s %9s %8s %8s", static_cast<int>(width),
                  m.module.c_str(), formats::ShapeString(m.shape).c_str(),
                  static_cast<long long>(m.rank), Fmt(m.scale).c_str(), Fmt(m.frobenius).c_str(),
                  Fmt(m.nuclear).c_str(), Fmt(m.effective_rank, "%.3f").c_str(),
                  Fmt(merge::EnergyTopK(m.singular_values, k), "%.3f").c_str());
    out << line;
    if (m.base_frobenius) {
      out << "  " << (*m.base_frobenius > 0 ? Fmt(m.frobenius / *m.base_frobenius) : "–");
    }
    out << "\n";
    sum_eff += m.effective_rank;
  }
  if (!r.modules.empty()) {
    out << r.modules.size() << " modules; mean effective rank "
        << Fmt(sum_eff / static_cast<double>(r.modules.size()), "%.3f") << "\n";
  }
  if (!r.modules_to_save.empty()) {
    out << "modules_to_save (replace the base tensor whole):";
    for (const std::string& name : r.modules_to_save) out << " " << name;
    out << "\n";
  }
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
