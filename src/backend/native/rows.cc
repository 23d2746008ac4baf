// Row-wise kernels on contiguous [rows, cols] matrices: softmax, layer/RMS norm, cross-entropy, and gradients.
//
// Rows are spread over threads. Per-row sums accumulate in double, as the reference does, and the normalisation
// arithmetic stays in double too (it is memory-bound, so that costs little and keeps x − mean exact enough).
// The exponentials of softmax and cross-entropy use the vectorised float vexp (vmath.h): they dominate the time,
// their results are within an ulp or two of the reference's, and they feed double sums.
// Weight/bias gradients sum over rows: rows are cut into fixed chunks (whatever the thread count), each chunk
// accumulates its own double partials, and those are added in chunk order, so results never depend on the threads.
// The per-row work is in PEFT_SIMD_CLONES functions: an AVX2 version is picked at load time where the CPU has it
// (the build itself targets any x86-64-v2 machine); the loops are written branch-free (the presence of a weight or
// bias is a template parameter) so that both versions vectorise.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace peft {
namespace {

// Rows per task such that a task has about kGrainCheap elements (kGrainMath for rows with an exponential each).
int64_t rowGrain(int64_t cols) { return std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(cols, 1)); }
int64_t expRowGrain(int64_t cols) { return std::max<int64_t>(1, kGrainMath / std::max<int64_t>(cols, 1)); }

// Math.max over a row: NaN wins. (Max and NaN test separately, so that both loops vectorise.)
PEFT_SIMD_CLONES float rowMax(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t j = 0; j < n; j++) {
    m = x[j] > m ? x[j] : m;
    nan |= x[j] != x[j];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

// Σ exp(x − max) in double, optionally storing the exponentials (store may be x itself).
PEFT_SIMD_CLONES double sumExp(const float* x, int64_t n, float mx, float* store) {
  double s = 0;
  if (store) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
      const float e = vexp(x[j] - mx);
      store[j] = e;
      s += e;
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += vexp(x[j] - mx);
  }
  return s;
}

PEFT_SIMD_CLONES double sum(const float* x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; j++) s += x[j];
  return s;
}

PEFT_SIMD_CLONES void scaleRow(float* y, int64_t n, float f) {
#pragma omp simd
  for (int64_t j = 0; j < n; j++) y[j] *= f;
}

PEFT_SIMD_CLONES void logSoftmaxRow(const float* x, int64_t n, double lse, float* y) {
#pragma omp simd
  for (int64_t j = 0; j < n; j++) y[j] = static_cast<float>(x[j] - lse);
}

PEFT_SIMD_CLONES void softmaxGradRow(const float* Y, const float* G, int64_t n, bool log, float* D) {
  if (log) {  // d = g − exp(y)·Σg
    const double acc = sum(G, n);
#pragma omp simd
    for (int64_t j = 0; j < n; j++) D[j] = static_cast<float>(G[j] - vexp(Y[j]) * acc);
  } else {  // d = y·(g − Σ g·y)
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; j++) acc += double(G[j]) * Y[j];
#pragma omp simd
    for (int64_t j = 0; j < n; j++) D[j] = static_cast<float>(Y[j] * (G[j] - acc));
  }
}

template <bool W, bool B>
PEFT_SIMD_CLONES void layerNormRow(const float* X, const float* w, const float* bias, int64_t cols, double eps,
                                   float* Y, float& mean, float& rstd) {
  const double mu = sum(X, cols) / cols;
  double v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < cols; j++) v += (X[j] - mu) * (X[j] - mu);
  const double rs = 1 / std::sqrt(v / cols + eps);
  mean = static_cast<float>(mu);
  rstd = static_cast<float>(rs);
#pragma omp simd
  for (int64_t j = 0; j < cols; j++) {
    double y = (X[j] - mu) * rs;
    if constexpr (W) y *= w[j];
    if constexpr (B) y += bias[j];
    Y[j] = static_cast<float>(y);
  }
}

