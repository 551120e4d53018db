#include "kernels/blend.h"

#include <cstddef>

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {

using isa::Dispatch;

namespace {

// Elements per register block: the block's float64 sums stay in registers
// while every model is added (16 = two AVX-512 vectors of doubles).
constexpr size_t kBlock = 16;

// out[begin, begin + kBlockLen): the shared body of WeightedSum and
// WeightedSumOnBase (base == nullptr: none).
// kDelta: the vectors are xs[k] − base (float32), else xs[k].
template <size_t kBlockLen, bool kDelta = false>
ALLOY_INLINE void WeightedSumBlock(const std::span<const float>* xs, const float* w,
                                   size_t n_models, size_t begin, double inv, bool scale,
                                   const float* base, double lambda, double* __restrict out) noexcept {
  double acc[kBlockLen];
  for (size_t j = 0; j < kBlockLen; ++j) acc[j] = 0.0;
  for (size_t k = 0; k < n_models; ++k) {
    const float* __restrict xk = xs[k].data() + begin;
    const float wk = w[k];
    // Starting from +0 (not from the first product) makes a −0 product sum to +0.
    if constexpr (kDelta) {
      const float* __restrict bk = base + begin;
      for (size_t j = 0; j < kBlockLen; ++j) acc[j] += static_cast<double>(wk * (xk[j] - bk[j]));
    } else {
      for (size_t j = 0; j < kBlockLen; ++j) acc[j] += static_cast<double>(wk * xk[j]);
    }
  }
  if (scale) {
    for (size_t j = 0; j < kBlockLen; ++j) acc[j] *= inv;
  }
  double* __restrict a = out + begin;
  if (base != nullptr) {
    const float* __restrict b = base + begin;
    for (size_t j = 0; j < kBlockLen; ++j) a[j] = static_cast<double>(b[j]) + lambda * acc[j];
  } else {
    for (size_t j = 0; j < kBlockLen; ++j) a[j] = acc[j];
  }
}

template <bool kDelta = false>
ALLOY_INLINE void WeightedSumSpan(const std::span<const float>* xs, const float* w, size_t n_models,
                                  size_t n, double divisor, const float* base, double lambda,
                                  double* out) noexcept {
  // A float64 reciprocal: within 1 float64 ulp of the quotient, far below the
  // output rounding, and vdivpd would cost more than the whole blend.
  const bool scale = divisor != 1.0;
  const double inv = 1.0 / divisor;
  size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    WeightedSumBlock<kBlock, kDelta>(xs, w, n_models, i, inv, scale, base, lambda, out);
  }
  for (; i < n; ++i) WeightedSumBlock<1, kDelta>(xs, w, n_models, i, inv, scale, base, lambda, out);
}

}  // namespace

void WeightedSum(std::span<const std::span<const float>> xs, std::span<const float> w,
                 double divisor, std::span<double> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    WeightedSumSpan(xs.data(), w.data(), xs.size(), out.size(), divisor, nullptr, 0.0, out.data());
  });
}

void WeightedSumOnBase(std::span<const std::span<const float>> xs, std::span<const float> w,
                       double divisor, std::span<const float> base, double lambda,
                       std::span<double> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    WeightedSumSpan(xs.data(), w.data(), xs.size(), out.size(), divisor, base.data(), lambda,
                    out.data());
  });
}

void WeightedDeltaSumOnBase(std::span<const std::span<const float>> xs, std::span<const float> w,
                            double divisor, std::span<const float> base, double lambda,
                            std::span<double> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    WeightedSumSpan<true>(xs.data(), w.data(), xs.size(), out.size(), divisor, base.data(), lambda,
                          out.data());
  });
}

namespace {

// Σ a·b (and, with kAll, Σ a² and Σ b²) over 8 interleaved float64 lanes,
// combined in lane order. Called inside an ISA clone, whose local
// accumulators stay in registers so the lane loop vectorizes.
template <bool kAll>
ALLOY_INLINE DotSums DotLanes(const float* __restrict x, const float* __restrict y,
                              size_t n) noexcept {
  constexpr size_t kLanes = 8;
  double aa[kLanes] = {}, bb[kLanes] = {}, ab[kLanes] = {};
  auto add = [&](size_t j, float xf, float yf) ALLOY_LAMBDA_INLINE {
    const double u = static_cast<double>(xf);
    const double v = static_cast<double>(yf);
    if constexpr (kAll) {
      aa[j] += u * u;
      bb[j] += v * v;
    }
    ab[j] += u * v;
  };
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) add(j, x[i + j], y[i + j]);
  }
  for (size_t j = 0; i < n; ++i, ++j) add(j, x[i], y[i]);  // the tail continues the lanes
  DotSums sums;
  for (size_t j = 0; j < kLanes; ++j) {
    sums.aa += aa[j];
    sums.bb += bb[j];
    sums.ab += ab[j];
  }
  return sums;
}

}  // namespace

DotSums ComputeDotSums(std::span<const float> a, std::span<const float> b) noexcept {
  DotSums sums;
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE { sums = DotLanes<true>(a.data(), b.data(), a.size()); });
  return sums;
}

double ComputeDot(std::span<const float> a, std::span<const float> b) noexcept {
  double dot = 0;
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE { dot = DotLanes<false>(a.data(), b.data(), a.size()).ab; });
  return dot;
}

void AddBaseScaled(std::span<const float> base, double lambda, std::span<double> acc) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict bs = base.data();
    double* __restrict a = acc.data();
    for (size_t i = 0; i < acc.size(); ++i) a[i] = static_cast<double>(bs[i]) + lambda * a[i];
  });
}

void Subtract(std::span<const float> x, std::span<const float> base, std::span<float> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* xs = x.data();
    const float* __restrict bs = base.data();
    float* os = out.data();
    for (size_t i = 0; i < out.size(); ++i) os[i] = xs[i] - bs[i];
  });
}

}  // namespace alloy::kernels
