#include "merge/methods/gram.h"

#include <mutex>

#include "kernels/blend.h"
#include "merge/methods/methods.h"
#include "merge/scratch.h"

namespace alloy::merge::methods {

using formats::Status;

const float* GramMethod::VectorOf(const Chunk& c, size_t k, size_t begin, size_t len) {
  const float* x = c.inputs[layout_.vectors[k]] + begin;
  if (layout_.base < 0) return x;
  float* v = scratch_.data() + (c.slot * layout_.vectors.size() + k) * chunk_;
  kernels::Subtract(std::span<const float>(x, len),
                    std::span<const float>(c.inputs[layout_.base] + begin, len),
                    std::span<float>(v, len));
  return v;
}

void GramMethod::AddGram(const Chunk& c, size_t begin, size_t len, double* out) {
  const size_t n = layout_.vectors.size();
  for (size_t i = 0; i < n; ++i) {
    // Vector i stays in its own scratch while j runs, so j's may be rebuilt.
    const std::span<const float> vi(VectorOf(c, i, begin, len), len);
    for (size_t j = i; j < n; ++j) {
      const std::span<const float> vj(j == i ? vi.data() : VectorOf(c, j, begin, len), len);
      const double dot = kernels::ComputeDot(vi, vj);
      out[i * n + j] += dot;
      if (j != i) out[j * n + i] += dot;
    }
  }
}

Gram GramMethod::Sum(const double* partials, size_t count) const {
  Gram gram;
  gram.n = layout_.vectors.size();
  gram.g.assign(gram.n * gram.n, 0.0);
  for (size_t chunk = 0; chunk < count; ++chunk) {  // chunk order: any thread count
    for (size_t k = 0; k < gram.g.size(); ++k) gram.g[k] += partials[chunk * gram.g.size() + k];
  }
  return gram;
}

void GramMethod::EmitRange(const Chunk& c, size_t begin, size_t len, const Combination& comb,
                           std::span<double> out) {
  const size_t n = layout_.vectors.size();
  std::span<const float>* spans = spans_.data() + c.slot * n;
  std::vector<float> w(n);
  for (size_t k = 0; k < n; ++k) {
    spans[k] = std::span<const float>(VectorOf(c, k, begin, len), len);
    w[k] = static_cast<float>(comb.coefs[k]);
  }
  const std::span<const std::span<const float>> xs(spans, n);
  if (comb.add_base && layout_.base >= 0) {
    kernels::WeightedSumOnBase(xs, w, 1.0, std::span<const float>(c.inputs[layout_.base] + begin, len),
                               1.0, out);
  } else {
    kernels::WeightedSum(xs, w, 1.0, out);
  }
}

Status GramMethod::Merge(TensorPass& pass) {
  ALLOY_ASSIGN_OR_RETURN(layout_, Vectors(pass));
  if (layout_.passthrough >= 0) {
    return EmitInput(pass, static_cast<size_t>(layout_.passthrough));
  }
  const size_t n = layout_.vectors.size();
  if (layout_.per_row) pass.AlignChunksToRows();
  chunk_ = pass.chunk_elems();
  Grow(scratch_, pass.num_slots() * n * chunk_);
  Grow(spans_, pass.num_slots() * n);
  const PlannedTensor& tensor = pass.tensor();

  if (layout_.per_column) return MergeColumns(pass);
  if (!layout_.per_row) {
    partials_.assign(pass.num_chunks() * n * n, 0.0);
    ALLOY_RETURN_IF_ERROR(pass.Scan(
        [&](const Chunk& c) { AddGram(c, 0, c.size, partials_.data() + c.index * n * n); }));
    ALLOY_ASSIGN_OR_RETURN(const Combination comb,
                           Combine(tensor, Sum(partials_.data(), pass.num_chunks())));
    return pass.EmitElementwise(
        [&](const Chunk& c, std::span<double> out) { EmitRange(c, 0, c.size, comb, out); });
  }

  // Per row: each chunk holds whole rows (AlignChunksToRows).
  const size_t row = static_cast<size_t>(pass.row_len());
  // The error of the lowest failing row, whatever thread meets it first.
  std::mutex mu;
  Status first_error;
  uint64_t error_at = UINT64_MAX;
  ALLOY_RETURN_IF_ERROR(pass.Emit([&](const Chunk& c, std::span<double> out) {
    std::vector<double> g(n * n);
    for (size_t begin = 0; begin < c.size; begin += row) {
      std::fill(g.begin(), g.end(), 0.0);
      AddGram(c, begin, row, g.data());
      formats::Result<Combination> comb = Combine(tensor, Sum(g.data(), 1));
      if (!comb.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (c.begin + begin < error_at) {
          error_at = c.begin + begin;
          first_error = comb.status();
        }
        std::fill(out.begin() + static_cast<ptrdiff_t>(begin),
                  out.begin() + static_cast<ptrdiff_t>(begin + row), 0.0);
        continue;
      }
      EmitRange(c, begin, row, *comb, out.subspan(begin, row));
    }
  }));
  return first_error;
}

// Vectors along dimension 0: element e belongs to vector e mod (numel /
// shape[0]) (a column of a 2-D tensor). The
// per-column Gram matrices are summed with ScanReduce (chunk order), then
// each column gets its coefficients.
Status GramMethod::MergeColumns(TensorPass& pass) {
  const size_t n = layout_.vectors.size();
  const size_t cols = static_cast<size_t>(pass.numel() / static_cast<uint64_t>(pass.tensor().shape[0]));
  const size_t nn = n * n;
  column_gram_.assign(cols * nn, 0.0);
  ALLOY_RETURN_IF_ERROR(pass.ScanReduce(
      cols * nn,
      [&](const Chunk& c, std::span<double> partial) {
        std::vector<const float*> v(n);
        for (size_t k = 0; k < n; ++k) v[k] = VectorOf(c, k, 0, c.size);
        size_t col = static_cast<size_t>(c.begin % cols);
        for (size_t e = 0; e < c.size; ++e) {
          double* g = partial.data() + col * nn;
          for (size_t i = 0; i < n; ++i) {
            for (size_t j = i; j < n; ++j) {
              g[i * n + j] += static_cast<double>(v[i][e]) * static_cast<double>(v[j][e]);
            }
          }
          if (++col == cols) col = 0;
        }
      },
      [&](std::span<const double> partial) {
        for (size_t k = 0; k < partial.size(); ++k) column_gram_[k] += partial[k];
      }));
  column_coefs_.assign(cols * n, 0.0f);
  bool add_base = false;
  for (size_t col = 0; col < cols; ++col) {
    Gram g;
    g.n = n;
    g.g.assign(column_gram_.begin() + static_cast<ptrdiff_t>(col * nn),
               column_gram_.begin() + static_cast<ptrdiff_t>((col + 1) * nn));
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < i; ++j) g.g[i * n + j] = g.g[j * n + i];
    }
    ALLOY_ASSIGN_OR_RETURN(const Combination comb, Combine(pass.tensor(), g));
    add_base = comb.add_base && layout_.base >= 0;
    for (size_t k = 0; k < n; ++k) column_coefs_[col * n + k] = static_cast<float>(comb.coefs[k]);
  }
  return pass.EmitElementwise([&](const Chunk& c, std::span<double> out) {
    std::vector<const float*> v(n);
    for (size_t k = 0; k < n; ++k) v[k] = VectorOf(c, k, 0, c.size);
    const float* b = add_base ? c.inputs[layout_.base] : nullptr;
    size_t col = static_cast<size_t>(c.begin % cols);
    for (size_t e = 0; e < c.size; ++e) {
      double sum = 0.0;
      for (size_t k = 0; k < n; ++k) {
        sum += static_cast<double>(column_coefs_[col * n + k] * v[k][e]);
      }
      out[e] = b != nullptr ? static_cast<double>(b[e]) + sum : sum;
      if (++col == cols) col = 0;
    }
  });
}

}  // namespace alloy::merge::methods
