#include "kernels/reduce.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {
namespace {

using isa::Dispatch;
constexpr size_t kLanes = 8;

}  // namespace

double SumSquares(std::span<const float> x) noexcept {
  double total = 0;
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict p = x.data();
    const size_t n = x.size();
    double acc[kLanes] = {};
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (size_t j = 0; j < kLanes; ++j) {
        const double v = static_cast<double>(p[i + j]);
        acc[j] += v * v;
      }
    }
    for (size_t j = 0; i < n; ++i, ++j) {  // the tail continues the lanes
      const double v = static_cast<double>(p[i]);
      acc[j] += v * v;
    }
    for (size_t j = 0; j < kLanes; ++j) total += acc[j];
  });
  return total;
}

PairStats ComparePair(std::span<const float> a, std::span<const float> b) noexcept {
  PairStats out;
  // Three simple loops rather than one: GCC vectorizes a loop whose lanes are
  // all float64 or all integer, and falls back to scalar code when they mix.
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict x = a.data();
    const float* __restrict y = b.data();
    const size_t n = a.size();
    double aa[kLanes] = {}, bb[kLanes] = {}, ab[kLanes] = {}, dd[kLanes] = {};
    auto add = [&](size_t j, float xf, float yf) ALLOY_LAMBDA_INLINE {
      const double u = static_cast<double>(xf);
      const double v = static_cast<double>(yf);
      const double d = u - v;
      aa[j] += u * u;
      bb[j] += v * v;
      ab[j] += u * v;
      dd[j] += d * d;
    };
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (size_t j = 0; j < kLanes; ++j) add(j, x[i + j], y[i + j]);
    }
    for (size_t j = 0; i < n; ++i, ++j) add(j, x[i], y[i]);
    for (size_t j = 0; j < kLanes; ++j) {
      out.aa += aa[j];
      out.bb += bb[j];
      out.ab += ab[j];
      out.dd += dd[j];
    }
    // The largest difference: a max is exact, so its order does not matter.
    // On the bit patterns of |x − y|: for non-negative floats their order is
    // the integers' order, and an integer max vectorizes where a float one
    // (with its NaN rules) does not.
    uint32_t mx = 0;
    for (size_t k = 0; k < n; ++k) {
      const uint32_t d = std::bit_cast<uint32_t>(x[k] - y[k]) & 0x7fffffffu;
      mx = d > mx ? d : mx;
    }
    out.max_abs_diff = static_cast<double>(std::bit_cast<float>(mx));
    // Equal signs, counted in 32-bit pieces so the count never overflows.
    constexpr size_t kPiece = size_t{1} << 20;
    for (size_t p = 0; p < n; p += kPiece) {
      const size_t end = std::min(n, p + kPiece);
      uint32_t same = 0;
      for (size_t k = p; k < end; ++k) {
        same += static_cast<uint32_t>(((x[k] > 0.0f) == (y[k] > 0.0f)) &
                                      ((x[k] < 0.0f) == (y[k] < 0.0f)));
      }
      out.same_sign += same;
    }
  });
  return out;
}

TaskPairStats CompareTaskPair(std::span<const float> a, std::span<const float> b) noexcept {
  TaskPairStats out;
  Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    const float* __restrict x = a.data();
    const float* __restrict y = b.data();
    const size_t n = a.size();
    double ab[kLanes] = {};
    uint64_t both[kLanes] = {}, opp[kLanes] = {};
    auto add = [&](size_t j, float xf, float yf) ALLOY_LAMBDA_INLINE {
      const double p = static_cast<double>(xf) * static_cast<double>(yf);
      ab[j] += p;
      both[j] += static_cast<uint64_t>(xf != 0.0f && yf != 0.0f);
      opp[j] += static_cast<uint64_t>(p < 0.0);
    };
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (size_t j = 0; j < kLanes; ++j) add(j, x[i + j], y[i + j]);
    }
    for (size_t j = 0; i < n; ++i, ++j) add(j, x[i], y[i]);
    for (size_t j = 0; j < kLanes; ++j) {
      out.ab += ab[j];
      out.both_nonzero += both[j];
      out.opposite += opp[j];
    }
  });
  return out;
}

