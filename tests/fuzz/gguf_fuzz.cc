// Fuzzes the GGUF reader on in-memory bytes: header validation
// (ReadGgufHeader), then GgufSource over the same bytes — every accessor, a
// few bytes at both ends of each tensor through Read/ReadRaw/View — and the
// writer's header serializer on what was read, whose output must parse again.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "formats/byte_source.h"
#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Result<GgufHeader> header = ReadGgufHeader(*MakeMemorySource(bytes, "fuzz.gguf"));
  if (!header.ok()) return 0;
  for (const GgufKv& kv : header->kvs) {
    (void)kv.value.Describe();
    (void)kv.value.AsUint();
    (void)kv.value.AsFloat();
  }
  (void)header->Architecture();

  Result<std::unique_ptr<GgufSource>> opened =
      GgufSource::Open(MakeMemorySource(bytes, "fuzz.gguf"));
  if (!opened.ok()) __builtin_trap();  // the header parsed, so the source opens
  GgufSource& src = **opened;
  (void)src.metadata();
  uint8_t buf[16];
  for (const TensorInfo& t : src.tensors()) {
    if (src.Find(t.name) != &t) __builtin_trap();  // names are unique after validation
    const uint64_t stored = src.gguf_tensor(t).nbytes;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(stored, sizeof(buf)));
    const std::span<uint8_t> head(buf, n);
    if (!src.ReadRaw(t, 0, head).ok() || !src.ReadRaw(t, stored - n, head).ok()) __builtin_trap();
    if (src.ReadRaw(t, stored, std::span<uint8_t>(buf, 1)).ok()) __builtin_trap();
    if (src.quantized(t)) {
      if (src.Read(t, 0, head).code() != ErrorCode::kUnsupported) __builtin_trap();
    } else {
      if (!src.Read(t, 0, head).ok() || !src.Read(t, t.nbytes - n, head).ok()) __builtin_trap();
      Result<std::span<const uint8_t>> view = src.View(t);
      if (!view.ok() || view->size() != t.nbytes) __builtin_trap();
      src.Release(t, 0, t.nbytes);
    }
  }

  // Writing back what was read gives a header the reader accepts (the
  // serializer refuses a few things the reader lets through, e.g. an empty
  // tensor name; then there is nothing to compare).
  if (header->alignment > (1u << 20)) return 0;  // the padding alone would be that big
  std::vector<GgufTensor> tensors = header->tensors;
  Result<GgufLayout> layout = PlanGgufLayout(header->kvs, tensors, header->alignment);
  if (!layout.ok()) return 0;
  if (layout->file_size > (uint64_t{1} << 24)) return 0;
  std::string rewritten = layout->header;
  rewritten.resize(static_cast<size_t>(layout->file_size), '\0');
  Result<GgufHeader> again = ReadGgufHeader(*MakeMemorySource(std::move(rewritten), "again.gguf"));
  if (!again.ok() || again->alignment != header->alignment ||
      again->tensors.size() != header->tensors.size()) {
    __builtin_trap();
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (again->tensors[i].offset != header->tensors[i].offset ||
        again->tensors[i].nbytes != header->tensors[i].nbytes) {
      __builtin_trap();
    }
  }
  return 0;
}
