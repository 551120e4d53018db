// `alloy moe RECIPE OUT`: a mixture-of-experts model from a mergekit-moe
// recipe; `alloy upcycle MODEL OUT --experts N`: sparse upcycling of one
// dense model (N copies of its MLP as experts, random routers), through a
// generated mergekit-moe recipe (`--print-recipe` shows it). merge/moe.h has
// the semantics.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace alloy::cli {

struct MoeCmdOptions {
  std::string recipe;  // moe
  std::string model;   // upcycle
  std::string output;
  int64_t experts = 0;   // upcycle --experts
  int64_t top_k = 2;     // upcycle --top-k
  double noise = 0;      // upcycle --noise (mergekit's noise_scale)
  std::string gate = "random";  // upcycle --gate
  bool print_recipe = false;
  std::string layout = "legacy";
  uint64_t seed = 0;
  bool allow_all_same = false;
  int threads = 0;
  bool overwrite = false;
  bool quiet = false;
  bool json = false;
  bool follow_symlinks = false;  // read model files that link outside their directory
};

struct MoeCommands {
  CLI::App* moe = nullptr;
  CLI::App* upcycle = nullptr;
};

MoeCommands SetupMoe(CLI::App& app, MoeCmdOptions& options);

// Runs whichever of the two was parsed; -1 when neither was.
int RunMoeCommands(const MoeCommands& commands, const MoeCmdOptions& options, std::ostream& out,
                   std::ostream& err);

int RunMoe(const MoeCmdOptions& options, std::ostream& out, std::ostream& err);
int RunUpcycle(const MoeCmdOptions& options, std::ostream& out, std::ostream& err);

// The mergekit-moe recipe `alloy upcycle` runs.
std::string UpcycleRecipe(const MoeCmdOptions& options);

}  // namespace alloy::cli
