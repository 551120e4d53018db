// Hugging Face model directories: reading (single file or sharded with an
// index) and the list of companion files a merge or conversion carries over.
//
// Thread safety: the returned source is safe to use from several threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "formats/byte_source.h"
#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::formats {

// Files copied from a donor model next to the weights, in this order when present.
const std::vector<std::string>& CompanionFileNames();

// Opens a checkpoint at `path`:
// * a .safetensors file;
// * a directory with model.safetensors.index.json (sharded; index validated:
//   strict JSON, weight_map an object of strings, no path traversal, shard
//   extension matches, every shard present and holding its tensors, no tensor
//   in two shards; unmapped tensors in a shard are warned about and ignored);
// * a directory with model.safetensors;
// * when the directory has no safetensors: pytorch_model.bin.index.json
//   (sharded .bin, validated like the safetensors index), else
//   pytorch_model.bin;
// * a PyTorch file (torch.save zip: .bin/.pt; torch_reader.h), chosen by
//   content like every file argument; legacy pre-1.6 pickles, TorchScript and
//   other non-zip torch formats → kUnsupported;
// * a PEFT/other layout → kUnsupported naming what was found.
// Fails with kNotFound (nothing loadable; the message lists what was looked
// for), kCorrupt (with file, tensor and byte offset), kIoError.
// Warnings (unmapped tensors) are appended to `warnings` when non-null.
// Files found through a directory (weights, index, shards) must resolve
// inside it unless `symlinks` is kFollow (path_guard.h; kInvalidArgument).
Result<std::unique_ptr<TensorSource>> OpenModel(
    const std::string& path, FileAccess access = FileAccess::kMmap,
    std::vector<std::string>* warnings = nullptr,
    SymlinkPolicy symlinks = SymlinkPolicy::kStayInside);

// Companion files (CompanionFileNames()) present in `dir`, as bare names.
std::vector<std::string> ListCompanionFiles(const std::string& dir);

// The directory holding the checkpoint at `path` (itself for a directory).
std::string ModelDirectoryOf(const std::string& path);

}  // namespace alloy::formats
