// Fuzzes PEFT adapter_config.json: the input becomes adapter_config.json in
// a per-process directory whose adapter_model.safetensors is a small valid
// adapter (written once), then LoraAdapter::Open resolves it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "formats/lora_adapter.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const std::string& AdapterDir() {
  static const std::string dir = [] {
    std::string d = alloy::fuzz::ProcessDir() + "/adapter";
    alloy::fuzz::RequireFixture(alloy::examples::WriteTinyLoraAdapter(
        alloy::fuzz::FixtureModelSpec(), alloy::fuzz::FixtureLoraSpec(), d));
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  const std::string& dir = AdapterDir();
  alloy::fuzz::WriteFile(dir + "/adapter_config.json",
                         std::string_view(reinterpret_cast<const char*>(data), size));
  Result<std::unique_ptr<LoraAdapter>> opened = LoraAdapter::Open(dir);
  if (!opened.ok()) return 0;
  LoraAdapter& a = **opened;
  for (const LoraDelta& d : a.deltas()) {
    if (d.b == nullptr) __builtin_trap();  // every kind has a B (or the bias)
    if (d.kind != LoraKind::kBias && (d.a == nullptr || d.rank <= 0)) __builtin_trap();
  }
  (void)a.replacements();
  return 0;
}
