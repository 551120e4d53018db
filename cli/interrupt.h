// Ctrl-C handling for long jobs: the first SIGINT/SIGTERM sets a flag that
// jobs poll so they stop cleanly and remove their temporary output; a second
// one kills the process at once (default action).
#pragma once

#include <atomic>

namespace alloy::cli {

// Installs the handlers (idempotent) and returns the flag they set.
const std::atomic<bool>* InstallInterruptHandler();

}  // namespace alloy::cli
