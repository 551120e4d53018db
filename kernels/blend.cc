#include "kernels/blend.h"

#include <algorithm>
#include <cstddef>

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {

using isa::Dispatch;

namespace {

// Elements per tile: 1024 doubles (8 KiB) stay in L1 across all models.
constexpr size_t kTile = 1024;

// The shared body of WeightedSum and WeightedSumOnBase (base == nullptr: none).
ALLOY_INLINE void WeightedSumTile(const std::span<const float>* xs, const float* w, size_t n_models,
                                  size_t begin, size_t len, double divisor, const float* base,
                                  double lambda, double* __restrict out) noexcept {
  double* __restrict a = out + begin;
  if (n_models == 0) {
    for (size_t i = 0; i < len; ++i) a[i] = 0.0;
  } else {
    const float* __restrict x0 = xs[0].data() + begin;
    const float w0 = w[0];
    // 0.0 + p, not p: a −0 product sums to +0 as when accumulating from zero.
    for (size_t i = 0; i < len; ++i) a[i] = 0.0 + static_cast<double>(w0 * x0[i]);
  }
  for (size_t k = 1; k < n_models; ++k) {
    const float* __restrict xk = xs[k].data() + begin;
    const float wk = w[k];
    for (size_t i = 0; i < len; ++i) a[i] += static_cast<double>(wk * xk[i]);
  }
  if (divisor != 1.0) {
    // A float64 reciprocal: within 1 float64 ulp of the quotient, far below
    // the output rounding, and vdivpd would cost more than the whole blend.
    const double inv = 1.0 / divisor;
    for (size_t i = 0; i < len; ++i) a[i] *= inv;
  }
  if (base != nullptr) {
    const float* __restrict b = base + begin;
    for (size_t i = 0; i < len; ++i) a[i] = static_cast<double>(b[i]) + lambda * a[i];
  }
}

}  // namespace

void WeightedSum(std::span<const std::span<const float>> xs, std::span<const float> w,
                 double divisor, std::span<double> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    for (size_t begin = 0; begin < out.size(); begin += kTile) {
      WeightedSumTile(xs.data(), w.data(), xs.size(), begin, std::min(kTile, out.size() - begin),
                      divisor, nullptr, 0.0, out.data());
    }
  });
}

void WeightedSumOnBase(std::span<const std::span<const float>> xs, std::span<const float> w,
                       double divisor, std::span<const float> base, double lambda,
                       std::span<double> out) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    for (size_t begin = 0; begin < out.size(); begin += kTile) {
      WeightedSumTile(xs.data(), w.data(), xs.size(), begin, std::min(kTile, out.size() - begin),
                      divisor, base.data(), lambda, out.data());
    }
  });
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
