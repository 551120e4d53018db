// Runtime ISA dispatch for kernel .cc files (internal to kernels/; never
// include it from a public header).
//
// Dispatch(fn) calls fn(std::bool_constant<kVarShift>) inside a function
// compiled for the best ISA of the running CPU (x86-64-v4 AVX-512, v3 AVX2,
// baseline); fn is always inlined there (mark lambdas ALLOY_LAMBDA_INLINE), so
// its loops are vectorized for that ISA. GCC on x86-64 only; elsewhere, or
// with ALLOY_NO_MULTIVERSION (to test and benchmark the AVX2 and baseline
// paths on any host), one version for the -march in effect.
#pragma once

#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(ALLOY_NO_MULTIVERSION)
#define ALLOY_ISA_DISPATCH 1
#endif

#define ALLOY_INLINE inline __attribute__((always_inline))
#define ALLOY_LAMBDA_INLINE __attribute__((always_inline))

namespace alloy::kernels::isa {

#ifdef ALLOY_ISA_DISPATCH
enum Isa : int { kIsaBaseline = 0, kIsaAvx2 = 1, kIsaAvx512 = 2 };

inline int DetectIsa() noexcept {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return kIsaAvx512;
  if (__builtin_cpu_supports("x86-64-v3")) return kIsaAvx2;
  return kIsaBaseline;
}

// The running CPU's ISA level, detected once.
inline int CurrentIsa() noexcept {
  static const int isa = DetectIsa();
  return isa;
}

template <typename Fn>
__attribute__((target("arch=x86-64-v4"))) void RunAvx512(const Fn& fn) noexcept {
  fn(std::true_type{});
}
template <typename Fn>
__attribute__((target("arch=x86-64-v3"))) void RunAvx2(const Fn& fn) noexcept {
  fn(std::true_type{});
}
template <typename Fn>
void RunBaseline(const Fn& fn) noexcept {
  fn(std::false_type{});
}

template <typename Fn>
ALLOY_INLINE void Dispatch(const Fn& fn) noexcept {
  switch (CurrentIsa()) {
    case kIsaAvx512:
      RunAvx512(fn);
      break;
    case kIsaAvx2:
      RunAvx2(fn);
      break;
    default:
      RunBaseline(fn);
      break;
  }
}
#else
template <typename Fn>
ALLOY_INLINE void Dispatch(const Fn& fn) noexcept {
#ifdef __AVX2__
  fn(std::true_type{});
#else
  fn(std::false_type{});
#endif
}
#endif

}  // namespace alloy::kernels::isa
