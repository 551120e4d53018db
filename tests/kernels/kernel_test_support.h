// Shared pieces of the kernel tests: the length sweep around the chunk size
// (style guide §10) and a guard that restores the default thread count.
#pragma once

#include <cstddef>
#include <vector>

#include "kernels/parallel.h"

namespace alloy::kernels {

// Restores the default thread count when a test that changed it ends.
struct ThreadsGuard {
  ~ThreadsGuard() { SetThreads(0); }
};

inline constexpr size_t kBlock = kDefaultChunkElems;
inline const std::vector<size_t> kLengths = {0,      1,          3,         7,
                                             kBlock - 1, kBlock, kBlock + 1, 100000};

}  // namespace alloy::kernels
