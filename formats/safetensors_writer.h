// safetensors writer: a TensorSink producing one .safetensors file that is
// byte-compatible with the reference serializer (checkpoint-formats.md §1.7).
//
// The header is computed up front from Begin()'s tensor list: `__metadata__`
// first with sorted keys and {"format":"pt"} added when absent, then tensors
// sorted by dtype (descending enum order) and name, packed back to back, the
// JSON padded with spaces to a multiple of 8. Data goes to `<path>.tmp-*`
// with pwrite at known offsets (so threads can write in parallel) and Finish()
// renames it over `path`.
//
// Thread safety: as TensorSink.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/status.h"
#include "formats/tensor_info.h"
#include "formats/tensor_sink.h"

namespace alloy::formats {

struct SafetensorsLayout {
  std::string header;                 // the 8-byte length prefix + padded JSON
  std::vector<uint64_t> data_offsets;  // per input tensor (input order), from data start
  uint64_t file_size = 0;
};

// Computes the file layout. Fails with kInvalidArgument on the name
// `__metadata__`, duplicate or empty names, an nbytes that disagrees with the
// shape, or a header larger than kMaxSafetensorsHeaderBytes.
Result<SafetensorsLayout> PlanSafetensorsLayout(const std::vector<TensorInfo>& tensors,
                                                const std::map<std::string, std::string>& metadata);

struct SafetensorsWriterOptions {
  bool fsync = false;  // fsync the file before renaming it into place
};

// Creates a writer for `path`; nothing touches the disk before Begin().
std::unique_ptr<TensorSink> MakeSafetensorsWriter(std::string path,
                                                  SafetensorsWriterOptions options = {});

}  // namespace alloy::formats
