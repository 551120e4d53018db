// `alloy compare MODEL_A MODEL_B [...] [--base BASE]`: per-tensor similarity
// of checkpoints and task-vector interference, as a terminal table, JSON, CSV
// and a self-contained HTML report.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace alloy::cli {

struct CompareCmdOptions {
  std::vector<std::string> models;
  std::string base;
  std::string tensors;  // regex
  std::string json_path, csv_path, html_path;
  int top = 5;
  int rank = 0;
  std::string metric;  // table metric key ("" = cosine)
  std::string series;  // its series label ("" = the first)
  std::string color = "auto";
  int threads = 0;
  bool quiet = false;
  bool follow_symlinks = false;  // read model files that link outside their directory
  std::string command;  // the command line, recorded in the reports
};

CLI::App* SetupCompare(CLI::App& app, CompareCmdOptions& options);

// Runs the command; returns the process exit code.
int RunCompare(const CompareCmdOptions& options, std::ostream& out, std::ostream& err);

// argv as one shell-quoted line ("alloy compare a b --html 'my report.html'").
std::string ShellJoin(int argc, const char* const* argv);

}  // namespace alloy::cli
