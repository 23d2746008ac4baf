// Row-wise kernels on contiguous [rows, cols] matrices: softmax, layer/RMS norm, cross-entropy, and gradients.
//
// Rows are spread over threads. Per-row sums accumulate in double, as the reference does, and the normalisation
// arithmetic stays in double too (it is memory-bound, so that costs little and keeps x − mean exact enough).
// The exponentials of softmax and cross-entropy use the vectorised float vexp (vmath.h): they dominate the time,
// their results are within an ulp or two of the reference's, and they feed double sums.
// Weight/bias gradients sum over rows, so every thread accumulates its own double partials, added in order.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace peft {
namespace {

// Rows per task such that a task has about kGrainCheap elements.
int64_t rowGrain(int64_t cols) { return std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(cols, 1)); }

// Math.max over a row: NaN wins. (Max and NaN test separately, so that both loops vectorise.)
float rowMax(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t j = 0; j < n; j++) {
    m = x[j] > m ? x[j] : m;
    nan |= x[j] != x[j];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

// Σ exp(x − max) in double, optionally storing the exponentials.
double sumExp(const float* x, int64_t n, float mx, float* store) {
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

double sum(const float* x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; j++) s += x[j];
  return s;
}

// Adds per-chunk partial sums (chunk-major, `cols` each) in chunk order into `out`.
void combine(const std::vector<double>& partial, int chunks, int64_t cols, float* out) {
  for (int64_t j = 0; j < cols; j++) {
    double s = 0;
    for (int c = 0; c < chunks; c++) s += partial[c * cols + j];
    out[j] = static_cast<float>(s);
  }
}

}  // namespace

void softmaxKernel(const float* x, int64_t rows, int64_t cols, bool log, float* out) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x + r * cols;
      float* yr = out + r * cols;
      const float mx = rowMax(xr, cols);
      if (log) {
        const double lse = mx + std::log(sumExp(xr, cols, mx, nullptr));
        for (int64_t j = 0; j < cols; j++) yr[j] = static_cast<float>(xr[j] - lse);
      } else {
        const float inv = static_cast<float>(1 / sumExp(xr, cols, mx, yr));
        for (int64_t j = 0; j < cols; j++) yr[j] *= inv;
      }
    }
  });
}

void softmaxGradKernel(const float* y, const float* dy, int64_t rows, int64_t cols, bool log, float* out) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float *Y = y + r * cols, *G = dy + r * cols;
      float* D = out + r * cols;
      if (log) {  // d = g − exp(y)·Σg
        const double acc = sum(G, cols);
        for (int64_t j = 0; j < cols; j++) D[j] = static_cast<float>(G[j] - vexp(Y[j]) * acc);
      } else {  // d = y·(g − Σ g·y)
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < cols; j++) acc += double(G[j]) * Y[j];
        for (int64_t j = 0; j < cols; j++) D[j] = static_cast<float>(Y[j] * (G[j] - acc));
      }
    }
  });
}

void layerNormKernel(const float* x, const float* w, const float* bias, int64_t rows, int64_t cols, double eps,
                     float* out, float* mean, float* rstd) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* X = x + r * cols;
      float* Y = out + r * cols;
      const double mu = sum(X, cols) / cols;
      double v = 0;
#pragma omp simd reduction(+ : v)
      for (int64_t j = 0; j < cols; j++) v += (X[j] - mu) * (X[j] - mu);
      const double rs = 1 / std::sqrt(v / cols + eps);
      mean[r] = static_cast<float>(mu);
      rstd[r] = static_cast<float>(rs);
      for (int64_t j = 0; j < cols; j++) {
        Y[j] = static_cast<float>((X[j] - mu) * rs * (w ? w[j] : 1.0) + (bias ? bias[j] : 0.0));
      }
    }
  });
}

