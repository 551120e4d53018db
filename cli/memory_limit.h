// `--memory-limit SIZE` (every command; or ALLOY_MEMORY_LIMIT): a ceiling on
// the memory alloy allocates, so that a job which would outgrow the machine
// fails cleanly (exit 3, temporaries removed) instead of being OOM-killed.
//
// The limit is RLIMIT_DATA: the kernel refuses heap and anonymous mappings
// past it, malloc/new fail, and the error unwinds through the writers, which
// remove their temporary output. Memory-mapped inputs are read-only shared
// mappings and do not count. Each thread's stack reservation (8 MiB, mostly
// never touched) is added on top so a limit cannot stop threads from starting.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "formats/status.h"

namespace alloy::cli {

// Smallest accepted limit: below it alloy cannot even plan a merge.
inline constexpr uint64_t kMinMemoryLimit = uint64_t{64} << 20;

// Parses "8GiB", "512MiB", "8GB", "1.5GiB", ... (formats::ParseByteSize).
// "none", "off" or "0" mean no limit (nullopt). Fails with kInvalidArgument
// for text that is not a size or a size below kMinMemoryLimit.
formats::Result<std::optional<uint64_t>> ParseMemoryLimit(const std::string& text);

// Applies `bytes` (plus the per-thread stack allowance) as the soft
// RLIMIT_DATA, never above the hard limit. kIoError when setrlimit fails.
formats::Status ApplyMemoryLimit(uint64_t bytes);

// The limit applied by ApplyMemoryLimit in this process, or 0.
uint64_t AppliedMemoryLimit();

// "out of memory" or, under a limit, which limit was reached and what to do.
std::string OutOfMemoryMessage();

}  // namespace alloy::cli
