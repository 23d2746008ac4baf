// The fused AdamW update, in place.
#include <cmath>

#include "kernels.h"

namespace peft {

void adamwKernel(float* p, const float* g, float* m, float* v, int64_t n, const AdamW& hp) {
  // The reference's operations in its order, in double, each storage write rounded to float as a Float32Array
  // store is; with FMA contraction off (binding.gyp) the results are identical, not merely close.
  const double b1 = hp.beta1, b2 = hp.beta2, c1 = 1 - hp.beta1, c2 = 1 - hp.beta2;
  parallelFor(n, kGrainCheap / 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
      const double gi = g[i];
      const float pi = static_cast<float>(p[i] * hp.decay);
      const float mi = static_cast<float>(b1 * m[i] + c1 * gi);
      const float vi = static_cast<float>(b2 * v[i] + c2 * gi * gi);
      m[i] = mi;
      v[i] = vi;
      p[i] = static_cast<float>(pi - (hp.stepSize * mi) / (std::sqrt(double(vi)) / hp.bc2Sqrt + hp.eps));
    }
  });
}

}  // namespace peft
