// Scratch buffers that are grown once and reused for every chunk of every
// tensor: touching fresh pages is expensive on this class of machine
// (performance-notes.md), so buffers never shrink and are never reallocated
// to a size they already have.
#pragma once

#include <cstddef>
#include <vector>

namespace alloy::merge {

// Grows `v` to at least `n` elements (new elements value-initialized); never shrinks.
template <typename T>
void Grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace alloy::merge
