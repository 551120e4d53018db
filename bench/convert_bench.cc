// Single-thread throughput of the element codecs on large buffers.
//
//   convert_bench [MiB]   (default 64: the size of the bf16/f16 input buffer)
//
// Reports GB/s of *input* bytes (1 GB = 1e9 bytes), best of several runs, by
// wall clock and by thread CPU time (the latter is steadier on a busy host).
// The "two-step" rows decode into an f32 buffer and encode from it, either over
// the whole buffer (two passes over memory) or through a 32 KiB scratch that
// stays in L1/L2 (what a streaming converter does).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <span>
#include <vector>

#include "kernels/convert.h"

namespace {

using alloy::kernels::EncodeStats;
using alloy::kernels::Overflow;

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

template <typename Fn>
void Run(const char* name, size_t input_bytes, Fn fn) {
  fn();  // warm-up: touches every page
  double best_wall = 1e30;
  double best_cpu = 1e30;
  for (int rep = 0; rep < 7; ++rep) {
    const double c0 = ThreadCpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    best_cpu = std::min(best_cpu, ThreadCpuSeconds() - c0);
    best_wall = std::min(best_wall, std::chrono::duration<double>(t1 - t0).count());
  }
  const auto gbs = [&](double s) { return static_cast<double>(input_bytes) / s / 1e9; };
  std::printf("%-44s %7.2f GB/s wall  %7.2f GB/s cpu\n", name, gbs(best_wall), gbs(best_cpu));
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  const size_t n = mib * (size_t{1} << 20) / 2;  // 16-bit elements

  // Realistic weights: N(0, 0.02), stored as bf16 / f16.
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> f32(n);
  for (float& x : f32) x = normal(rng);
  std::vector<uint16_t> bf16(n);
  std::vector<uint16_t> f16(n);
  std::vector<uint16_t> out16(n);
  std::vector<uint8_t> out8(n);
  alloy::kernels::EncodeBf16(f32, bf16, nullptr);
  alloy::kernels::EncodeF16(f32, f16, Overflow::kToInf, nullptr);
  EncodeStats st;
  volatile uint64_t sink = 0;

  std::printf("n = %zu elements (%zu MiB of 16-bit input), 1 thread\n", n, mib);
  Run("Bf16ToF16 (fused)", n * 2, [&] {
    alloy::kernels::Bf16ToF16(bf16, out16, Overflow::kToInf, &st);
  });
  Run("DecodeBf16 + EncodeF16 (two passes)", n * 2, [&] {
    alloy::kernels::DecodeBf16(bf16, f32);
    alloy::kernels::EncodeF16(f32, out16, Overflow::kToInf, &st);
  });
  Run("DecodeBf16 + EncodeF16 (32 KiB scratch)", n * 2, [&] {
    constexpr size_t kScratch = 8192;
    float scratch[kScratch];
    for (size_t i = 0; i < n; i += kScratch) {
      const size_t len = std::min(kScratch, n - i);
      alloy::kernels::DecodeBf16(std::span(bf16).subspan(i, len), std::span(scratch, len));
      alloy::kernels::EncodeF16(std::span<const float>(scratch, len),
                                std::span(out16).subspan(i, len), Overflow::kToInf, &st);
    }
  });
  Run("F16ToBf16 (fused)", n * 2, [&] { alloy::kernels::F16ToBf16(f16, out16, &st); });
  Run("DecodeBf16", n * 2, [&] { alloy::kernels::DecodeBf16(bf16, f32); });
  Run("DecodeF16", n * 2, [&] { alloy::kernels::DecodeF16(f16, f32); });
  Run("EncodeBf16 (input = f32 bytes)", n * 4, [&] {
    alloy::kernels::EncodeBf16(f32, out16, &st);
  });
  Run("EncodeF16 (input = f32 bytes)", n * 4, [&] {
    alloy::kernels::EncodeF16(f32, out16, Overflow::kToInf, &st);
  });
  Run("EncodeF8E4M3 (input = f32 bytes)", n * 4, [&] {
    alloy::kernels::EncodeF8E4M3(f32, out8, &st);
  });
  Run("memcpy of the 16-bit buffer (reference)", n * 2, [&] {
    std::copy(bf16.begin(), bf16.end(), out16.begin());
  });
  sink = sink + st.n_nan + out16[n / 2];
  return 0;
}
