// `alloy upscale MODEL OUT --layers N`: SOLAR-style depthwise up-scaling
// (methods-beyond.md §3.1). Two copies of MODEL are stacked, the first
// without its last d1 layers and the second without its first d2; with
// `--blend K` the K layer pairs meeting at the seam are averaged instead of
// stacked. The command generates a mergekit recipe and runs it through
// merge::RunMergeText, so the output is exactly what `alloy merge` writes
// for that recipe (`--print-recipe` prints it instead).
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "formats/dtype.h"
#include "formats/status.h"

namespace CLI {
class App;
}

namespace alloy::cli {

struct UpscaleCmdOptions {
  std::string model;   // local directory or org/name[@revision]
  std::string output;  // output directory; may be empty with print_recipe
  int64_t layers = 0;  // --layers N: output layer count
  std::optional<int64_t> blend;  // --blend K: seam layer pairs to average
  int threads = 0;
  bool print_recipe = false;
  bool dry_run = false;
  bool overwrite = false;
  bool quiet = false;
  bool json = false;
  bool follow_symlinks = false;  // read model files that link outside its directory
};

// Which layers of the two copies make up the output. Copy 1 keeps
// [0, first_end), copy 2 keeps [second_begin, n); the last `blend` layers of
// copy 1's part and the first `blend` of copy 2's are averaged pairwise.
struct UpscaleLayout {
  int64_t n = 0;             // model layers
  int64_t layers = 0;        // output layers N
  int64_t blend = 0;         // K (0: none)
  int64_t drop_first = 0;    // d1: layers dropped from the end of copy 1
  int64_t drop_second = 0;   // d2: layers dropped from the start of copy 2
  int64_t first_end() const { return n - drop_first; }
  int64_t second_begin() const { return drop_second; }
};

// d1 + d2 = 2n − N − K, d1 = ceil(·/2), d2 = floor(·/2). Fails
// (kInvalidArgument) unless n < N ≤ 2n − K and K ≥ 1 when given; the message
// names the possible values.
formats::Result<UpscaleLayout> ComputeUpscaleLayout(int64_t n, int64_t layers,
                                                    std::optional<int64_t> blend);

// The recipe: one passthrough document without blend; with blend, an
// intermediate document `seam_name` (copy 2's seam layers: a model is merged
// with itself only once per slice, in mergekit as in alloy) followed by a
// linear document. `model` is written as a YAML scalar, quoted when needed.
std::string UpscaleRecipe(const std::string& model, const UpscaleLayout& layout,
                          formats::DType dtype, const std::string& seam_name);

CLI::App* SetupUpscale(CLI::App& app, UpscaleCmdOptions& options);

// Runs the command; returns the process exit code.
int RunUpscale(const UpscaleCmdOptions& options, std::ostream& out, std::ostream& err);

}  // namespace alloy::cli