void layerNormGradKernel(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                         int64_t rows, int64_t cols, float* dx, float* dw, float* db) {
  const int chunks = chunksFor(rows, rowGrain(cols));
  const bool params = dw || db;
  std::vector<double> pw(params ? chunks * cols : 0, 0.0), pb(params ? chunks * cols : 0, 0.0);
  parallelChunks(rows, rowGrain(cols), [&](int c, int64_t b, int64_t e) {
    double* PW = params ? pw.data() + c * cols : nullptr;
    double* PB = params ? pb.data() + c * cols : nullptr;
    for (int64_t r = b; r < e; r++) {
      const float *X = x + r * cols, *G = dy + r * cols;
      float* DX = dx + r * cols;
      const double mu = mean[r], rs = rstd[r];
      double sumG = 0, sumGX = 0;
#pragma omp simd reduction(+ : sumG, sumGX)
      for (int64_t j = 0; j < cols; j++) {
        const double xhat = (X[j] - mu) * rs, g = G[j] * (w ? double(w[j]) : 1.0);
        sumG += g;
        sumGX += g * xhat;
      }
      if (params) {
        for (int64_t j = 0; j < cols; j++) {
          PW[j] += G[j] * ((X[j] - mu) * rs);
          PB[j] += G[j];
        }
      }
      for (int64_t j = 0; j < cols; j++) {
        const double xhat = (X[j] - mu) * rs, g = G[j] * (w ? double(w[j]) : 1.0);
        DX[j] = static_cast<float>(rs * (g - sumG / cols - xhat * sumGX / cols));
      }
    }
  });
  if (dw) combine(pw, chunks, cols, dw);
  if (db) combine(pb, chunks, cols, db);
}

void rmsNormKernel(const float* x, const float* w, int64_t rows, int64_t cols, double eps, float* out, float* rstd) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* X = x + r * cols;
      float* Y = out + r * cols;
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < cols; j++) ss += double(X[j]) * X[j];
      const double rs = 1 / std::sqrt(ss / cols + eps);
      rstd[r] = static_cast<float>(rs);
      for (int64_t j = 0; j < cols; j++) Y[j] = static_cast<float>(X[j] * rs * (w ? w[j] : 1.0));
    }
  });
}

void rmsNormGradKernel(const float* x, const float* w, const float* rstd, const float* dy, int64_t rows,
                       int64_t cols, float* dx, float* dw) {
  const int chunks = chunksFor(rows, rowGrain(cols));
  std::vector<double> pw(dw ? chunks * cols : 0, 0.0);
  parallelChunks(rows, rowGrain(cols), [&](int c, int64_t b, int64_t e) {
    double* PW = dw ? pw.data() + c * cols : nullptr;
    for (int64_t r = b; r < e; r++) {
      const float *X = x + r * cols, *G = dy + r * cols;
      float* DX = dx + r * cols;
      const double rs = rstd[r];
      double dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < cols; j++) dot += double(G[j]) * (w ? w[j] : 1.0) * X[j];
      if (PW) {
        for (int64_t j = 0; j < cols; j++) PW[j] += double(G[j]) * X[j] * rs;
      }
      const double k = dot * rs * rs * rs / cols;
      for (int64_t j = 0; j < cols; j++) DX[j] = static_cast<float>(double(G[j]) * (w ? w[j] : 1.0) * rs - X[j] * k);
    }
  });
  if (dw) combine(pw, chunks, cols, dw);
}

void crossEntropyKernel(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, double ignoreIndex,
                        float* loss, float* lse) {
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
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
  parallelFor(rows, rowGrain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* L = logits + r * cols;
      float* D = out + r * cols;
      const int32_t t = targets[r];
      if (t == ignoreIndex) {
        for (int64_t j = 0; j < cols; j++) D[j] = 0;
        continue;
      }
      const float g = dLoss[r], l = lse[r];
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) D[j] = vexp(L[j] - l) * g;
      D[t] = static_cast<float>(D[t] - double(g));
    }
  });
}

}  // namespace peft
