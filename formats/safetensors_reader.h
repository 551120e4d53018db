// safetensors reader: validates a file's header completely, then exposes its
// tensors as a TensorSource backed by a ByteSource.
//
// Validation (checkpoint-formats.md §1.5 plus alloy's rules) happens through
// ReadAt() before anything is mapped: header length cap, UTF-8, strict JSON
// with duplicate-key refusal, `__metadata__` a string map, known dtypes,
// non-negative integer shapes, overflow-checked sizes, offsets that tile the
// data region exactly and end at EOF. Unaligned data is accepted.
//
// Thread safety: the returned source is safe to use from several threads.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/byte_source.h"
#include "formats/status.h"
#include "formats/tensor_info.h"
#include "formats/tensor_source.h"

namespace alloy::formats {

inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
// Dimensions per tensor (numpy's NPY_MAXDIMS; the reference has no cap, but a
// header of a million 1s must not become a million-entry shape).
inline constexpr size_t kMaxSafetensorsDims = 64;

struct SafetensorsHeader {
  // In data order (sorted by offset). file_offset is absolute in the file.
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
};

// Reads and validates the header of the safetensors file in `src`, using only
// ReadAt(). On failure returns kCorrupt (or kIoError) with a message that
// starts with src.name() and names the tensor and byte offset where relevant,
// e.g. "m.safetensors: invalid offset for tensor 'w': begins at data byte 4,
// expected 0 (file byte 64)".
Result<SafetensorsHeader> ReadSafetensorsHeader(const ByteSource& src);

// Validates `src` and wraps it. Fails like ReadSafetensorsHeader.
Result<std::unique_ptr<TensorSource>> OpenSafetensors(std::unique_ptr<ByteSource> src);

// Opens and validates the file at `path`.
Result<std::unique_ptr<TensorSource>> OpenSafetensorsFile(const std::string& path,
                                                          FileAccess access = FileAccess::kMmap);

}  // namespace alloy::formats
