// Fuzzes model.safetensors.index.json: the input is written as the index of
// a per-process directory that holds a real, tiny sharded checkpoint (made
// once), then OpenShardedSafetensors validates it against those shards.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "formats/sharded_source.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const std::string& FixtureDir() {
  static const std::string dir = [] {
    std::string d = alloy::fuzz::ProcessDir() + "/model";
    alloy::fuzz::RequireFixture(
        alloy::examples::WriteTinyModel(alloy::fuzz::FixtureModelSpec(), d));
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  const std::string index = FixtureDir() + "/model.safetensors.index.json";
  alloy::fuzz::WriteFile(index, std::string_view(reinterpret_cast<const char*>(data), size));
  std::vector<std::string> warnings;
  Result<std::unique_ptr<TensorSource>> opened =
      OpenShardedSafetensors(index, FileAccess::kPread, &warnings);
  if (!opened.ok()) return 0;
  TensorSource& ts = **opened;
  (void)ts.metadata();
  for (const TensorInfo& t : ts.tensors()) {
    if (ts.Find(t.name) == nullptr) __builtin_trap();
    std::vector<uint8_t> one(t.nbytes ? 1 : 0);
    if (!ts.Read(t, 0, one).ok()) __builtin_trap();  // validated tensors must be readable
  }
  return 0;
}
