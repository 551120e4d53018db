#include "kernels/blend.h"

#include <cstddef>

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {

using isa::Dispatch;

void ZeroF64(std::span<double> acc) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    double* __restrict a = acc.data();
    for (size_t i = 0; i < acc.size(); ++i) a[i] = 0.0;
  });
}

void AddScaled(std::span<const float> x, float w, std::span<double> acc) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict xs = x.data();
    double* __restrict a = acc.data();
    for (size_t i = 0; i < acc.size(); ++i) a[i] += static_cast<double>(w * xs[i]);
  });
}

void AddScaledDelta(std::span<const float> x, std::span<const float> base, float w,
                    std::span<double> acc) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict xs = x.data();
    const float* __restrict bs = base.data();
    double* __restrict a = acc.data();
    for (size_t i = 0; i < acc.size(); ++i) a[i] += static_cast<double>(w * (xs[i] - bs[i]));
  });
}

void DivideF64(std::span<double> acc, double d) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    double* __restrict a = acc.data();
    for (size_t i = 0; i < acc.size(); ++i) a[i] /= d;
  });
}

void ScaleF64(std::span<double> acc, double m) noexcept {
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    double* __restrict a = acc.data();
    for (size_t i = 0; i < acc.size(); ++i) a[i] *= m;
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
