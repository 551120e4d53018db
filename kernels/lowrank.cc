#include "kernels/lowrank.h"

#include "kernels/isa_dispatch.h"

namespace alloy::kernels {

void LowRankRow(std::span<const double> l, const double* r, size_t stride,
                std::span<double> out) noexcept {
  isa::Dispatch([&](auto) ALLOY_LAMBDA_INLINE {
    double* __restrict o = out.data();
    const size_t n = out.size();
    for (size_t j = 0; j < n; ++j) o[j] = 0.0;
    for (size_t k = 0; k < l.size(); ++k) {
      const double lk = l[k];
      const double* __restrict rk = r + k * stride;
      for (size_t j = 0; j < n; ++j) o[j] += lk * rk[j];
    }
  });
}

}  // namespace alloy::kernels
