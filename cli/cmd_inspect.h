// `alloy inspect MODEL`: what a checkpoint holds, and what it costs in memory.
#pragma once

#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace alloy::cli {

struct InspectOptions {
  std::string model;   // path or org/name[@revision]
  bool tensors = false;  // list every tensor
  bool memory = false;   // memory estimates
  bool json = false;     // machine-readable output
  bool follow_symlinks = false;  // read directory files that link outside it
};

// Adds the `inspect` subcommand to `app`, binding flags to `options`.
CLI::App* SetupInspect(CLI::App& app, InspectOptions& options);

// Runs the command; returns the process exit code.
int RunInspect(const InspectOptions& options, std::ostream& out, std::ostream& err);

}  // namespace alloy::cli
