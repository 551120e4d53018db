// TensorSource: the tensors of one checkpoint, read lazily.
//
// Single files and sharded directories look the same. Every tensor listed has
// been validated (dtype known, byte size matches the shape, data inside the
// file) before the source is handed out.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"
#include "formats/tensor_info.h"

namespace alloy::formats {

class TensorSource {
 public:
  virtual ~TensorSource() = default;

  // The path of the file or directory, for messages.
  virtual const std::string& name() const = 0;

  // All tensors: files in shard order, data order within a file.
  virtual const std::vector<TensorInfo>& tensors() const = 0;

  // The tensor called `name`, or nullptr.
  virtual const TensorInfo* Find(std::string_view name) const = 0;

  // The tensor's bytes, zero-copy where the file is mapped.
  // REQUIRES: `info` came from tensors() or Find() of this source.
  // The view is valid until Release() covers it or the source is destroyed.
  virtual Result<std::span<const uint8_t>> View(const TensorInfo& info) = 0;

  // Copies bytes [offset, offset + out.size()) of the tensor into `out`.
  // Fails with kInvalidArgument when the range is outside the tensor.
  virtual Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const = 0;

  // Gives back the resident pages of bytes [offset, offset + len) of the
  // tensor (clamped to the tensor). A hint; data stays readable.
  virtual void Release(const TensorInfo& info, uint64_t offset = 0,
                       uint64_t len = std::numeric_limits<uint64_t>::max()) = 0;

  // String metadata (safetensors `__metadata__`; for shards, the first shard's).
  virtual const std::map<std::string, std::string>& metadata() const = 0;

  // The files behind this source, in shard order (one entry for one file).
  virtual const std::vector<std::string>& files() const = 0;
};

}  // namespace alloy::formats
