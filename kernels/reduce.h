// Reductions for comparing checkpoints (`alloy compare`): sums of squares,
// dot products and distances in float64, sign agreement counts, and a
// magnitude histogram from which the mass of the largest entries follows.
//
// Every floating sum is accumulated in 8 interleaved float64 lanes combined in
// a fixed order, so a result is a pure function of its spans: callers that
// reduce fixed chunks and combine the partials in chunk order get the same
// figures at any thread count. Integer counts may be combined in any order.
//
// Pure span functions; the floating sums are vectorized for the running CPU
// (runtime dispatch), the counters and the histogram are plain loops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace alloy::kernels {

// Σ x² in float64.
double SumSquares(std::span<const float> x) noexcept;

// Sums comparing two vectors. Σ(a − b)² takes differences in float64 (exact
// for float32 inputs of similar magnitude); the maximum takes them in float32
// (exact for bf16/f16 inputs of similar magnitude), which vectorizes twice as
// wide.
struct PairStats {
  double aa = 0;            // Σ a², equal to SumSquares(a)
  double bb = 0;            // Σ b², equal to SumSquares(b)
  double ab = 0;            // Σ a·b
  double dd = 0;            // Σ (a − b)²
  double max_abs_diff = 0;  // max |a − b|
  uint64_t same_sign = 0;   // positions where sign(a) = sign(b); the sign of 0 is 0
};
// REQUIRES: a.size() == b.size().
PairStats ComparePair(std::span<const float> a, std::span<const float> b) noexcept;

// Sums comparing two task vectors.
struct TaskPairStats {
  double ab = 0;              // Σ a·b
  uint64_t both_nonzero = 0;  // positions where a ≠ 0 and b ≠ 0
  uint64_t opposite = 0;      // ... and a·b < 0
};
// REQUIRES: a.size() == b.size().
TaskPairStats CompareTaskPair(std::span<const float> a, std::span<const float> b) noexcept;

// Over positions 0..n of the vectors xs[0..m): how many have at least two
// non-zero entries (*multi) and, of those, how many have both a positive and a
// negative entry (*mixed). Adds to the counters.
void CountMixedSigns(std::span<const float* const> xs, size_t n, uint64_t* multi,
                     uint64_t* mixed) noexcept;

// Histogram of |x| by the top 15 bits of its float32 pattern (sign dropped):
// 8 exponent and 7 mantissa bits, so a bin spans a relative width of 2⁻⁷.
// For each element: count[bin] += 1 and low[bin] += its low 16 bits, which
// makes the bin's exact sum of |x| recoverable (AbsBinMass).
inline constexpr size_t kAbsBins = size_t{1} << 15;
// REQUIRES: count and low hold kAbsBins entries.
void AddAbsHistogram(std::span<const float> x, uint64_t* count, uint64_t* low) noexcept;
// The sum of |x| over the elements counted in `bin` (0 for the inf/NaN bins).
double AbsBinMass(size_t bin, uint64_t count, uint64_t low) noexcept;
// The smallest |x| a bin can hold.
float AbsBinFloor(size_t bin) noexcept;

// Σ|x| over the ceil(fraction · total) largest-magnitude elements counted in
// the histogram, and Σ|x| over all of them. Exact except inside the bin that
// holds the cut-off, whose share is taken at the bin's mean magnitude (a
// relative error below 2⁻⁷ of that bin's share).
struct TopMass {
  double top = 0;
  double total = 0;
};
TopMass AbsTopMass(const uint64_t* count, const uint64_t* low, double fraction) noexcept;

}  // namespace alloy::kernels
