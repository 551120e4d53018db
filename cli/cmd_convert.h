// `alloy convert IN OUT --dtype D`: stream a checkpoint into another dtype.
#pragma once

#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace alloy::cli {

struct ConvertCmdOptions {
  std::string input;   // path or org/name[@revision]
  std::string output;  // output directory
  std::string dtype;   // bf16 | f16 | f32 | f8_e4m3 (and aliases)
  std::string shard_size = "5B";
  bool clamp_f16 = false;
  bool overwrite = false;
  bool fsync = false;
  bool quiet = false;
  bool json = false;
  bool follow_symlinks = false;  // read input files that link outside its directory
  int threads = 0;
};

CLI::App* SetupConvert(CLI::App& app, ConvertCmdOptions& options);

// Runs the command; returns the process exit code.
int RunConvert(const ConvertCmdOptions& options, std::ostream& out, std::ostream& err);

}  // namespace alloy::cli
