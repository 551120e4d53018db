// Fuzzes PEFT adapter_config.json: the input is the config of a small valid
// adapter (its adapter_model.safetensors written once per process, then held
// in memory), and LoraAdapter::OpenFromConfigText resolves it. No file I/O
// per run; Open's file-level checks (symlinks, missing files) are in
// formats_tests.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "formats/lora_adapter.h"
#include "formats/safetensors_reader.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

struct Fixture {
  std::string dir;
  std::string weights;  // adapter_model.safetensors
};

const Fixture& GetFixture() {
  static const Fixture fixture = [] {
    Fixture f;
    f.dir = alloy::fuzz::ProcessDir() + "/adapter";
    alloy::fuzz::RequireFixture(alloy::examples::WriteTinyLoraAdapter(
        alloy::fuzz::FixtureModelSpec(), alloy::fuzz::FixtureLoraSpec(), f.dir));
    std::ifstream in(f.dir + "/adapter_model.safetensors", std::ios::binary);
    f.weights = std::string(std::istreambuf_iterator<char>(in), {});
    if (f.weights.empty()) {
      std::fprintf(stderr, "fixture: empty adapter_model.safetensors\n");
      std::abort();
    }
    return f;
  }();
  return fixture;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  const Fixture& fixture = GetFixture();
  const LoraAdapter::WeightsOpener open_weights = [&]() {
    return OpenSafetensors(
        MakeMemorySource(fixture.weights, fixture.dir + "/adapter_model.safetensors"));
  };
  Result<std::unique_ptr<LoraAdapter>> opened = LoraAdapter::OpenFromConfigText(
      fixture.dir, std::string_view(reinterpret_cast<const char*>(data), size), open_weights);
  if (!opened.ok()) return 0;
  LoraAdapter& a = **opened;
  for (const LoraDelta& d : a.deltas()) {
    if (d.b == nullptr) __builtin_trap();  // every kind has a B (or the bias)
    if (d.kind != LoraKind::kBias && (d.a == nullptr || d.rank <= 0)) __builtin_trap();
  }
  (void)a.replacements();
  return 0;
}
