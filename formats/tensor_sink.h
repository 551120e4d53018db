// TensorSink: where merged or converted tensors go.
//
// Use: Begin(all tensors, metadata) once, then WriteAt() every byte of every
// tensor (in plan order by convention; any order works because writes go to
// offsets known from Begin), then Finish(). Output is written under temporary
// names and renamed into place only by Finish(), so an input that is still
// mapped is never truncated and a failed run never leaves a file that looks
// complete. Destroying a sink without Finish() calls Abort().
//
// Thread safety: WriteAt() may be called concurrently for disjoint ranges;
// Begin/Finish/Abort must not race with anything.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "formats/status.h"
#include "formats/tensor_info.h"

namespace alloy::formats {

class TensorSink {
 public:
  virtual ~TensorSink() = default;

  // Declares the output. Fails with kInvalidArgument on a duplicate name, the
  // reserved name `__metadata__`, or an nbytes that disagrees with the shape;
  // kIoError when the output cannot be created.
  virtual Status Begin(const std::vector<TensorInfo>& tensors,
                       const std::map<std::string, std::string>& metadata) = 0;

  // Writes `bytes` at `offset` inside tensor number `index` (Begin's order).
  // Fails with kInvalidArgument when the range is outside the tensor,
  // kIoError when the write fails.
  virtual Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) = 0;

  // Flushes (fsync if requested at construction) and renames the output into
  // place. Fails with kInvalidArgument if not every declared byte was written,
  // kIoError when flushing or renaming fails (the temporary output is removed).
  virtual Status Finish() = 0;

  // Removes any temporary output. Idempotent; no-op after Finish().
  virtual void Abort() = 0;
};

}  // namespace alloy::formats
