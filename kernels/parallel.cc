#include "kernels/parallel.h"

#include <algorithm>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace alloy::kernels {
namespace {
int g_threads = 0;  // 0 = not set yet: all cores

int HardwareThreads() noexcept {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}
}  // namespace

int SetThreads(int n) noexcept {
  g_threads = n > 0 ? n : HardwareThreads();
#ifdef _OPENMP
  omp_set_num_threads(g_threads);
#endif
  return g_threads;
}

int Threads() noexcept { return g_threads > 0 ? g_threads : HardwareThreads(); }

int ThreadIndex() noexcept {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

void ParallelForChunks(size_t n, size_t chunk,
                       const std::function<void(size_t, size_t, size_t)>& fn) noexcept {
  if (n == 0) return;
  if (chunk == 0) chunk = kDefaultChunkElems;
  const size_t n_chunks = (n + chunk - 1) / chunk;
#ifdef _OPENMP
  const int threads = static_cast<int>(std::min<size_t>(n_chunks, static_cast<size_t>(Threads())));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (size_t chunk_idx = 0; chunk_idx < n_chunks; ++chunk_idx) {
    const size_t begin = chunk_idx * chunk;
    fn(chunk_idx, begin, std::min(n, begin + chunk));
  }
#else
  for (size_t chunk_idx = 0; chunk_idx < n_chunks; ++chunk_idx) {
    const size_t begin = chunk_idx * chunk;
    fn(chunk_idx, begin, std::min(n, begin + chunk));
  }
#endif
}

}  // namespace alloy::kernels
