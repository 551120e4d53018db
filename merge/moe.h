// RunMoe: `alloy moe RECIPE OUT` — a mixture-of-experts model from a
// mergekit-moe recipe (mergekit-semantics.md §4, methods-beyond.md §3.3–3.4).
//
// The base model gives every tensor but the MLPs (embeddings, attention,
// norms, head); each layer's MLP becomes a router plus one expert per
// `experts:` entry (that model's MLP of the same layer, `noise_scale` ·
// N(0, 1) added, `down_proj` times `residual_scale`), and shared experts
// for the architectures that have them. The output architecture is chosen as
// mergekit does (§4.2): Mixtral unless shared experts or the `architecture`
// key rule it out, then DeepSeek-MoE, Qwen2-MoE, Qwen3-MoE.
//
// The result is a virtual model (a TensorSource computing each tensor's
// bytes on demand) streamed through the convert pipeline into a
// ModelDirWriter: bounded memory, atomic output, config.json for the MoE
// architecture, the base's tokenizer files, `mergekit_moe_config.yml` and a
// model card.
//
// Gates: `random` (N(0, 1)), `uniform_random` (U(−1/√H, 1/√H)) and alloy's
// `orthogonal` (orthonormal rows × √H), all from the counter-based generator
// keyed by the seed, so any thread count gives the same bytes. `hidden`,
// `hidden_avg`, `hidden_last` and `cheap_embed` need a forward pass, which
// alloy does not have yet: refused (kUnsupported) naming an expert.
//
// Thread safety: one job at a time per process (kernel thread count).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/path_guard.h"
#include "formats/status.h"

namespace alloy::merge {

struct MoeOptions {
  std::string layout = "legacy";  // legacy (per-expert tensors) | fused (transformers v5)
  uint64_t seed = 0;
  bool allow_all_same_experts = false;  // --i-understand-this-is-not-useful-without-training
  int threads = 0;
  bool overwrite = false;
  bool fsync = false;
  uint64_t max_shard_bytes = 0;  // 0 = the writer's default
  // Whether files of the model directories (weights, config.json, the base's
  // tokenizer files) may be symlinks leading outside them.
  formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside;
  std::function<void(uint64_t done, uint64_t total, std::string_view tensor)> progress;
  const std::atomic<bool>* cancel = nullptr;
};

struct MoeReport {
  std::string output;
  std::string architecture;  // MixtralForCausalLM, ...
  size_t n_experts = 0;
  size_t n_shared_experts = 0;
  int64_t n_layers = 0;
  size_t n_tensors = 0;
  uint64_t bytes_written = 0;
  std::vector<std::string> files;
  std::vector<std::string> warnings;
};

// Builds the MoE model for the recipe text (`display_name` stands for the
// file in messages) into `out_dir`. Errors: the recipe parser's
// (kInvalidArgument with file:line:column), kUnsupported for prompt-based
// gates and models no MoE architecture accepts, kInvalidArgument for experts
// whose layers or MLP shapes differ from the base's, the opener's and
// writer's errors.
formats::Result<MoeReport> RunMoeText(std::string_view recipe_text, std::string_view display_name,
                                      const std::string& out_dir, const MoeOptions& options);
formats::Result<MoeReport> RunMoeFile(const std::string& recipe_path, const std::string& out_dir,
                                      const MoeOptions& options);

}  // namespace alloy::merge
