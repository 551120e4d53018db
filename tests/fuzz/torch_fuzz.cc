// Fuzzes the PyTorch .bin reader on in-memory bytes: the zip layout
// (ZipArchive), the data.pkl unpickler and the state-dict walk via OpenTorch,
// then every accessor of the source it returns: Read, View and Release of a
// few bytes at both ends of each tensor, including non-contiguous (gathered)
// and big-endian (byte-swapped) ones.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "formats/byte_source.h"
#include "formats/tensor_info.h"
#include "formats/torch_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Result<std::unique_ptr<TensorSource>> opened =
      OpenTorch(MakeMemorySource(std::move(bytes), "fuzz.bin"));
  if (!opened.ok()) return 0;
  TensorSource& ts = **opened;
  (void)ts.metadata();
  if (ts.files().size() != 1) __builtin_trap();
  uint8_t head[16];
  uint8_t tail[16];
  for (const TensorInfo& t : ts.tensors()) {
    if (ts.Find(t.name) != &t) __builtin_trap();  // keys are unique after validation
    Result<uint64_t> expected = CheckedByteSize(t.dtype, t.shape);
    if (!expected.ok() || *expected != t.nbytes) __builtin_trap();
    // Views are bounds-checked against a storage entry, which lies in the file.
    if (t.nbytes > size) __builtin_trap();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(t.nbytes, sizeof(head)));
    if (!ts.Read(t, 0, std::span<uint8_t>(head, n)).ok() ||
        !ts.Read(t, t.nbytes - n, std::span<uint8_t>(tail, n)).ok()) {
      __builtin_trap();
    }
    if (ts.Read(t, t.nbytes, std::span<uint8_t>(head, 1)).code() != ErrorCode::kInvalidArgument) {
      __builtin_trap();
    }
    // An unaligned one-byte read inside an element goes through the bounce buffer.
    if (t.nbytes > 1) {
      uint8_t one = 0;
      if (!ts.Read(t, 1, std::span<uint8_t>(&one, 1)).ok() || one != head[1]) __builtin_trap();
    }
    Result<std::span<const uint8_t>> view = ts.View(t);
    if (!view.ok() || view->size() != t.nbytes) __builtin_trap();
    // View and Read agree at both ends.
    if (n > 0 && (std::memcmp(view->data(), head, n) != 0 ||
                  std::memcmp(view->data() + t.nbytes - n, tail, n) != 0)) {
      __builtin_trap();
    }
    ts.Release(t, 0, n);
    ts.Release(t);
    // Readable again after Release (a hint only).
    if (!ts.Read(t, 0, std::span<uint8_t>(head, n)).ok()) __builtin_trap();
  }
  return 0;
}
