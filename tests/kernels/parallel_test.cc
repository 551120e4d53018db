// Tests for kernels/parallel: fixed chunk boundaries and thread-count
// independent (bit-identical) chunked reductions.
#include "tests/kernels/kernel_test_support.h"
#include "kernels/parallel.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <atomic>
#include <cstdint>
#include <new>
#include <random>
#include <stdexcept>
#include <vector>

#include <catch2/catch.hpp>

namespace alloy::kernels {
namespace {

struct ChunkRecord {
  int calls = 0;
  size_t begin = 0;
  size_t end = 0;
};

// Restores the process-wide thread count when a test ends.
void CheckCoverage(size_t n, size_t chunk, int threads) {
  CAPTURE(n, chunk, threads);
  SetThreads(threads);
  const size_t effective_chunk = chunk == 0 ? kDefaultChunkElems : chunk;
  const size_t n_chunks = (n + effective_chunk - 1) / effective_chunk;
  // Each chunk writes only its own slot and its own elements: no data race.
  std::vector<ChunkRecord> chunks(n_chunks + 1);
  std::vector<int> hits(n, 0);
  ParallelForChunks(n, chunk, [&](size_t idx, size_t begin, size_t end) {
    if (idx >= chunks.size()) return;
    ++chunks[idx].calls;
    chunks[idx].begin = begin;
    chunks[idx].end = end;
    for (size_t i = begin; i < end && i < n; ++i) ++hits[i];
  });
  for (size_t c = 0; c < n_chunks; ++c) {
    CAPTURE(c);
    CHECK(chunks[c].calls == 1);
    CHECK(chunks[c].begin == c * effective_chunk);
    CHECK(chunks[c].end == std::min(n, (c + 1) * effective_chunk));
  }
  CHECK(chunks[n_chunks].calls == 0);
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
}

TEST_CASE("ParallelForChunks covers every element once with fixed chunks", "[kernels]") {
  ThreadsGuard guard;
  for (int threads : {1, 4}) {
    CheckCoverage(0, 16, threads);
    CheckCoverage(1, 16, threads);
    CheckCoverage(16, 16, threads);
    CheckCoverage(17, 16, threads);
    CheckCoverage(1000, 7, threads);
    CheckCoverage(100003, 1024, threads);
    CheckCoverage(3 * kDefaultChunkElems + 5, 0, threads);  // 0 = default chunk
  }
}

TEST_CASE("an exception thrown by a chunk reaches the caller after the loop", "[kernels]") {
  ThreadsGuard guard;
  for (int threads : {1, 2, 4}) {
    CAPTURE(threads);
    SetThreads(threads);
    std::atomic<size_t> ran{0};
    CHECK_THROWS_AS(ParallelForChunks(1000, 10,
                                      [&](size_t idx, size_t, size_t) {
                                        ran.fetch_add(1);
                                        if (idx == 3) throw std::bad_alloc();
                                      }),
                    std::bad_alloc);
    // Chunks not started when the error was caught are skipped.
    CHECK(ran.load() >= 1);
    CHECK(ran.load() <= 100);
    // Every chunk throwing: one exception comes out, whichever was first.
    CHECK_THROWS_AS(ParallelForChunks(
                        64, 1, [](size_t, size_t, size_t) { throw std::runtime_error("chunk"); }),
                    std::runtime_error);
    // The next loop runs normally.
    std::vector<int> hits(100, 0);
    ParallelForChunks(100, 7, [&](size_t, size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) ++hits[i];
    });
    CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  }
}

TEST_CASE("SetThreads reports the thread count in effect", "[kernels]") {
  ThreadsGuard guard;
  CHECK(SetThreads(3) == 3);
  CHECK(Threads() == 3);
  CHECK(SetThreads(0) >= 1);
  CHECK(Threads() >= 1);
}

// Sum of f64 values with one partial per chunk, combined in chunk order.
double ChunkedSum(const std::vector<double>& v, size_t chunk) {
  const size_t n_chunks = (v.size() + chunk - 1) / chunk;
  std::vector<double> partial(n_chunks, 0.0);
  ParallelForChunks(v.size(), chunk, [&](size_t idx, size_t begin, size_t end) {
    double s = 0.0;
    for (size_t i = begin; i < end; ++i) s += v[i];
    partial[idx] = s;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

TEST_CASE("chunked f64 reduction is bit-identical at 1, 2 and 4 threads", "[kernels]") {
  ThreadsGuard guard;
  // Values over a wide dynamic range, so that the summation order matters.
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> v(1'000'003);
  for (double& x : v) x = std::ldexp(normal(rng), static_cast<int>(rng() % 60) - 30);

  for (size_t chunk : {size_t{1000}, size_t{4096}, kDefaultChunkElems}) {
    CAPTURE(chunk);
    SetThreads(1);
    const uint64_t at1 = std::bit_cast<uint64_t>(ChunkedSum(v, chunk));
    SetThreads(2);
    const uint64_t at2 = std::bit_cast<uint64_t>(ChunkedSum(v, chunk));
    SetThreads(4);
    const uint64_t at4 = std::bit_cast<uint64_t>(ChunkedSum(v, chunk));
    CHECK(at1 == at2);
    CHECK(at1 == at4);
    // Repeat runs too (dynamic scheduling hands chunks to different threads).
    for (int rep = 0; rep < 5; ++rep) {
      CHECK(std::bit_cast<uint64_t>(ChunkedSum(v, chunk)) == at1);
    }
  }
}

}  // namespace
}  // namespace alloy::kernels
