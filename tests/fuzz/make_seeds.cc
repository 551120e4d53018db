// Writes the generated seed corpora for the fuzz targets into <out>/<target>/:
// the fixture model's index and shards (sharded_index_fuzz, safetensors_fuzz)
// and the fixture adapter's config and weights (lora_config_fuzz,
// safetensors_fuzz). Recipe seeds are copied from ../shared/recipes by the
// Makefile. Usage: make_seeds <out>
#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/fuzz/fuzz_support.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  const std::string work = alloy::fuzz::ProcessDir();
  const std::string model = work + "/model", adapter = work + "/adapter";
  alloy::formats::Status s = alloy::examples::WriteTinyModel(alloy::fuzz::FixtureModelSpec(), model);
  if (s.ok()) {
    s = alloy::examples::WriteTinyLoraAdapter(alloy::fuzz::FixtureModelSpec(),
                                              alloy::fuzz::FixtureLoraSpec(), adapter);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "make_seeds: %s\n", s.ToString().c_str());
    return 1;
  }
  for (const char* t : {"safetensors_fuzz", "sharded_index_fuzz", "lora_config_fuzz"}) {
    fs::create_directories(out / t);
  }
  const auto copy = [](const fs::path& from, const fs::path& to) {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  };
  int n = 0;
  for (const auto& e : fs::directory_iterator(model)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors")) copy(e.path(), out / "safetensors_fuzz" / ("gen-" + name)), ++n;
  }
  copy(model + "/model.safetensors.index.json", out / "sharded_index_fuzz" / "gen-index.json");
  copy(adapter + "/adapter_model.safetensors", out / "safetensors_fuzz" / "gen-adapter.safetensors");
  copy(adapter + "/adapter_config.json", out / "lora_config_fuzz" / "gen-adapter_config.json");
  std::printf("make_seeds: %d shard seeds + index + adapter into %s\n", n, out.c_str());
  return 0;
}
