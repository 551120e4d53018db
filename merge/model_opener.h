// DiskModelOpener: the planner's model opener for real checkpoints. Applies
// `--path-map`, resolves hub ids through the local cache
// (formats::ResolveModelReference), opens each checkpoint once
// (formats::OpenModel) and reads its config.json.
//
// Thread safety: not thread-safe; one opener per merge. Sources live as long
// as the opener.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "formats/byte_source.h"
#include "formats/path_guard.h"
#include "formats/status.h"
#include "formats/tensor_source.h"
#include "merge/plan.h"

namespace alloy::merge {

// The local paths `ref` reads (the model, and its LoRA adapter), after
// `path_map`, resolved as DiskModelOpener::Open resolves them (a sharded
// index file stands for its directory). References that do not resolve are
// left out: opening them reports the error. For CheckOutputOutsideInputs.
std::vector<std::string> LocalInputPaths(
    const ModelRef& ref, const std::vector<std::pair<std::string, std::string>>& path_map = {});

class DiskModelOpener {
 public:
  // `lora_scale` multiplies the scale of every adapter applied (`model+lora`).
  // `symlinks`: whether files of a model directory (weights, config.json,
  // adapter files) may be symlinks leading outside it (formats/path_guard.h).
  explicit DiskModelOpener(std::vector<std::pair<std::string, std::string>> path_map = {},
                           formats::FileAccess access = formats::FileAccess::kMmap,
                           double lora_scale = 1.0,
                           formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside);

  // Opens `ref` (after the path map) or returns the cached model with the same
  // canonical directory. A revision on a path that exists locally is ignored
  // with a warning (as mergekit); `override_architecture` replaces the
  // config's `architectures`. Fails with kNotFound (no such path or hub cache
  // entry), kCorrupt (weights, config.json or adapter), kUnsupported (layouts
  // OpenModel refuses, adapters alloy cannot apply), kInvalidArgument (an
  // adapter that does not fit the model), kIoError. `model+lora` opens the
  // model with the adapter applied while streaming (merge/lora_source.h).
  formats::Result<OpenedModel> Open(const ModelRef& ref);

  // A ModelOpener bound to this object. REQUIRES: the opener outlives it.
  ModelOpener AsOpener();

  // Warnings from opening (unmapped shard tensors), in order.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  formats::Result<std::string> Resolve(const std::string& path, const std::string& revision,
                                       const std::string& text);
  static formats::Result<OpenedModel> WithArchitecture(OpenedModel opened, const ModelRef& ref);

  struct Entry {
    std::unique_ptr<formats::TensorSource> source;
    OpenedModel opened;
  };
  std::vector<std::pair<std::string, std::string>> path_map_;
  formats::FileAccess access_;
  double lora_scale_ = 1.0;
  formats::SymlinkPolicy symlinks_;
  std::map<std::string, Entry> by_path_;  // identity → model
  std::vector<std::string> warnings_;
};

}  // namespace alloy::merge
