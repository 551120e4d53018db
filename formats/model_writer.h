// ModelDirWriter: a TensorSink that writes a Hugging Face model directory:
// `model.safetensors`, or `model-0000i-of-0000n.safetensors` shards plus
// `model.safetensors.index.json` (weight_map + metadata.total_size).
//
// Shards are cut greedily by bytes in Begin()'s order (a tensor larger than
// the limit gets a shard of its own). Everything is written into a temporary
// sibling directory `<out>.alloy-partial-<pid>`; Finish() renames it to
// `<out>`, so a failed or interrupted run never leaves a directory that looks
// complete. Create() first removes the temporaries of `<out>` that processes
// which are gone left behind (formats/temp_files.h).
//
// Thread safety: as TensorSink; AddFile/CopyFile must not race with Finish.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"
#include "formats/tensor_sink.h"

namespace alloy::formats {

inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000;  // mergekit's "5B"

// Parses a shard size: plain bytes ("1048576"), decimal suffixes k/m/b/t (as
// mergekit: 5B = 5e9) and KB/MB/GB/TB, binary KiB/MiB/GiB/TiB; case-insensitive;
// decimals allowed ("1.5GB"). Fails with kInvalidArgument naming the text.
Result<uint64_t> ParseByteSize(std::string_view text);

// "<stem>.safetensors" for n == 1, else "<stem>-0000i-of-0000n.safetensors"
// (i is 1-based).
std::string ShardFileName(size_t i, size_t n, std::string_view stem = "model");

struct ModelWriterOptions {
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;
  bool fsync = false;      // fsync every file and the directory before renaming
  bool overwrite = false;  // replace an existing non-empty output directory
  // Weight files are <stem>.safetensors, or <stem>-0000i-of-0000n.safetensors
  // plus <stem>.safetensors.index.json ("adapter_model" for PEFT adapters).
  std::string weights_stem = "model";
};

class ModelDirWriter : public TensorSink {
 public:
  // Fails with kInvalidArgument when `out_dir` exists, is not empty and
  // overwrite is false (or is a file); kIoError when the temporary directory
  // cannot be created.
  static Result<std::unique_ptr<ModelDirWriter>> Create(std::string out_dir,
                                                        ModelWriterOptions options);

  // Adds a file (config.json, README.md, ...) to the output directory.
  // `relative_name` must be a plain file name (no separators, not "..").
  virtual Status AddFile(const std::string& relative_name, std::string_view contents) = 0;
  // Copies `src_path` into the output directory as `relative_name`.
  virtual Status CopyFile(const std::string& src_path, const std::string& relative_name) = 0;
  // After Begin(): the weight file names in shard order.
  virtual const std::vector<std::string>& weight_files() const = 0;
  // The final directory.
  virtual const std::string& out_dir() const = 0;
};

}  // namespace alloy::formats
