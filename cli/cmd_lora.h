// `alloy lora ...`: PEFT LoRA adapter tools. Today: `alloy lora inspect
// ADAPTER [--base BASE] [--json] [--top-k K]`, the rank, scale and spectrum of
// every module's ΔW = s·B·A.
#pragma once

#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace alloy::cli {

struct LoraCmdOptions {
  std::string adapter;
  std::string base;
  bool json = false;
  int top_k = 4;  // energy in the top-k singular values
};

// Adds `lora` and its `inspect` subcommand; returns the `inspect` App.
CLI::App* SetupLora(CLI::App& app, LoraCmdOptions& options);

int RunLoraInspect(const LoraCmdOptions& options, std::ostream& out, std::ostream& err);

}  // namespace alloy::cli
