// Fuzzes model.safetensors.index.json: the input is the index of a real, tiny
// sharded checkpoint (written once per process, then held in memory), and
// OpenShardedIndexText validates it against those shards. The shards are
// opened from memory, so a run costs no file I/O; the file-level checks of
// OpenShardedIndex (symlink policy, missing file) are in formats_tests.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "formats/safetensors_reader.h"
#include "formats/sharded_source.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

struct Fixture {
  std::string index_path;                    // where the index would be
  std::map<std::string, std::string> shards;  // file name → bytes
};

const Fixture& GetFixture() {
  static const Fixture fixture = [] {
    Fixture f;
    const std::string dir = alloy::fuzz::ProcessDir() + "/model";
    alloy::fuzz::RequireFixture(
        alloy::examples::WriteTinyModel(alloy::fuzz::FixtureModelSpec(), dir));
    f.index_path = dir + "/model.safetensors.index.json";
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (e.path().extension() != ".safetensors") continue;
      std::ifstream in(e.path(), std::ios::binary);
      f.shards[name] = std::string(std::istreambuf_iterator<char>(in), {});
    }
    if (f.shards.size() < 2) {
      std::fprintf(stderr, "fixture: expected a sharded model, got %zu shards\n", f.shards.size());
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
  const ShardOpener open_shard =
      [&](const std::string& shard, const std::string& path) -> Result<std::unique_ptr<TensorSource>> {
    auto it = fixture.shards.find(shard);
    if (it == fixture.shards.end()) return Status::Corrupt("missing shard " + shard);
    return OpenSafetensors(MakeMemorySource(it->second, path));
  };
  std::vector<std::string> warnings;
  Result<std::unique_ptr<TensorSource>> opened = OpenShardedIndexText(
      std::string_view(reinterpret_cast<const char*>(data), size), fixture.index_path,
      ShardFormat::kSafetensors, open_shard, &warnings);
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
