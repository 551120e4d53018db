// Sharded Hugging Face safetensors checkpoints: `model.safetensors.index.json`
// plus the shard files it names, exposed as one TensorSource
// (checkpoint-formats.md §2.1). Used by OpenModel (model_dir.h).
//
// Thread safety: the returned source is safe to use from several threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "formats/byte_source.h"
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
Result<std::unique_ptr<TensorSource>> OpenShardedSafetensors(const std::string& index_path,
                                                             FileAccess access,
                                                             std::vector<std::string>* warnings);

}  // namespace alloy::formats
