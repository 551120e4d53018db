// Fuzzes the safetensors reader on in-memory bytes: header validation
// (ReadSafetensorsHeader via OpenSafetensors), then every accessor of the
// source it returns, reading each tensor in full.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "formats/byte_source.h"
#include "formats/safetensors_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  auto src = MakeMemorySource(std::move(bytes), "fuzz.safetensors");
  Result<std::unique_ptr<TensorSource>> opened = OpenSafetensors(std::move(src));
  if (!opened.ok()) return 0;
  TensorSource& ts = **opened;
  (void)ts.metadata();
  std::vector<uint8_t> buf;
  for (const TensorInfo& t : ts.tensors()) {
    if (ts.Find(t.name) != &t) __builtin_trap();  // names are unique after validation
    Result<std::span<const uint8_t>> view = ts.View(t);
    if (!view.ok()) continue;
    buf.assign(view->begin(), view->end());  // touch every byte
    if (!buf.empty()) {
      std::vector<uint8_t> one(1);
      (void)ts.Read(t, buf.size() - 1, one);
    }
    ts.Release(t);
  }
  return 0;
}
