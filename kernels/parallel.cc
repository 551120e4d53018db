#include "kernels/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#else
#include <system_error>
#include <vector>
#endif

namespace alloy::kernels {
namespace {
int g_threads = 0;  // 0 = not set yet: all cores
#ifndef _OPENMP
// Without OpenMP (-DALLOY_OPENMP=OFF, e.g. the ThreadSanitizer build) loops run
// on std::threads with OpenMP's observable behaviour: worker indices in
// [0, threads), and a loop started inside another one runs serially as
// worker 0 (OpenMP's default of one active level).
thread_local int t_thread_index = 0;
thread_local bool t_in_loop = false;
#endif

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
  return t_thread_index;
#endif
}

namespace {

// The first exception thrown by any chunk's fn; once one is caught, chunks
// not started yet are skipped.
class FirstError {
 public:
  template <typename Fn>
  void Run(const Fn& fn) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      fn();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  void RethrowIfAny() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::exception_ptr error_;
};

}  // namespace

void ParallelForChunks(size_t n, size_t chunk,
                       const std::function<void(size_t, size_t, size_t)>& fn) {
  if (n == 0) return;
  if (chunk == 0) chunk = kDefaultChunkElems;
  const size_t n_chunks = (n + chunk - 1) / chunk;
  FirstError first_error;
  const auto run_chunk = [&](size_t chunk_idx) {
    first_error.Run([&] {
      const size_t begin = chunk_idx * chunk;
      fn(chunk_idx, begin, std::min(n, begin + chunk));
    });
  };
#ifdef _OPENMP
  const int threads = static_cast<int>(std::min<size_t>(n_chunks, static_cast<size_t>(Threads())));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (size_t chunk_idx = 0; chunk_idx < n_chunks; ++chunk_idx) run_chunk(chunk_idx);
#else
  const size_t threads = t_in_loop ? 1 : std::min<size_t>(n_chunks, static_cast<size_t>(Threads()));
  // Chunks are handed out one at a time, like schedule(dynamic, 1). The
  // counter only makes indices unique (relaxed): the joins order the results.
  std::atomic<size_t> next{0};
  const auto work = [&](int index) {
    const int saved_index = t_thread_index;
    const bool saved_in_loop = t_in_loop;
    t_thread_index = index;
    t_in_loop = true;
    for (size_t chunk_idx; (chunk_idx = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;) {
      run_chunk(chunk_idx);
    }
    t_thread_index = saved_index;
    t_in_loop = saved_in_loop;
  };
  std::vector<std::thread> workers;
  try {
    workers.reserve(threads - 1);
    for (size_t i = 1; i < threads; ++i) workers.emplace_back(work, static_cast<int>(i));
  } catch (const std::exception&) {
    // No thread (or no memory for one): the threads started so far and the
    // caller share the chunks.
  }
  work(0);
  for (std::thread& t : workers) t.join();
#endif
  first_error.RethrowIfAny();
}

}  // namespace alloy::kernels
