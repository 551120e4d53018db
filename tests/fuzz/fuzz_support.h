// Shared helpers for the libFuzzer targets in tests/fuzz/: a per-process
// scratch directory (removed at exit), whole-file writes, and the tiny model
// spec that both the targets' fixtures and the seed generator use, so the
// committed/generated seeds match the fixture files.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "examples/tiny_models.h"

namespace alloy::fuzz {

// A fresh directory under $TMPDIR (or /tmp) for this process; removed with
// its contents when the process exits normally (libFuzzer exits via exit()).
inline const std::string& ProcessDir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/alloy-fuzz-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    static std::string copy;
    copy = templ;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(copy, ec);
    });
    return templ;
  }();
  return dir;
}

inline void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// A very small llama (a few KiB per shard) split into several shards, so the
// fixture directory has a model.safetensors.index.json and real shard files.
// A fixture the target cannot run without: stops the process on failure.
inline void RequireFixture(const formats::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "fixture: %s\n", s.ToString().c_str());
    std::abort();
  }
}

inline examples::TinyModelSpec FixtureModelSpec() {
  examples::TinyModelSpec spec;
  spec.family = examples::Family::kLlama;
  spec.hidden_size = 8;
  spec.num_layers = 1;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.intermediate_size = 16;
  spec.vocab_size = 16;
  spec.max_position_embeddings = 64;
  spec.dtype = formats::DType::kF32;
  spec.max_shard_bytes = 1024;
  return spec;
}

inline examples::TinyLoraSpec FixtureLoraSpec() {
  examples::TinyLoraSpec lora;
  lora.rank = 2;
  lora.alpha = 4.0;
  return lora;
}

}  // namespace alloy::fuzz
