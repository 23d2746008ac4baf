// Matrix products with at most kFewRows rows (decoding: one row per running sequence).
//
// Such a product streams the weight B with little arithmetic per element, so BLAS's panel packing costs more than
// it saves. These kernels read B once, in place, and keep blocks of up to 4 rows × 24 columns of sums in registers,
// so each element of B loaded feeds every row of A in the block. B may be bfloat16 or float16 (a half-precision
// model's frozen weights): its vectors are widened in registers as they are loaded, so decoding streams half the
// bytes, and the sums are those of the float32 product of the widened values (widening is exact).
//
// Determinism: every output element is computed the same way whatever the number of rows, the blocking or the
// thread count, so a row gets the same bits alone as in a batch of eight. With B not transposed an element is one
// chain of multiply-adds over p in increasing order; with B transposed it is eight lane chains over p (one vector
// of p at a time, the last one zero-padded), added across in a fixed order. Columns or terms short of a whole
// vector go through zero-padded vectors too, never a scalar loop that the compiler might vectorise otherwise.
//
// This file is compiled with FMA contraction: the x86-64-v3 clone (AVX2 + FMA) turns each multiply-add into one fused
// instruction (one rounding), and the baseline clone multiplies then adds. A machine always
// runs the same clone, so each element still takes one fixed path.
#include <algorithm>
#include <vector>

#include "kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
// v8 values only pass between always-inlined helpers, never across a call, so the baseline ABI note is moot.
#pragma GCC diagnostic ignored "-Wpsabi"
#elif defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && __GNUC__ >= 12
// x86-64-v3 is AVX2 + FMA (and BMI, F16C); the clone is picked by those features, not by CPU model.
#define PEFT_FMA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PEFT_FMA_CLONES PEFT_SIMD_CLONES
#else
#define PEFT_FMA_CLONES
#endif

