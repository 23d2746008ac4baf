// Fused kernels of the transformer hot path: strided assignment (cat, KV caches, gradients of slices), dropout
// with its mask regenerated from the counter-based stream, attention softmax with an additive mask, and rotary
// position embeddings. Each computes exactly what the unfused ops compute, in the same float operations, so
// results are bit-identical to the unfused path of this backend (see backend.ts for the semantics).
#include <cmath>
#include <limits>

#include "kernels.h"
#include "vmath.h"

namespace peft {
namespace {

// murmur3's finaliser, as in generate.cc (the integer recipe of src/backend/js/random.ts).
inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// out[j] = x[j] · (keep(lo0 + j) ? m : 0), branch-free so that it vectorises: the comparison becomes 0 or 1 as an
// integer, then a float factor (0·m = 0 and 1·m = m exactly, so the product is the unfused one).
PEFT_SIMD_CLONES void dropoutRun(const float* x, float* out, int64_t n, uint32_t lo0, uint32_t key, uint32_t thr, float m) {
  const int32_t t = static_cast<int32_t>(thr);
#pragma omp simd
  for (int64_t j = 0; j < n; j++) {
    const uint32_t h = fmix32((lo0 + static_cast<uint32_t>(j)) ^ key);
    const int32_t kept = static_cast<int32_t>(h >> 8) < t;
    out[j] = x[j] * (static_cast<float>(kept) * m);
  }
}

// Rows per task such that a task has about kGrainCheap elements (kGrainMath for rows with an exponential each).
int64_t rowGrain(int64_t cols) { return std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(cols, 1)); }
int64_t expRowGrain(int64_t cols) { return std::max<int64_t>(1, kGrainMath / std::max<int64_t>(cols, 1)); }

}  // namespace

template <class T>
void assignKernel(const Strided& s, const T* src, T* dst, bool accumulate) {
  // View 0 is the destination, view 1 the source.
  const int64_t sd = s.inner(0), ss = s.inner(1);
  parallelFor(s.size, kGrainCheap, [&](int64_t b, int64_t e) {
    forRange(s, b, e, [&](int64_t, const int64_t* off, int64_t n) {
      T* dp = dst + off[0];
      const T* sp = src + off[1];
      if (accumulate) {
        if (sd == 1 && ss == 1) {
#pragma omp simd
          for (int64_t i = 0; i < n; i++) dp[i] += sp[i];
        } else {
          for (int64_t i = 0; i < n; i++) dp[i * sd] += sp[i * ss];
        }
      } else if (sd == 1 && ss == 1) {
        for (int64_t i = 0; i < n; i++) dp[i] = sp[i];
      } else {
        for (int64_t i = 0; i < n; i++) dp[i * sd] = sp[i * ss];
      }
    });
  });
}
template void assignKernel(const Strided&, const float*, float*, bool);
template void assignKernel(const Strided&, const int32_t*, int32_t*, bool);

void dropoutKernel(const Strided& s, const float* x, float* out, double keep, double scale, uint32_t seed,
                   int64_t counter) {
  // u(i) = (bits >> 8) / 2²⁴ < keep  ⇔  (bits >> 8) < ⌈keep·2²⁴⌉ (bits >> 8 is an integer): integer compares only.
  const double t = std::ceil(keep * 16777216.0);
  const uint32_t thr = t <= 0 ? 0u : t > 16777216.0 ? 16777217u : static_cast<uint32_t>(t);
  const float m = static_cast<float>(scale);
  const int64_t sx = s.inner(0);
  parallelFor(s.size, 4 * kGrainMath, [&](int64_t b, int64_t e) {
    forRange(s, b, e, [&](int64_t o, const int64_t* off, int64_t n) {
      const float* xp = x + off[0];
      float* op = out + o;
      int64_t i = 0;
      while (i < n) {
        // A run of stream positions with one high word: lo counts up without wrapping.
        const int64_t first = counter + o + i;
        const uint32_t hi = static_cast<uint32_t>(first >> 32);
        const uint32_t lo0 = static_cast<uint32_t>(static_cast<uint64_t>(first));
        const int64_t run = std::min<int64_t>(n - i, int64_t(4294967296LL) - int64_t(lo0));
        const uint32_t key = fmix32((hi ^ seed) + 0x9e3779b9u);
        if (sx == 1) {
          dropoutRun(xp + i, op + i, run, lo0, key, thr, m);
        } else {
          for (int64_t j = 0; j < run; j++) {
            const uint32_t h = fmix32((lo0 + static_cast<uint32_t>(j)) ^ key);
            op[i + j] = xp[(i + j) * sx] * ((h >> 8) < thr ? m : 0.0f);
          }
        }
        i += run;
      }
    });
  });
}

