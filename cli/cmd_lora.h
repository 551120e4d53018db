// `alloy lora ...`: PEFT LoRA adapter tools.
//   inspect ADAPTER [--base BASE] [--json] [--top-k K]      rank, scale, spectrum per module
//   apply BASE ADAPTER OUT [--scale S]                      W ← W + S·s·B·A, an HF model
//   concat OUT A1 A2 ... [--weights ...]                    exact rank-Σr adapter
//   combine OUT A1 A2 ... --method M --rank R [...]         combined ΔW, best rank-R factors
//   extract --base BASE --model FT OUT --rank R [...]       ΔW = FT − BASE as an adapter
// cmd_lora.cc holds the command line and inspect; cmd_lora_build.cc the rest.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace alloy::cli {

struct LoraCmdOptions {
  // inspect
  std::string adapter;
  std::string base;  // inspect --base, extract --base
  bool json = false;
  int top_k = 4;  // energy in the top-k singular values
  // apply
  std::string apply_base;
  std::string output;  // apply, concat, combine, extract
  double scale = 1.0;
  std::string dtype;   // apply: output dtype (default: the base's); others: factor dtype
  // concat, combine
  std::vector<std::string> adapters;
  std::vector<double> weights;
  std::string method;
  int64_t rank = 0;
  double density = -1;  // < 0: not given
  // extract
  std::string model;
  double sv_epsilon = 0;
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  bool embed_lora = false;
  // common
  int threads = 0;
  uint64_t seed = 0;
  bool overwrite = false;
  bool quiet = false;
  bool follow_symlinks = false;  // read input files that link outside their directory
  std::string command;  // the command line, for adapter READMEs
};

struct LoraCommands {
  CLI::App* inspect = nullptr;
  CLI::App* apply = nullptr;
  CLI::App* concat = nullptr;
  CLI::App* combine = nullptr;
  CLI::App* extract = nullptr;
};

// Adds `lora` and its subcommands.
LoraCommands SetupLora(CLI::App& app, LoraCmdOptions& options);

// Runs whichever subcommand was parsed; -1 when none was.
int RunLora(const LoraCommands& commands, const LoraCmdOptions& options, std::ostream& out,
            std::ostream& err);

int RunLoraInspect(const LoraCmdOptions& options, std::ostream& out, std::ostream& err);
int RunLoraApply(const LoraCmdOptions& options, std::ostream& out, std::ostream& err);
int RunLoraConcat(const LoraCmdOptions& options, std::ostream& out, std::ostream& err);
int RunLoraCombine(const LoraCmdOptions& options, std::ostream& out, std::ostream& err);
int RunLoraExtract(const LoraCmdOptions& options, std::ostream& out, std::ostream& err);

}  // namespace alloy::cli
