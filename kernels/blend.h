// Elementwise blend arithmetic for merge methods: float32 inputs, float64
// accumulators (mergekit-semantics.md Decision (a): products of a weight and
// an input or delta are float32, sums over models are float64, and the
// caller rounds the float64 result once to the output dtype).
//
// Pure span functions, vectorized for the running CPU (runtime dispatch).
// Elementwise: callers split spans across threads freely.
#pragma once

#include <span>

namespace alloy::kernels {

// acc[i] = 0.
void ZeroF64(std::span<double> acc) noexcept;
// acc[i] += double(w · x[i])  (the product rounded to float32).
// REQUIRES: x.size() == acc.size().
void AddScaled(std::span<const float> x, float w, std::span<double> acc) noexcept;
// acc[i] += double(w · (x[i] − base[i]))  (difference and product in float32).
// REQUIRES: x, base and acc have one size.
void AddScaledDelta(std::span<const float> x, std::span<const float> base, float w,
                    std::span<double> acc) noexcept;
// acc[i] = acc[i] / d.
void DivideF64(std::span<double> acc, double d) noexcept;
// acc[i] = acc[i] · m.
void ScaleF64(std::span<double> acc, double m) noexcept;
// acc[i] = base[i] + lambda · acc[i].
// REQUIRES: base.size() == acc.size().
void AddBaseScaled(std::span<const float> base, double lambda, std::span<double> acc) noexcept;
// out[i] = x[i] − base[i] in float32 (a task vector). out may alias x.
void Subtract(std::span<const float> x, std::span<const float> base, std::span<float> out) noexcept;

}  // namespace alloy::kernels