template <bool W, bool P>
PEFT_SIMD_CLONES void layerNormGradRow(const float* X, const float* G, const float* w, int64_t cols, double mu, double rs,
                                       float* DX, double* PW, double* PB) {
  double sumG = 0, sumGX = 0;
#pragma omp simd reduction(+ : sumG, sumGX)
  for (int64_t j = 0; j < cols; j++) {
    const double xhat = (X[j] - mu) * rs, g = W ? G[j] * double(w[j]) : double(G[j]);
    sumG += g;
    sumGX += g * xhat;
  }
  if constexpr (P) {
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) {
      PW[j] += G[j] * ((X[j] - mu) * rs);
      PB[j] += G[j];
    }
  }
  const double a = sumG / cols, c = sumGX / cols;
#pragma omp simd
  for (int64_t j = 0; j < cols; j++) {
    const double xhat = (X[j] - mu) * rs, g = W ? G[j] * double(w[j]) : double(G[j]);
    DX[j] = static_cast<float>(rs * (g - a - xhat * c));
  }
}

template <bool W>
PEFT_SIMD_CLONES void rmsNormRow(const float* X, const float* w, int64_t cols, double eps, float* Y, float& rstd) {
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < cols; j++) ss += double(X[j]) * X[j];
  const double rs = 1 / std::sqrt(ss / cols + eps);
  rstd = static_cast<float>(rs);
#pragma omp simd
  for (int64_t j = 0; j < cols; j++) Y[j] = static_cast<float>(W ? X[j] * rs * w[j] : X[j] * rs);
}

template <bool W>
PEFT_SIMD_CLONES void rmsNormGradRow(const float* X, const float* G, const float* w, int64_t cols, double rs, float* DX,
                                     double* PW) {
  double dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < cols; j++) dot += W ? double(G[j]) * w[j] * X[j] : double(G[j]) * X[j];
  if (PW) {
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) PW[j] += double(G[j]) * X[j] * rs;
  }
  const double k = dot * rs * rs * rs / cols;
#pragma omp simd
  for (int64_t j = 0; j < cols; j++) DX[j] = static_cast<float>((W ? double(G[j]) * w[j] * rs : double(G[j]) * rs) - X[j] * k);
}

PEFT_SIMD_CLONES void crossEntropyGradRow(const float* L, int64_t cols, float l, float g, float* D) {
#pragma omp simd
  for (int64_t j = 0; j < cols; j++) D[j] = vexp(L[j] - l) * g;
}

// Rows per fixed chunk of the weight-gradient partial sums: a quarter of a task's grain, so that the threads share
// the chunks evenly.
int64_t chunkRows(int64_t cols) { return std::max<int64_t>(1, rowGrain(cols) / 4); }

// Adds per-chunk partial sums (chunk-major, `cols` each) in chunk order into `out`.
void combine(const std::vector<double>& partial, int64_t chunks, int64_t cols, float* out) {
  for (int64_t j = 0; j < cols; j++) {
    double s = 0;
    for (int64_t c = 0; c < chunks; c++) s += partial[c * cols + j];
    out[j] = static_cast<float>(s);
  }
}

}  // namespace

void softmaxRow(const float* x, int64_t cols, float* y) {
  const float mx = rowMax(x, cols);
  const float inv = static_cast<float>(1 / sumExp(x, cols, mx, y));
  scaleRow(y, cols, inv);
}

void softmaxKernel(const float* x, int64_t rows, int64_t cols, bool log, float* out) {
  parallelFor(rows, expRowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x + r * cols;
      float* yr = out + r * cols;
      if (log) {
        const float mx = rowMax(xr, cols);
        logSoftmaxRow(xr, cols, mx + std::log(sumExp(xr, cols, mx, nullptr)), yr);
      } else {
        softmaxRow(xr, cols, yr);
      }
    }
  });
}

void softmaxGradKernel(const float* y, const float* dy, int64_t rows, int64_t cols, bool log, float* out) {
  parallelFor(rows, expRowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) softmaxGradRow(y + r * cols, dy + r * cols, cols, log, out + r * cols);
  });
}

