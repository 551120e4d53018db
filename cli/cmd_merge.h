// `alloy merge RECIPE OUT`: run a mergekit-compatible recipe.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace alloy::cli {

struct MergeCmdOptions {
  std::string recipe;
  std::string output;
  std::vector<std::string> path_map;  // FROM=TO
  std::string intermediate_dir;
  std::string shard_size = "5B";
  uint64_t seed = 0;
  int threads = 0;
  bool dry_run = false;
  bool overwrite = false;
  bool fsync = false;
  bool quiet = false;
  bool json = false;
  bool allow_crimes = false;
  bool no_lazy = false;
  bool follow_symlinks = false;  // read input files that link outside their directory
};

CLI::App* SetupMerge(CLI::App& app, MergeCmdOptions& options);

// Runs the command; returns the process exit code.
int RunMerge(const MergeCmdOptions& options, std::ostream& out, std::ostream& err);

}  // namespace alloy::cli
