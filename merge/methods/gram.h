// Methods whose result is a linear combination of the input vectors with
// coefficients that depend only on their dot products: nuslerp, multislerp,
// karcher and model_stock (mergekit-semantics.md §1.6–§1.9).
//
// Each one names its vectors (inputs, or inputs minus the base) and turns
// their Gram matrix G (G[i][j] = vᵢ·vⱼ, float64) into coefficients:
//   out = [B +] Σᵢ cᵢ · vᵢ.
// Streaming: whole-tensor vectors take one Scan for G (per-chunk partials
// combined in chunk order, so G is the same at any thread count) and one
// elementwise Emit; per-row vectors (rows along the last dimension) need no
// Scan: each chunk holds whole rows and computes each row's G itself.
// The products cᵢ·vᵢ are float32, the sum float64, rounded once (Decision a).
#pragma once

#include <cstddef>
#include <vector>

#include "formats/status.h"
#include "merge/executor.h"

namespace alloy::merge::methods {

// A symmetric n × n matrix of dot products, row-major.
struct Gram {
  size_t n = 0;
  std::vector<double> g;
  double at(size_t i, size_t j) const { return g[i * n + j]; }
};

// What a tensor's vectors are and how they combine.
struct Combination {
  bool add_base = false;      // out = B + Σ cᵢvᵢ (task vectors), else Σ cᵢvᵢ
  std::vector<double> coefs;  // one per vector
};

class GramMethod : public MergeMethod {
 public:
  formats::Status Merge(TensorPass& pass) final;

 protected:
  struct Layout {
    std::vector<size_t> vectors;  // input indices, in recipe order
    int base = -1;                // input subtracted from every vector, or -1
    bool per_row = false;         // vectors are the rows (last dimension)
    bool per_column = false;      // vectors are the columns (dimension 0 of a 2-D view)
    // When set, the result is this input unchanged (e.g. a lone input).
    int passthrough = -1;
  };
  // Chooses the vectors of this tensor (reads parameters from the pass).
  virtual formats::Result<Layout> Vectors(const TensorPass& pass) = 0;
  // The coefficients for one Gram matrix (the whole tensor's or one row's).
  // Called concurrently for different rows: must not change the object.
  virtual formats::Result<Combination> Combine(const PlannedTensor& tensor,
                                               const Gram& gram) const = 0;

 private:
  // v = x − base (or x) for vector k of chunk c, in the slot's scratch.
  const float* VectorOf(const Chunk& c, size_t k, size_t begin, size_t len);
  void AddGram(const Chunk& c, size_t begin, size_t len, double* out);
  void EmitRange(const Chunk& c, size_t begin, size_t len, const Combination& comb,
                 std::span<double> out);
  Gram Sum(const double* partials, size_t count) const;
  formats::Status MergeColumns(TensorPass& pass);

  Layout layout_;
  size_t chunk_ = 0;
  std::vector<float> scratch_;     // slot × vector × chunk
  std::vector<double> partials_;   // chunk × n × n
  std::vector<std::span<const float>> spans_;  // slot × vector
  std::vector<double> column_gram_;            // column × n × n (per_column)
  std::vector<float> column_coefs_;            // column × n
};

}  // namespace alloy::merge::methods