void layerNormKernel(const float* x, const float* w, const float* bias, int64_t rows, int64_t cols, double eps,
                     float* out, float* mean, float* rstd) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* X = x + r * cols;
      float* Y = out + r * cols;
      if (w && bias) layerNormRow<true, true>(X, w, bias, cols, eps, Y, mean[r], rstd[r]);
      else if (w) layerNormRow<true, false>(X, w, bias, cols, eps, Y, mean[r], rstd[r]);
      else if (bias) layerNormRow<false, true>(X, w, bias, cols, eps, Y, mean[r], rstd[r]);
      else layerNormRow<false, false>(X, w, bias, cols, eps, Y, mean[r], rstd[r]);
    }
  });
}

void layerNormGradKernel(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                         int64_t rows, int64_t cols, float* dx, float* dw, float* db) {
  const int64_t chunks = fixedChunkCount(rows, chunkRows(cols));
  const bool params = dw || db;
  std::vector<double> pw(params ? chunks * cols : 0, 0.0), pb(params ? chunks * cols : 0, 0.0);
  forFixedChunks(rows, chunkRows(cols), rowGrain(cols), [&](int64_t c, int64_t b, int64_t e) {
    double* PW = params ? pw.data() + c * cols : nullptr;
    double* PB = params ? pb.data() + c * cols : nullptr;
    for (int64_t r = b; r < e; r++) {
      const float *X = x + r * cols, *G = dy + r * cols;
      float* DX = dx + r * cols;
      if (w && params) layerNormGradRow<true, true>(X, G, w, cols, mean[r], rstd[r], DX, PW, PB);
      else if (w) layerNormGradRow<true, false>(X, G, w, cols, mean[r], rstd[r], DX, PW, PB);
      else if (params) layerNormGradRow<false, true>(X, G, w, cols, mean[r], rstd[r], DX, PW, PB);
      else layerNormGradRow<false, false>(X, G, w, cols, mean[r], rstd[r], DX, PW, PB);
    }
  });
  if (dw) combine(pw, chunks, cols, dw);
  if (db) combine(pb, chunks, cols, db);
}

void rmsNormKernel(const float* x, const float* w, int64_t rows, int64_t cols, double eps, float* out, float* rstd) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      if (w) rmsNormRow<true>(x + r * cols, w, cols, eps, out + r * cols, rstd[r]);
      else rmsNormRow<false>(x + r * cols, w, cols, eps, out + r * cols, rstd[r]);
    }
  });
}

void rmsNormGradKernel(const float* x, const float* w, const float* rstd, const float* dy, int64_t rows,
                       int64_t cols, float* dx, float* dw) {
  const int64_t chunks = fixedChunkCount(rows, chunkRows(cols));
  std::vector<double> pw(dw ? chunks * cols : 0, 0.0);
  forFixedChunks(rows, chunkRows(cols), rowGrain(cols), [&](int64_t c, int64_t b, int64_t e) {
    double* PW = dw ? pw.data() + c * cols : nullptr;
    for (int64_t r = b; r < e; r++) {
      if (w) rmsNormGradRow<true>(x + r * cols, dy + r * cols, w, cols, rstd[r], dx + r * cols, PW);
      else rmsNormGradRow<false>(x + r * cols, dy + r * cols, w, cols, rstd[r], dx + r * cols, PW);
    }
  });
  if (dw) combine(pw, chunks, cols, dw);
}

void crossEntropyKernel(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, double ignoreIndex,
                        float* loss, float* lse) {
  parallelFor(rows, expRowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* L = logits + r * cols;
      const float mx = rowMax(L, cols);
      const double l = mx + std::log(sumExp(L, cols, mx, nullptr));
      lse[r] = static_cast<float>(l);
      const int32_t t = targets[r];
      loss[r] = t == ignoreIndex ? 0.0f : static_cast<float>(l - L[t]);
    }
  });
}

void crossEntropyGradKernel(const float* logits, const int32_t* targets, const float* lse, const float* dLoss,
                            int64_t rows, int64_t cols, double ignoreIndex, float* out) {
  parallelFor(rows, expRowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* L = logits + r * cols;
      float* D = out + r * cols;
      const int32_t t = targets[r];
      if (t == ignoreIndex) {
        for (int64_t j = 0; j < cols; j++) D[j] = 0;
        continue;
      }
      const float g = dLoss[r];
      crossEntropyGradRow(L, cols, lse[r], g, D);
      D[t] = static_cast<float>(D[t] - double(g));
    }
  });
}

}  // namespace peft
