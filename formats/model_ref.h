// Model references: a local path, or `org/name[@revision]` resolved offline
// through the Hugging Face hub cache (checkpoint-formats.md §2.5).
//
// Thread safety: pure functions (they read the environment and the disk).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"

namespace alloy::formats {

// Returns an environment variable's value or nullptr (std::getenv by default).
using GetEnvFn = std::function<const char*(const char*)>;

// The hub cache roots to search, in order: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE,
// $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub
// (only those whose variables are set; `~` expanded).
std::vector<std::string> HubCacheRoots(const GetEnvFn& getenv);

// Resolves `ref` to a local file or directory:
// 1. an existing path is returned as is;
// 2. `org/name` or `org/name@revision` (revision: branch, tag, or 40-hex
//    commit) is looked up in each cache root: refs/<revision> → snapshots/<sha>.
// Fails with kNotFound listing every place it looked; kCorrupt for a broken
// cache entry (refs not 40-hex, missing snapshot, dangling blob link, a link
// escaping the repo folder); kInvalidArgument for a malformed repo id.
Result<std::string> ResolveModelReference(std::string_view ref, const GetEnvFn& getenv);
Result<std::string> ResolveModelReference(std::string_view ref);

}  // namespace alloy::formats
