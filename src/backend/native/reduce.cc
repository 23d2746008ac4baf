// Reductions over sets of axes, and argmax.
//
// The kept axes (K) index the output, the reduced axes (R) are folded into each output element. After dropping
// size-1 axes and fusing contiguous runs there are three shapes of work:
//   • everything reduced: split R into fixed chunks (whatever the thread count), combine their partials in order;
//   • R is innermost in memory (a last-axis sum, the softmax denominator kind): one output per task, the inner
//     loop runs along contiguous memory;
//   • K is innermost (a column sum such as a bias gradient over [tokens, features]): each task owns a block of
//     adjacent outputs and adds whole row pieces into a small accumulator array, again contiguous.
// Every output element is computed by one thread in a fixed order, so results never depend on the thread count.
// Sums accumulate in double (the reference adds in float32 storage, so it is the less accurate of the two);
// max/min keep the reference's NaN propagation and first-wins ties, because R is always visited in row-major
// order for each output.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"

namespace peft {
namespace {

struct SumOp {
  using T = double;
  static T init() { return 0; }
  static void add(T& acc, double v) { acc += v; }
  static void segment(T& acc, const float* p, int64_t n, int64_t st) {
    double a = 0;
    if (st == 1) {
#pragma omp simd reduction(+ : a)
      for (int64_t i = 0; i < n; i++) a += p[i];
    } else {
      for (int64_t i = 0; i < n; i++) a += p[i * st];
    }
    acc += a;
  }
};

struct MaxOp {
  using T = float;
  static T init() { return -std::numeric_limits<float>::infinity(); }
  static void add(T& acc, float v) {
    if (v > acc || v != v) acc = v;
  }
  static void segment(T& acc, const float* p, int64_t n, int64_t st) {
    for (int64_t i = 0; i < n; i++) add(acc, p[i * st]);
  }
};

struct MinOp {
  using T = float;
  static T init() { return std::numeric_limits<float>::infinity(); }
  static void add(T& acc, float v) {
    if (v < acc || v != v) acc = v;
  }
  static void segment(T& acc, const float* p, int64_t n, int64_t st) {
    for (int64_t i = 0; i < n; i++) add(acc, p[i * st]);
  }
};

// The axes of one group (kept or reduced), in the view's order, as a one-view Strided with offset 0.
Strided group(int nd, const double* shape, const double* strides, const bool* keep, bool kept) {
  std::vector<double> sh, st;
  for (int d = 0; d < nd; d++) {
    if (keep[d] == kept) {
      sh.push_back(shape[d]);
      st.push_back(strides[d]);
    }
  }
  const double* sts[] = {st.data()};
  const double zero = 0;
  return makeStrided(1, static_cast<int>(sh.size()), sh.data(), sts, &zero);
}

// Storage offset of element `index` (row-major) of a one-view Strided.
int64_t offsetOf(const Strided& s, int64_t index) {
  int64_t off = s.offset[0];
  for (int d = s.nd - 1; d >= 0; d--) {
    off += (index % s.shape[d]) * s.stride[0][d];
    index /= s.shape[d];
  }
  return off;
}

template <class Op>
void reduceWith(const Strided& K, const Strided& R, const float* x, float* out) {
  using T = typename Op::T;
  const int64_t nOut = K.size, nRed = R.size;
  if (nOut == 0) return;
  if (nRed == 0) {
    for (int64_t o = 0; o < nOut; o++) out[o] = static_cast<float>(Op::init());
    return;
  }
  const int64_t rIn = R.inner(0);
  auto reduceAll = [&](T& acc, const float* base, int64_t b, int64_t e) {
    forRange(R, b, e, [&](int64_t, const int64_t* off, int64_t n) { Op::segment(acc, base + off[0], n, rIn); });
  };

  if (nOut == 1) {  // everything reduced: fixed chunks (see forFixedChunks), their partials combined in order
    const int64_t size = kGrainCheap / 4;
    std::vector<T> partial(fixedChunkCount(nRed, size), Op::init());
    forFixedChunks(nRed, size, kGrainCheap, [&](int64_t c, int64_t b, int64_t e) { reduceAll(partial[c], x + K.offset[0], b, e); });
    T acc = Op::init();
    for (T p : partial) Op::add(acc, p);
    out[0] = static_cast<float>(acc);
    return;
  }

  const int64_t kIn = K.inner(0);
  if (std::llabs(rIn) <= std::llabs(kIn)) {  // R innermost: one output element per step
    parallelFor(nOut, std::max<int64_t>(1, kGrainCheap / nRed), [&](int64_t b, int64_t e) {
      forRange(K, b, e, [&](int64_t o, const int64_t* off, int64_t n) {
        for (int64_t i = 0; i < n; i++) {
          T acc = Op::init();
          reduceAll(acc, x + off[0] + i * kIn, 0, nRed);
          out[o + i] = static_cast<float>(acc);
        }
      });
    });
    return;
  }

  // K innermost: tasks own blocks of `block` adjacent outputs along K's inner axis.
  const int64_t len = K.rowLength(), outerK = nOut / len;
  int64_t block = (nOut * nRed >= 4 * kGrainCheap) ? len * outerK / (4 * maxThreads()) : len;
  block = std::min<int64_t>(512, std::max<int64_t>(16, (block + 15) / 16 * 16));
  const int64_t blocks = (len + block - 1) / block;
  parallelFor(outerK * blocks, std::max<int64_t>(1, kGrainCheap / (block * nRed)), [&](int64_t b, int64_t e) {
    T acc[512];
    for (int64_t t = b; t < e; t++) {
      const int64_t ko = t / blocks, j0 = (t % blocks) * block, bl = std::min(block, len - j0);
      const float* base = x + offsetOf(K, ko * len + j0);
      for (int64_t j = 0; j < bl; j++) acc[j] = Op::init();
      forRange(R, 0, nRed, [&](int64_t, const int64_t* off, int64_t n) {
        for (int64_t r = 0; r < n; r++) {
          const float* p = base + off[0] + r * rIn;
          if (kIn == 1) {
            for (int64_t j = 0; j < bl; j++) Op::add(acc[j], p[j]);
          } else {
            for (int64_t j = 0; j < bl; j++) Op::add(acc[j], p[j * kIn]);
          }
        }
      });
      for (int64_t j = 0; j < bl; j++) out[ko * len + j0 + j] = static_cast<float>(acc[j]);
    }
  });
}

}  // namespace

void reduceKernel(Reduce op, int nd, const double* shape, const double* strides, int64_t offset, const bool* keep,
                  const float* x, float* out) {
  Strided K = group(nd, shape, strides, keep, true);
  Strided R = group(nd, shape, strides, keep, false);
  K.offset[0] = offset;
  switch (op) {
    case Reduce::sum: return reduceWith<SumOp>(K, R, x, out);
    case Reduce::max: return reduceWith<MaxOp>(K, R, x, out);
    case Reduce::min: return reduceWith<MinOp>(K, R, x, out);
    case Reduce::count: break;
  }
}

void argmaxKernel(const float* x, int64_t outer, int64_t n, int64_t inner, int32_t* out) {
  // Blocks of adjacent inner positions per task, so every pass over the n axis reads contiguous memory.
  const int64_t block = inner == 1 ? 1 : 256, blocks = (inner + block - 1) / block;
  parallelFor(outer * blocks, std::max<int64_t>(1, kGrainCheap / (n * block + 1)), [&](int64_t b, int64_t e) {
    float bestV[256];
    for (int64_t t = b; t < e; t++) {
      const int64_t o = t / blocks, i0 = (t % blocks) * block, bl = std::min(block, inner - i0);
      int32_t* best = out + o * inner + i0;
      for (int64_t i = 0; i < bl; i++) {
        best[i] = 0;
        bestV[i] = -std::numeric_limits<float>::infinity();
      }
      for (int64_t j = 0; j < n; j++) {
        const float* row = x + (o * n + j) * inner + i0;
        for (int64_t i = 0; i < bl; i++) {
          if (row[i] > bestV[i]) {
            bestV[i] = row[i];
            best[i] = static_cast<int32_t>(j);
          }
        }
      }
    }
  });
}

}  // namespace peft