namespace peft {
namespace {

// Eight floats as one value: one AVX register in the x86-64-v3 clone, two SSE registers in the baseline one.
typedef float v8 __attribute__((vector_size(32)));
__attribute__((always_inline)) inline v8 load8(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline void store8(float* p, v8 v) { __builtin_memcpy(p, &v, sizeof v); }

// How eight consecutive elements of B become a v8: float32 as they are, half formats widened (exactly).
struct F32 {
  using T = float;
  static v8 load(const float* p) { return load8(p); }
  static float one(float x) { return x; }
};
typedef uint16_t h8 __attribute__((vector_size(16)));
struct BF16 {
  using T = uint16_t;
  // bfloat16 is the top half of a float32.
  static v8 load(const uint16_t* p) {
    typedef uint32_t u8 __attribute__((vector_size(32)));
    h8 h;
    __builtin_memcpy(&h, p, sizeof h);
    const u8 wide = __builtin_convertvector(h, u8) << 16;
    v8 v;
    __builtin_memcpy(&v, &wide, sizeof v);
    return v;
  }
  static float one(uint16_t x) {
    const uint32_t bits = uint32_t(x) << 16;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
  }
};
struct F16 {
  using T = uint16_t;
#if defined(__FLT16_MAX__)
  typedef _Float16 f16x8 __attribute__((vector_size(16)));
  // One F16C instruction in the x86-64-v3 clone; element by element in the baseline one.
  static v8 load(const uint16_t* p) {
    f16x8 h;
    __builtin_memcpy(&h, p, sizeof h);
    return __builtin_convertvector(h, v8);
  }
#else  // a compiler without _Float16 (GCC before 12 on x86): element by element
  static v8 load(const uint16_t* p) {
    v8 v;
    for (int i = 0; i < 8; i++) v[i] = f16ToFloat(p[i]);
    return v;
  }
#endif
  static float one(uint16_t x) { return f16ToFloat(x); }
};
// x in every lane (a shuffle, which GCC lowers to one broadcast; an initialiser it builds lane by lane).
__attribute__((always_inline)) inline v8 broadcast8(float x) {
#if defined(__clang__)
  const v8 v{x};
  return __builtin_shufflevector(v, v, 0, 0, 0, 0, 0, 0, 0, 0);
#else
  typedef int32_t i8 __attribute__((vector_size(32)));
  return __builtin_shuffle(v8{x}, i8{});
#endif
}
__attribute__((always_inline)) inline float laneSum(v8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// Rows of B in one pass of the non-transposed kernel (parallel streams for the prefetcher) before the sums go back
// to memory, and when rows of B alias in the L1 cache.
constexpr int64_t kPassRows = 8;
constexpr int64_t kAliasedPassRows = 6;

// A few-row product's operands, A row-major (packed when it was transposed), B of elements E::T.
template <class E>
struct Few {
  const float* a;
  int64_t lda, m, k;
  const typename E::T* b;
  int64_t ldb;
};
// Elements of B per 64-byte cache line.
template <class E>
constexpr int64_t kLine = 64 / sizeof(typename E::T);

// sums[r, j + t] += Σ_{p ∈ [p0, p1)} A[i0 + r, p]·B[p, j + t] for t < 8V (B not transposed), a multiply-add per p.
template <class E, int R, int V>
__attribute__((always_inline)) inline void blockN(const Few<E>& f, int64_t i0, int64_t j, int64_t p0, int64_t p1, float* sums,
                                                  int64_t lds, int64_t prefetchRows) {
  v8 acc[R][V];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) acc[r][v] = load8(sums + (i0 + r) * lds + j + 8 * v);
  for (int64_t p = p0; p < p1; p++) {
    const auto* bp = f.b + p * f.ldb + j;
    // The same piece of the next pass's rows is fetched now, a pass ahead of its use.
    if (prefetchRows && i0 == 0) {
      const auto* next = bp + prefetchRows * f.ldb;
      __builtin_prefetch(next, 0, 2);
      if (8 * V > kLine<E>) __builtin_prefetch(next + kLine<E>, 0, 2);
    }
    v8 bv[V];
    for (int v = 0; v < V; v++) bv[v] = E::load(bp + 8 * v);
    for (int r = 0; r < R; r++) {
      const v8 av = broadcast8(f.a[(i0 + r) * f.lda + p]);
      for (int v = 0; v < V; v++) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) store8(sums + (i0 + r) * lds + j + 8 * v, acc[r][v]);
}

// blockN over all m rows: four at a time, then the 1–3 left.
template <class E, int V>
__attribute__((always_inline)) inline void rowsN(const Few<E>& f, int64_t j, int64_t p0, int64_t p1, float* sums, int64_t lds,
                                                 int64_t prefetchRows) {
  int64_t i = 0;
  for (; i + 4 <= f.m; i += 4) blockN<E, 4, V>(f, i, j, p0, p1, sums, lds, prefetchRows);
  switch (f.m - i) {
    case 3: blockN<E, 3, V>(f, i, j, p0, p1, sums, lds, prefetchRows); break;
    case 2: blockN<E, 2, V>(f, i, j, p0, p1, sums, lds, prefetchRows); break;
    case 1: blockN<E, 1, V>(f, i, j, p0, p1, sums, lds, prefetchRows); break;
    default: break;
  }
}

// The last t < 8 columns from j: the pass's piece of B and of the sums copied into zero-padded vectors, so that
// these columns take exactly the vector arithmetic of the others (a scalar loop may be compiled otherwise: GCC
// vectorises the products and not the additions, which then no longer fuse).
template <class E>
__attribute__((always_inline)) inline void tailN(const Few<E>& f, int64_t j, int64_t t, int64_t p0, int64_t p1, float* sums, int64_t lds) {
  alignas(32) float b[kPassRows * 8] = {}, s[kFewRows * 8] = {};
  for (int64_t p = p0; p < p1; p++)
    for (int64_t c = 0; c < t; c++) b[(p - p0) * 8 + c] = E::one(f.b[p * f.ldb + j + c]);
  for (int64_t i = 0; i < f.m; i++) std::copy_n(sums + i * lds + j, t, s + i * 8);
  const Few<F32> piece{f.a + p0, f.lda, f.m, p1 - p0, b, 8};
  rowsN<F32, 1>(piece, 0, 0, p1 - p0, s, 8, 0);
  for (int64_t i = 0; i < f.m; i++) std::copy_n(s + i * 8, t, sums + i * lds + j);
}

// sums[:, j0..j1) += A·B[:, j0..j1) (B not transposed): passes over a few rows of B, each sweeping the columns 24
// at a time. Rows of B a multiple of 2 KiB apart fall into the same few L1 sets, and a pass's rows (with the next
// pass's, prefetched) then evict each other; such passes are shorter.
template <class E>
PEFT_FMA_CLONES void productN(const Few<E>& f, int64_t j0, int64_t j1, float* sums, int64_t lds) {
  const int64_t rows = f.ldb * int64_t(sizeof(typename E::T)) % 2048 == 0 ? kAliasedPassRows : kPassRows;
  for (int64_t p0 = 0; p0 < f.k; p0 += rows) {
    const int64_t p1 = std::min(f.k, p0 + rows), ahead = p1 < f.k ? rows : 0;
    int64_t j = j0;
    for (; j + 24 <= j1; j += 24) rowsN<E, 3>(f, j, p0, p1, sums, lds, ahead);
    if (j + 16 <= j1) rowsN<E, 2>(f, j, p0, p1, sums, lds, ahead), j += 16;
    if (j + 8 <= j1) rowsN<E, 1>(f, j, p0, p1, sums, lds, ahead), j += 8;
    if (j < j1) tailN(f, j, j1 - j, p0, p1, sums, lds);
  }
}

// s[r·C + c] = Σ_p A[i0 + r, p]·B[j + c, p] (B transposed: row j + c of B is k long): eight lanes of sums over p,
// then added across in a fixed order.
template <class E, int R, int C>
__attribute__((always_inline)) inline void blockT(const Few<E>& f, int64_t i0, int64_t j, float* s) {
  const float* a = f.a + i0 * f.lda;
  const auto* b = f.b + j * f.ldb;
  v8 acc[R][C] = {};
  int64_t p = 0;
  for (; p + 8 <= f.k; p += 8) {
    // The next rows of B are fetched while these are summed (the hardware prefetcher alone leaves the adders idle).
    if ((p & (kLine<E> - 1)) == 0)
      for (int c = 0; c < C; c++) __builtin_prefetch(b + (C + c) * f.ldb + p);
    v8 bv[C];
    for (int c = 0; c < C; c++) bv[c] = E::load(b + c * f.ldb + p);
    for (int r = 0; r < R; r++) {
      const v8 av = load8(a + r * f.lda + p);
      for (int c = 0; c < C; c++) acc[r][c] += av * bv[c];
    }
  }
  if (p < f.k) {  // the last k − p < 8 terms as one zero-padded vector (the same arithmetic as the others)
    alignas(32) float ta[R][8] = {}, tb[C][8] = {};
    for (int r = 0; r < R; r++) std::copy(a + r * f.lda + p, a + r * f.lda + f.k, ta[r]);
    for (int c = 0; c < C; c++)
      for (int64_t q = p; q < f.k; q++) tb[c][q - p] = E::one(b[c * f.ldb + q]);
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++) acc[r][c] += load8(ta[r]) * load8(tb[c]);
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) s[r * C + c] = laneSum(acc[r][c]);
}

// blockT over all m rows against C rows of B: four rows of A at a time, then the 1–3 left.
template <class E, int C>
__attribute__((always_inline)) inline void rowsT(const Few<E>& f, int64_t j, float* s) {
  int64_t i = 0;
  for (; i + 4 <= f.m; i += 4) blockT<E, 4, C>(f, i, j, s + i * C);
  switch (f.m - i) {
    case 3: blockT<E, 3, C>(f, i, j, s + i * C); break;
    case 2: blockT<E, 2, C>(f, i, j, s + i * C); break;
    case 1: blockT<E, 1, C>(f, i, j, s + i * C); break;
    default: break;
  }
}

// Where finished sums go: out[i, j] = alpha·sum + bias[j] (if any) + out[i, j] (if accumulating).
struct Finish {
  float* c;
  int64_t ldc;
  const float* bias;
  float alpha;
  bool accumulate;
  void operator()(int64_t i, int64_t j, float sum) const {
    float base = accumulate ? c[i * ldc + j] : 0.0f;
    if (bias) base += bias[j];
    c[i * ldc + j] = alpha * sum + base;
  }
};

// Output columns [j0, j1) of A·Bᵀ (B transposed), each row of B read once for all m rows of A: three rows of B at a
// time, or six for one or two rows of A (twice the sums in flight and the streams for the prefetcher: 8–20% faster
// at one row, where three leave the loads waiting; more rows of A would not fit the registers).
template <class E>
PEFT_FMA_CLONES void productT(const Few<E>& f, int64_t j0, int64_t j1, const Finish& finish) {
  float s[kFewRows * 6];
  for (int64_t j = j0; j < j1;) {
    const int64_t cols = f.m <= 2 && j1 - j >= 6 ? 6 : std::min<int64_t>(3, j1 - j);
    if (cols == 6 && f.m == 2) blockT<E, 2, 6>(f, 0, j, s);
    else if (cols == 6) blockT<E, 1, 6>(f, 0, j, s);
    else if (cols == 3) rowsT<E, 3>(f, j, s);
    else if (cols == 2) rowsT<E, 2>(f, j, s);
    else rowsT<E, 1>(f, j, s);
    for (int64_t i = 0; i < f.m; i++)
      for (int64_t c = 0; c < cols; c++) finish(i, j + c, s[i * cols + c]);
    j += cols;
  }
}

// gemmFewRows with B's elements of type E::T at b.
template <class E>
void fewRows(const Gemm& g, const typename E::T* b, int64_t batch, const std::vector<int64_t>& aOff,
             const std::vector<int64_t>& bOff, const std::vector<int64_t>& cOff) {
  const int64_t m = g.m, n = g.n, k = g.k;
  const float alpha = static_cast<float>(g.alpha);
  // Column pieces per item: one per thread once B is big enough (2 MiB) for a second thread's bandwidth to pay for
  // its wake-up. Results do not depend on where pieces end.
  const int T = activeThreads();
  const double bytes = static_cast<double>(sizeof(typename E::T)) * static_cast<double>(k) * static_cast<double>(n);
  const bool split = T > 1 && bytes * static_cast<double>(batch) >= 2.0 * (1 << 20);
  const int64_t pieces = split && batch < T ? std::min<int64_t>(T, (n + 23) / 24) : 1;
  const int64_t width = ((n + pieces - 1) / pieces + 23) / 24 * 24;  // whole blocks of columns
  // Rows of sums 8 floats longer than n, so that they are not a multiple of 2 KiB apart (such rows share cache sets).
  const int64_t lds = n + 8;
  std::vector<float> sums(g.transB ? 0 : static_cast<size_t>(batch * m * lds));
  // A stored k × m (transposed) is gathered into rows first (a few KiB per item).
  std::vector<float> rowsA(g.transA ? static_cast<size_t>(batch * m * k) : 0);
  for (int64_t bi = 0; g.transA && bi < batch; bi++) {
    const float* a = g.a + aOff[bi];
    for (int64_t i = 0; i < m; i++)
      for (int64_t p = 0; p < k; p++) rowsA[(bi * m + i) * k + p] = a[p * g.lda + i];
  }
  parallelFor(batch * pieces, split ? 1 : batch * pieces, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; t++) {
      const int64_t bi = t / pieces, j0 = std::min(n, (t % pieces) * width), j1 = std::min(n, j0 + width);
      const Few<E> f = g.transA ? Few<E>{rowsA.data() + bi * m * k, k, m, k, b + bOff[bi], g.ldb}
                                : Few<E>{g.a + aOff[bi], g.lda, m, k, b + bOff[bi], g.ldb};
      const Finish finish{g.out + cOff[bi], g.ldc, g.bias, alpha, g.accumulate};
      if (g.transB) {
        productT(f, j0, j1, finish);
      } else {
        float* s = sums.data() + bi * m * lds;
        productN(f, j0, j1, s, lds);
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = j0; j < j1; j++) finish(i, j, s[i * lds + j]);
      }
    }
  });
}

}  // namespace

void gemmFewRows(const Gemm& g, int64_t batch, const std::vector<int64_t>& aOff, const std::vector<int64_t>& bOff,
                 const std::vector<int64_t>& cOff, const uint16_t* b16, HalfKind bKind) {
  if (!b16) fewRows<F32>(g, g.b, batch, aOff, bOff, cOff);
  else if (bKind == HalfKind::bf16) fewRows<BF16>(g, b16, batch, aOff, bOff, cOff);
  else fewRows<F16>(g, b16, batch, aOff, bOff, cOff);
}

}  // namespace peft
