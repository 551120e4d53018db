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

// out[i] = (Σ_k double(w[k] · xs[k][i])) / divisor: the sum accumulated in
// model order from +0, then multiplied by the float64 reciprocal of divisor
// (1: nothing). One pass: the accumulator is tiled so it stays in L1 while
// every model is added.
// REQUIRES: w.size() == xs.size(); every xs[k].size() == out.size().
void WeightedSum(std::span<const std::span<const float>> xs, std::span<const float> w,
                 double divisor, std::span<double> out) noexcept;
// out[i] = double(base[i]) + lambda · (Σ_k double(w[k] · xs[k][i])) / divisor,
// which is WeightedSum followed by AddBaseScaled, in one pass.
void WeightedSumOnBase(std::span<const std::span<const float>> xs, std::span<const float> w,
                       double divisor, std::span<const float> base, double lambda,
                       std::span<double> out) noexcept;

// WeightedSumOnBase of the task vectors xs[k] − base, each difference in
// float32 as Subtract makes it: the same bits as Subtract then
// WeightedSumOnBase, without storing the differences.
void WeightedDeltaSumOnBase(std::span<const std::span<const float>> xs, std::span<const float> w,
                            double divisor, std::span<const float> base, double lambda,
                            std::span<double> out) noexcept;

// acc[i] = base[i] + lambda · acc[i].
// REQUIRES: base.size() == acc.size().
void AddBaseScaled(std::span<const float> base, double lambda, std::span<double> acc) noexcept;
// Σ a², Σ b² and Σ a·b in float64 (the products of two floats are exact),
// accumulated in 8 interleaved lanes that are combined in a fixed order: a
// pure function of the spans, so per-chunk partials combined in chunk order
// give the same whole-tensor sums at any thread count.
// REQUIRES: a.size() == b.size().
struct DotSums {
  double aa = 0, bb = 0, ab = 0;
};
DotSums ComputeDotSums(std::span<const float> a, std::span<const float> b) noexcept;
// Σ a·b alone, with the same lanes: equal to ComputeDotSums(a, b).ab.
double ComputeDot(std::span<const float> a, std::span<const float> b) noexcept;

// out[i] = x[i] − base[i] in float32 (a task vector). out may alias x.
void Subtract(std::span<const float> x, std::span<const float> base, std::span<float> out) noexcept;

}  // namespace alloy::kernels
