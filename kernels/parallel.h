// Deterministic parallel loops: the only OpenMP code in alloy. Built without
// OpenMP (-DALLOY_OPENMP=OFF, as the ThreadSanitizer build is), the loops run
// on std::threads started per call, with the same chunks and worker indices.
//
// Work is cut into chunks at fixed boundaries (independent of the thread
// count); reductions keep one partial per chunk and combine them in chunk
// order, so results are bit-identical at any thread count.
//
// Thread safety: SetThreads is process-wide; call it once before work starts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace alloy::kernels {

inline constexpr size_t kDefaultChunkElems = size_t{1} << 16;  // 64Ki elements

// Sets the number of worker threads (0 = all cores). Returns the number in effect.
int SetThreads(int n) noexcept;
int Threads() noexcept;
// The calling worker's index in [0, Threads()) inside ParallelForChunks, 0 outside.
int ThreadIndex() noexcept;

// Calls fn(chunk_idx, begin, end) for every chunk [begin, end) of [0, n),
// chunks of `chunk` elements (the last may be shorter), in parallel.
// If fn throws (std::bad_alloc under a memory limit), chunks not started yet
// are skipped and the first exception caught is rethrown to the caller once
// every worker has stopped; alloy's errors otherwise travel as Status.
void ParallelForChunks(size_t n, size_t chunk,
                       const std::function<void(size_t, size_t, size_t)>& fn);

}  // namespace alloy::kernels
