// Building LoRA adapters (`alloy lora concat | combine | extract`), written
// by merge/lora_io.h with scale 1 in every module.
//
// * ConcatLora: one adapter of rank Σ r_i whose ΔW is exactly
//   Σ w_i·s_i·B_i·A_i: A's stacked by rows (w_i·s_i folded in), B's by
//   columns. Applying it equals applying the sources one after another, up to
//   the rounding of the factors.
// * CombineLora: the combined delta of each module (methods-beyond.md §1.6)
//   truncated to its best rank-R factorization, √σ split between A and B.
//   `linear` and `svd` form Σ w_i·s_i·B_i·A_i — every s_i once (PEFT's svd
//   path folds s_i in twice) — and factor it exactly from the stacked
//   factors (QR + a small SVD), never forming ΔW. `ties`, `dare_ties`,
//   `dare_linear` and `magnitude_prune` run the merge engine's task-vector
//   method on the dense deltas s_i·B_i·A_i (a zero base, weights w_i,
//   `density`), then factor the result.
// * ExtractLora: ΔW = W_ft − W_base of every 2-D weight → rank-R factors
//   (randomized SVD for large matrices, exact for small ones), as
//   mergekit-extract-lora writes them.
//
// Memory: the factors of the adapter being written (small) plus one module's
// dense matrices (extract, and the sparsifying combine methods).
//
// Thread safety: one call at a time per process (kernel thread count).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/dtype.h"
#include "formats/path_guard.h"
#include "formats/status.h"

namespace alloy::merge {

// Called after each module: done and total modules, the module's name.
using LoraProgressFn = std::function<void(size_t done, size_t total, std::string_view module)>;

struct LoraBuildOptions {
  formats::DType dtype = formats::DType::kF32;  // factors
  bool overwrite = false;
  bool fsync = false;
  std::string command;  // how the adapter was made, for its README
  int threads = 0;      // 0 = all cores; the output does not depend on it
  uint64_t seed = 0;    // DARE masks and the randomized SVD's test matrix
  LoraProgressFn progress;
  // Whether files of the input adapter and model directories may be symlinks
  // leading outside them (--follow-symlinks; formats/path_guard.h).
  formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside;
};

// One module of a built adapter.
struct LoraModuleSummary {
  std::string module;
  int64_t rank = 0;      // written
  double norm = 0;       // ‖ΔW‖_F of what was factorized
  double kept = 1;       // share of ‖ΔW‖_F² the rank-`rank` factors keep (1 when exact)
};

struct LoraBuildReport {
  std::string output;
  size_t n_modules = 0;
  size_t n_saved = 0;  // modules_to_save tensors
  int64_t max_rank = 0;
  uint64_t bytes = 0;
  std::vector<LoraModuleSummary> modules;
  std::vector<std::string> warnings;
};

// Concatenates `adapters` (directories or hub ids) with `weights` (empty:
// all 1). Refuses (kInvalidArgument) adapters that disagree on
// fan_in_fan_out or on a module's shape or kind, a tensor saved whole by two
// adapters, and a module saved whole by one adapter and adapted by another.
formats::Result<LoraBuildReport> ConcatLora(const std::vector<std::string>& adapters,
                                            const std::vector<double>& weights,
                                            const std::string& out_dir,
                                            const LoraBuildOptions& options);

struct CombineOptions {
  std::string method = "svd";  // linear | svd | ties | dare_linear | dare_ties | magnitude_prune
  int64_t rank = 0;            // R (required, ≥ 1)
  std::optional<double> density;  // ties / dare_* / magnitude_prune (required for them)
};

// The methods CombineLora knows, for --help and messages.
const std::vector<std::string>& CombineMethods();

formats::Result<LoraBuildReport> CombineLora(const std::vector<std::string>& adapters,
                                             const std::vector<double>& weights,
                                             const CombineOptions& combine,
                                             const std::string& out_dir,
                                             const LoraBuildOptions& options);

struct ExtractOptions {
  int64_t rank = 32;             // R: the largest rank written
  double sv_epsilon = 0;         // drop singular values ≤ this (absolute)
  std::vector<std::string> include;  // regexes on tensor names; empty = all 2-D weights
  std::vector<std::string> exclude;
  bool embed_lora = false;  // factorize embeddings too instead of saving them whole
};

formats::Result<LoraBuildReport> ExtractLora(const std::string& base, const std::string& finetuned,
                                             const ExtractOptions& extract,
                                             const std::string& out_dir,
                                             const LoraBuildOptions& options);

}  // namespace alloy::merge