void maskedSoftmaxKernel(const Rows& r, const float* x, const float* mask, float* out) {
  // x and out are contiguous [rows, cols]; view 0 of r is the mask (absent when mask is null).
  const int64_t cols = r.cols, sm = mask ? r.inner[0] : 0;
  parallelFor(r.rows, expRowGrain(cols), [&](int64_t b, int64_t e) {
    auto row = [&](int64_t i, const float* mp) {
      const float* xr = x + i * cols;
      float* yr = out + i * cols;
      if (mp) {
        if (sm == 1) {
#pragma omp simd
          for (int64_t j = 0; j < cols; j++) yr[j] = xr[j] + mp[j];
        } else {
          for (int64_t j = 0; j < cols; j++) yr[j] = xr[j] + mp[j * sm];
        }
        xr = yr;
      }
      softmaxRow(xr, cols, yr);
    };
    if (mask) {
      forRows(r, b, e, [&](int64_t i, const int64_t* off) { row(i, mask + off[0]); });
    } else {
      for (int64_t i = b; i < e; i++) row(i, nullptr);
    }
  });
}

void rotaryKernel(const Rows& r, const float* x, const float* cosT, const float* sinT, float* out, bool transpose) {
  // Views: 0 = x (or dy), 1 = cos, 2 = sin, 3 = out. Forward: out = x·cos + rotate_half(x)·sin with
  // rotate_half(x) = [−x₂, x₁]; transposed (the gradient): out = x·cos + [x₂·sin₂, −x₁·sin₁].
  const int64_t D = r.cols, h = D / 2;
  const int64_t sx = r.inner[0], sc = r.inner[1], ss = r.inner[2], so = r.inner[3];
  const bool unit = sx == 1 && sc == 1 && ss == 1 && so == 1;
  parallelFor(r.rows, rowGrain(D), [&](int64_t b, int64_t e) {
    forRows(r, b, e, [&](int64_t, const int64_t* off) {
      const float* X = x + off[0];
      const float* C = cosT + off[1];
      const float* S = sinT + off[2];
      float* O = out + off[3];
      if (unit) {
        if (!transpose) {
#pragma omp simd
          for (int64_t j = 0; j < h; j++) O[j] = X[j] * C[j] + (-X[j + h]) * S[j];
#pragma omp simd
          for (int64_t j = h; j < D; j++) O[j] = X[j] * C[j] + X[j - h] * S[j];
        } else {
#pragma omp simd
          for (int64_t j = 0; j < h; j++) O[j] = X[j] * C[j] + X[j + h] * S[j + h];
#pragma omp simd
          for (int64_t j = h; j < D; j++) O[j] = X[j] * C[j] + (-(X[j - h] * S[j - h]));
        }
      } else {
        for (int64_t j = 0; j < D; j++) {
          const float xc = X[j * sx] * C[j * sc];
          float v;
          if (!transpose) v = j < h ? xc + (-X[(j + h) * sx]) * S[j * ss] : xc + X[(j - h) * sx] * S[j * ss];
          else v = j < h ? xc + X[(j + h) * sx] * S[(j + h) * ss] : xc + (-(X[(j - h) * sx] * S[(j - h) * ss]));
          O[j * so] = v;
        }
      }
    });
  });
}

}  // namespace peft
