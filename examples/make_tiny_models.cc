// make_tiny_models: writes OUT_DIR/<family>-base and OUT_DIR/<family>-ft1..N,
// small (or Llama-3.2-1B-sized) Hugging Face checkpoints for tests, demos and
// benchmarks. See examples/tiny_models.h for what the weights look like.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <vector>

#include "examples/tiny_models.h"
#include "kernels/parallel.h"

namespace ex = alloy::examples;

namespace {

int Fail(const std::string& what, const alloy::formats::Status& status, int exit_code) {
  std::fprintf(stderr, "make_tiny_models: %s: %s\n", what.c_str(), status.ToString().c_str());
  return exit_code;
}

// Copies the fields of `o` that were given (> 0; a fine-tune scale of 0 counts) onto `spec`.
void ApplyOverrides(const ex::TinyModelSpec& o, ex::TinyModelSpec& spec) {
  auto take = [](auto& field, auto value) {
    if (value > 0) field = value;
  };
  take(spec.num_layers, o.num_layers);
  take(spec.hidden_size, o.hidden_size);
  take(spec.num_heads, o.num_heads);
  take(spec.num_kv_heads, o.num_kv_heads);
  take(spec.head_dim, o.head_dim);
  take(spec.intermediate_size, o.intermediate_size);
  take(spec.vocab_size, o.vocab_size);
  take(spec.max_position_embeddings, o.max_position_embeddings);
  take(spec.base_std, o.base_std);
  if (o.finetune_scale >= 0.0) spec.finetune_scale = o.finetune_scale;
}

std::string HumanBytes(uint64_t n) {
  const double b = static_cast<double>(n);
  char text[32];
  if (b >= 1e9) {
    std::snprintf(text, sizeof(text), "%.2f GB", b / 1e9);
  } else if (b >= 1e6) {
    std::snprintf(text, sizeof(text), "%.2f MB", b / 1e6);
  } else {
    std::snprintf(text, sizeof(text), "%.1f kB", b / 1e3);
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Writes small but real Hugging Face checkpoints: OUT_DIR/<family>-base and "
      "OUT_DIR/<family>-ft1..N (fine-tune i = base + scale * noise_i), replacing "
      "existing ones."};
  std::string out_dir, family_name = "llama", preset = "tiny", dtype_name = "bf16", shard_size;
  int finetunes = 2, threads = 0;
  uint64_t seed = 0;
  bool tied = false, untied = false;
  // Overrides: 0 (-1 for the scale) means "as the preset says".
  ex::TinyModelSpec o{.hidden_size = 0,
                      .num_layers = 0,
                      .num_heads = 0,
                      .num_kv_heads = 0,
                      .intermediate_size = 0,
                      .vocab_size = 0,
                      .max_position_embeddings = 0,
                      .base_std = 0.0,
                      .finetune_scale = -1.0};
  app.add_option("out_dir", out_dir, "Output directory")->required();
  app.add_option("--family", family_name, "llama, mistral, qwen2, gemma or all")
      ->check(CLI::IsMember({"llama", "mistral", "qwen2", "gemma", "all"}))
      ->capture_default_str();
  app.add_option("--finetunes", finetunes, "Fine-tunes per family")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--dtype", dtype_name, "bf16, f16 or f32")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_option("--shard-size", shard_size, "Max bytes per shard: 50KB, 2GB, ... (default 5GB)");
  app.add_option("--preset", preset, "tiny (hidden 64, 2 layers, vocab 256) or 1b (Llama-3.2-1B)")
      ->check(CLI::IsMember({"tiny", "1b"}))
      ->capture_default_str();
  app.add_option("--seed", seed, "Noise seed")->capture_default_str();
  app.add_option("--threads", threads, "Worker threads (0: all cores)")->capture_default_str();
  app.add_option("--layers", o.num_layers, "Override num_hidden_layers");
  app.add_option("--hidden", o.hidden_size, "Override hidden_size");
  app.add_option("--heads", o.num_heads, "Override num_attention_heads");
  app.add_option("--kv-heads", o.num_kv_heads, "Override num_key_value_heads");
  app.add_option("--head-dim", o.head_dim, "Override head_dim (default hidden / heads)");
  app.add_option("--intermediate", o.intermediate_size, "Override intermediate_size");
  app.add_option("--vocab", o.vocab_size, "Override vocab_size");
  app.add_option("--max-positions", o.max_position_embeddings, "Override max_position_embeddings");
  app.add_option("--ft-scale", o.finetune_scale, "Std of the fine-tune deltas (default 0.002)");
  app.add_option("--base-std", o.base_std,
                 "Std of the base weights (default 0.02; larger values give peaked outputs)");
  app.add_flag("--tied", tied, "Tie lm_head to embed_tokens (gemma always is)");
  app.add_flag("--untied", untied, "Write lm_head.weight (ignored for gemma)")->excludes("--tied");
  int lora_rank = 0;
  app.add_option("--lora-rank", lora_rank,
                 "Also write <family>-lora: a PEFT LoRA adapter of this rank for the base "
                 "(q_proj and v_proj, alpha = 2 x rank)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  uint64_t max_shard_bytes = alloy::formats::kDefaultMaxShardBytes;
  if (!shard_size.empty()) {
    auto parsed = alloy::formats::ParseByteSize(shard_size);
    if (!parsed.ok()) return Fail("--shard-size", parsed.status(), 2);
    max_shard_bytes = *parsed;
  }
  alloy::kernels::SetThreads(threads);
  std::vector<ex::Family> families(ex::kAllFamilies.begin(), ex::kAllFamilies.end());
  if (family_name != "all") families = {*ex::ParseFamily(family_name)};
  for (ex::Family family : families) {
    ex::TinyModelSpec spec = *ex::TinyModelPreset(preset, family);
    ApplyOverrides(o, spec);
    if (tied || untied) spec.tie_embeddings = tied;
    spec.dtype = *alloy::formats::ParseUserDType(dtype_name);
    spec.max_shard_bytes = max_shard_bytes;
    spec.seed = seed;
    for (int model_idx = 0; model_idx <= finetunes; ++model_idx) {
      spec.model_index = model_idx;
      const std::string name = std::string(ex::FamilyName(family)) +
                               (model_idx == 0 ? "-base" : "-ft" + std::to_string(model_idx));
      const auto start = std::chrono::steady_clock::now();
      ex::TinyModelStats stats;
      auto status = ex::WriteTinyModel(spec, out_dir + "/" + name, &stats);
      if (!status.ok()) return Fail(name, status, 1);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      std::printf("wrote %s/%s: %zu tensors, %s %s in %zu file(s), %.2f s\n", out_dir.c_str(),
                  name.c_str(), stats.n_tensors, HumanBytes(stats.n_bytes).c_str(),
                  dtype_name.c_str(), stats.n_files, took.count());
    }
    if (lora_rank > 0) {
      spec.model_index = 0;
      ex::TinyLoraSpec lora;
      lora.rank = lora_rank;
      lora.alpha = 2.0 * lora_rank;
      const std::string name = std::string(ex::FamilyName(family)) + "-lora";
      auto status = ex::WriteTinyLoraAdapter(spec, lora, out_dir + "/" + name);
      if (!status.ok()) return Fail(name, status, 1);
      std::printf("wrote %s/%s: LoRA adapter, rank %d, q_proj and v_proj\n", out_dir.c_str(),
                  name.c_str(), lora_rank);
    }
  }
  return 0;
}