void CountMixedSigns(std::span<const float* const> xs, size_t n, uint64_t* multi,
                     uint64_t* mixed) noexcept {
  // Per piece: count positive and negative entries per position model by
  // model (loops that vectorize), then classify the positions.
  constexpr size_t kPiece = 1024;
  uint16_t pos[kPiece], neg[kPiece];
  uint64_t n_multi = 0, n_mixed = 0;
  for (size_t p = 0; p < n; p += kPiece) {
    const size_t len = std::min(kPiece, n - p);
    std::fill(pos, pos + len, uint16_t{0});
    std::fill(neg, neg + len, uint16_t{0});
    for (const float* x : xs) {
      const float* __restrict xp = x + p;
      for (size_t i = 0; i < len; ++i) {
        pos[i] = static_cast<uint16_t>(pos[i] + (xp[i] > 0.0f));
        neg[i] = static_cast<uint16_t>(neg[i] + (xp[i] < 0.0f));
      }
    }
    uint32_t piece_multi = 0, piece_mixed = 0;
    for (size_t i = 0; i < len; ++i) {
      piece_multi += static_cast<uint32_t>(pos[i] + neg[i] >= 2);
      piece_mixed += static_cast<uint32_t>((pos[i] > 0) & (neg[i] > 0));
    }
    n_multi += piece_multi;
    n_mixed += piece_mixed;
  }
  *multi += n_multi;
  *mixed += n_mixed;
}

void AddAbsHistogram(std::span<const float> x, uint64_t* count, uint64_t* low) noexcept {
  for (float v : x) {
    const uint32_t bits = std::bit_cast<uint32_t>(v) & 0x7fffffffu;
    const uint32_t bin = bits >> 16;
    count[bin] += 1;
    low[bin] += bits & 0xffffu;
  }
}

double AbsBinMass(size_t bin, uint64_t count, uint64_t low) noexcept {
  const uint32_t exponent = static_cast<uint32_t>(bin >> 7);
  if (exponent == 255 || count == 0) return 0;
  // |x| = 2^(max(e,1) − 150) · (implicit · 2²³ + mantissa), mantissa = m7·2¹⁶ + low16.
  const uint64_t m7 = bin & 127u;
  const double lead = static_cast<double>((exponent == 0 ? 0u : (uint64_t{1} << 23)) + (m7 << 16));
  const double scale = std::ldexp(1.0, static_cast<int>(std::max<uint32_t>(exponent, 1)) - 150);
  return scale * (static_cast<double>(count) * lead + static_cast<double>(low));
}

float AbsBinFloor(size_t bin) noexcept {
  return std::bit_cast<float>(static_cast<uint32_t>(bin) << 16);
}

TopMass AbsTopMass(const uint64_t* count, const uint64_t* low, double fraction) noexcept {
  TopMass out;
  uint64_t total_count = 0;
  for (size_t b = 0; b < kAbsBins; ++b) {
    out.total += AbsBinMass(b, count[b], low[b]);
    if ((b >> 7) != 255) total_count += count[b];
  }
  uint64_t need = static_cast<uint64_t>(std::ceil(fraction * static_cast<double>(total_count)));
  for (size_t b = kAbsBins; b-- > 0 && need > 0;) {
    if ((b >> 7) == 255 || count[b] == 0) continue;
    const double mass = AbsBinMass(b, count[b], low[b]);
    if (count[b] <= need) {
      out.top += mass;
      need -= count[b];
    } else {
      out.top += mass * (static_cast<double>(need) / static_cast<double>(count[b]));
      need = 0;
    }
  }
  return out;
}

}  // namespace alloy::kernels
