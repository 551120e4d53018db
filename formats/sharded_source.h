// Sharded Hugging Face safetensors checkpoints: `model.safetensors.index.json`
// plus the shard files it names, exposed as one TensorSource
// (checkpoint-formats.md §2.1). Used by OpenModel (model_dir.h).
//
// Thread safety: the returned source is safe to use from several threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/byte_source.h"
#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_source.h"

namespace alloy::formats {

// Validates the index at `index_path` and every shard it names, then returns
// a source that lists the shards in file-name order and, inside each shard,
// its tensors in data order (file_index = shard position).
// Fails with kCorrupt: invalid JSON or duplicate keys, weight_map absent / not
// an object / non-string values ("invalid index"), "invalid shard path",
// "extension mismatch", "missing shard", "tensor not found in shard",
// "tensor defined in multiple shards"; or as OpenSafetensorsFile for a shard.
// Tensors present in a shard but absent from weight_map are appended to
// `warnings` (when non-null) and ignored. metadata.total_size is not checked.
// A shard that resolves (through symlinks) outside the index's directory is
// refused with kInvalidArgument unless `symlinks` is kFollow (path_guard.h).
Result<std::unique_ptr<TensorSource>> OpenShardedSafetensors(
    const std::string& index_path, FileAccess access, std::vector<std::string>* warnings,
    SymlinkPolicy symlinks = SymlinkPolicy::kStayInside);

// The shard format an index names: model.safetensors.index.json lists
// .safetensors shards, pytorch_model.bin.index.json (same schema) .bin shards.
enum class ShardFormat : uint8_t { kSafetensors, kTorch };

// OpenShardedSafetensors for either index type: the same validation, with the
// shard extension checked against `format` (".bin" for kTorch) and each shard
// opened by OpenSafetensorsFile or OpenTorchFile (torch_reader.h); for torch
// shards, tensors are listed in each shard's state-dict order.
Result<std::unique_ptr<TensorSource>> OpenShardedIndex(
    const std::string& index_path, ShardFormat format, FileAccess access,
    std::vector<std::string>* warnings, SymlinkPolicy symlinks = SymlinkPolicy::kStayInside);

// Opens the shard `shard` (a validated weight_map value) found at `path`
// (the index's directory + "/" + shard).
using ShardOpener = std::function<Result<std::unique_ptr<TensorSource>>(const std::string& shard,
                                                                        const std::string& path)>;

// OpenShardedIndex with the index's text given and the shards opened by
// `open_shard` (OpenShardedIndex's opener checks the symlink policy and that
// the file exists, then opens it). `index_path` names the index in messages
// and gives the shards' directory. The fuzz target opens in-memory shards.
Result<std::unique_ptr<TensorSource>> OpenShardedIndexText(std::string_view text,
                                                           const std::string& index_path,
                                                           ShardFormat format,
                                                           const ShardOpener& open_shard,
                                                           std::vector<std::string>* warnings);

}  // namespace alloy::formats
