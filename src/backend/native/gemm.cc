// Batched matrix products through CBLAS (OpenBLAS, or Accelerate on macOS).
//
// Each batch item is one or more cblas_sgemm calls in row-major order; GemmSpec's addressing (element (i, j) of A at
// i·lda + j, or j·lda + i when transposed; of the output at i·ldc + j) is exactly BLAS's, so operands are passed as
// they are. BLAS insists on lda ≥ the stored row length; a matrix with a single stored row never uses its stride, so
// it gets a legal one, and a matrix whose rows overlap (lda = 0 for a broadcast row, say) is packed into scratch.
// A bias row is written into the output first and the product added to it (beta = 1), so it costs no extra pass.
//
// Threading and determinism. OpenBLAS's results depend on how a product is cut: its threaded driver blocks k
// differently from its single-threaded one, and an element's rounding depends on where it falls in the micro-kernel's
// tiles, so the same product with 1, 2 or 3 threads, or cut into other pieces, differs in the last bits (measured:
// 512×768×768 differs in 7% of its elements between 1 and 2 OpenBLAS threads, and between whole and halved calls).
// So BLAS never threads a call here: every call is single-threaded, on a piece of the output whose bounds depend on
// the product's shape (and the machine's core count) alone, never on the thread count; threads only decide who
// computes which piece. Results are then bit-identical whatever PEFT_TS_THREADS or the adaptive thread count says.
// The cost is that pieces re-pack their shares of A and B (a few per cent; see the benchmark).
#include <algorithm>
#include <climits>
#include <vector>

#if defined(PEFT_BLAS_ACCELERATE)
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

#include "kernels.h"

namespace peft {
namespace {

// The least work worth a piece (≈ 20 µs at 100 GFLOP/s): smaller products run whole on the calling thread.
constexpr double kMinTaskFlops = 2e6;
// Piece bounds fall on multiples of this many rows or columns (whole vector widths and micro-kernel tiles).
constexpr int64_t kPieceUnit = 16;

struct Operand {
  const float* base;
  int64_t rows, cols, ld;  // the stored matrix
  bool pack;
};

Operand operand(const float* base, bool trans, int64_t outer, int64_t inner, int64_t ld) {
  // Stored shape: rows × cols with row stride ld; `outer × inner` is the op() shape.
  Operand o{base, trans ? inner : outer, trans ? outer : inner, ld, false};
  if (o.rows <= 1) o.ld = std::max<int64_t>(o.cols, 1);
  else if (o.ld < o.cols) o.pack = true;
  return o;
}

const float* packed(const Operand& o, int64_t offset, std::vector<float>& scratch) {
  if (!o.pack) return o.base + offset;
  scratch.resize(static_cast<size_t>(o.rows * o.cols));
  for (int64_t r = 0; r < o.rows; r++) {
    for (int64_t c = 0; c < o.cols; c++) scratch[r * o.cols + c] = o.base[offset + r * o.ld + c];
  }
  return scratch.data();
}

// Products with at most kSmallM rows (decoding: one row per sequence) are bandwidth-bound: the weight is streamed
// once and every row of A reused from cache. BLAS packs panels first (and threads on its own); this does not.
constexpr int64_t kSmallM = 8;
// Output columns per tile: B is read in row pieces this long (longer pieces stream better), and the kSmallM × kTile
// accumulators (64 KiB) stay in L2.
constexpr int64_t kTile = 2048;
// The most ranges of k a few-row product that sums whole rows of B is cut into (bounds the partial sums kept).
constexpr int64_t kSmallChunks = 16;
// The most partial sums (floats) those ranges may keep; wider products take column tiles instead.
constexpr int64_t kMaxPartials = 1 << 22;

// out[i, j0 + t] for t < w: alpha·Σ_p A[i, p]·B[p, j0 + t] + (out if accumulate) + bias, B not transposed
// (row p of B at p·ldb). Accumulates in float over p in order.
PEFT_SIMD_CLONES void smallTileN(const Gemm& g, const float* a, const float* b, float* c, int64_t j0, int64_t w) {
  alignas(64) float acc[kSmallM][kTile];
  const int64_t m = g.m;
  for (int64_t i = 0; i < m; i++) {
    for (int64_t t = 0; t < w; t++) acc[i][t] = 0.0f;
  }
  for (int64_t p = 0; p < g.k; p++) {
    const float* brow = b + p * g.ldb + j0;
    for (int64_t i = 0; i < m; i++) {
      const float av = g.transA ? a[p * g.lda + i] : a[i * g.lda + p];
      float* ai = acc[i];
#pragma omp simd
      for (int64_t t = 0; t < w; t++) ai[t] += av * brow[t];
    }
  }
  const float alpha = static_cast<float>(g.alpha);
  for (int64_t i = 0; i < m; i++) {
    float* row = c + i * g.ldc + j0;
    for (int64_t t = 0; t < w; t++) {
      float base = g.accumulate ? row[t] : 0.0f;
      if (g.bias) base += g.bias[j0 + t];
      row[t] = alpha * acc[i][t] + base;
    }
  }
}

// Eight floats as one value: GCC lowers it to one AVX register in the AVX2 clone and to two SSE registers in the
// baseline one, with the same per-lane arithmetic, so both clones compute the same values.
typedef float v8 __attribute__((vector_size(32)));
__attribute__((always_inline)) inline v8 load8(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline void store8(float* p, v8 v) { __builtin_memcpy(p, &v, sizeof v); }
__attribute__((always_inline)) inline float laneSum(v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

// Rows of B summed per pass over the few-row accumulators (each accumulator is loaded and stored once per group).
constexpr int64_t kRowGroup = 8;
// Columns per pass: a group's pieces of B and the m rows of sums (8 KiB each) stay in L1 while every row of A uses them.
constexpr int64_t kColBlock = 256;

// acc[i, t] += Σ_{q < P} x[i·P + q]·B[p + q, t] for t in [t0, t1), added one q after another (so every element is a
// sequential sum over p whatever m or P is: a row's result does not depend on the other rows of the product). Four
// vectors of columns advance together, so that four independent chains of additions hide the adder's latency.
template <int P>
__attribute__((always_inline)) inline void addRowGroup(const float* x, const float* const* brows, int64_t m, int64_t n,
                                                       int64_t t0, int64_t t1, float* acc) {
  for (int64_t i = 0; i < m; i++) {
    float* ai = acc + i * n;
    const float* xi = x + i * P;
    int64_t t = t0;
    for (; t + 32 <= t1; t += 32) {
      v8 s0 = load8(ai + t), s1 = load8(ai + t + 8), s2 = load8(ai + t + 16), s3 = load8(ai + t + 24);
      for (int q = 0; q < P; q++) {
        const float* bq = brows[q] + t;
        const v8 xq = v8{} + xi[q];
        s0 += xq * load8(bq);
        s1 += xq * load8(bq + 8);
        s2 += xq * load8(bq + 16);
        s3 += xq * load8(bq + 24);
      }
      store8(ai + t, s0), store8(ai + t + 8, s1), store8(ai + t + 16, s2), store8(ai + t + 24, s3);
    }
    for (; t < t1; t++) {
      float v = ai[t];
      for (int q = 0; q < P; q++) v += xi[q] * brows[q][t];
      ai[t] = v;
    }
  }
}

// Σ_{p ∈ [p0, p1)} A[i, p]·B[p, :] into acc[i·n …] for all m rows, B not transposed: rows of B read in order, a group
// of kRowGroup at a time (parallel sequential streams), each piece of the group reused from L1 by every row of A.
PEFT_SIMD_CLONES void smallRowsN(const Gemm& g, const float* a, const float* b, int64_t p0, int64_t p1, float* acc) {
  const int64_t m = g.m, n = g.n;
  for (int64_t q = 0; q < m * n; q++) acc[q] = 0.0f;
  float x[kSmallM * kRowGroup];
  const float* brows[kRowGroup];
  for (int64_t p = p0; p < p1; p += kRowGroup) {
    const int64_t rows = std::min(kRowGroup, p1 - p);
    for (int64_t q = 0; q < rows; q++) {
      brows[q] = b + (p + q) * g.ldb;
      for (int64_t i = 0; i < m; i++) x[i * rows + q] = g.transA ? a[(p + q) * g.lda + i] : a[i * g.lda + p + q];
    }
    for (int64_t t0 = 0; t0 < n; t0 += kColBlock) {
      const int64_t t1 = std::min(n, t0 + kColBlock);
      if (rows == kRowGroup) addRowGroup<kRowGroup>(x, brows, m, n, t0, t1, acc);
      else
        for (int64_t q = 0; q < rows; q++) {
          float xq[kSmallM];
          for (int64_t i = 0; i < m; i++) xq[i] = x[i * rows + q];
          addRowGroup<1>(xq, brows + q, m, n, t0, t1, acc);
        }
    }
  }
}

// s[r][c] = Σ_p A[r, p]·B[c, p] for R rows of A (row r at a + r·lda) and C rows of B (at b + c·ldb): eight lanes of
// partial sums over p, added in a fixed order, then the tail. Every (r, c) takes the same steps whatever R and C, so
// a row's result does not depend on how many rows the product has.
template <int R, int C>
__attribute__((always_inline)) inline void dotBlock(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* s, int64_t lds) {
  v8 acc[R][C] = {};
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    // The next C rows of B are fetched while these are summed (the hardware prefetcher alone leaves the adders idle).
    if ((p & 15) == 0)
      for (int c = 0; c < C; c++) __builtin_prefetch(b + (C + c) * ldb + p);
    v8 bv[C];
    for (int c = 0; c < C; c++) bv[c] = load8(b + c * ldb + p);
    for (int r = 0; r < R; r++) {
      const v8 av = load8(a + r * lda + p);
      for (int c = 0; c < C; c++) acc[r][c] += av * bv[c];
    }
  }
  for (int r = 0; r < R; r++) {
    for (int c = 0; c < C; c++) {
      float x = laneSum(acc[r][c]);
      for (int64_t q = p; q < k; q++) x += a[r * lda + q] * b[c * ldb + q];
      s[r * lds + c] = x;
    }
  }
}

// dotBlock for the rows [i, m) of A, four at a time, against C rows of B.
template <int C>
__attribute__((always_inline)) inline void dotRows(const float* a, int64_t lda, int64_t m, const float* b, int64_t ldb, int64_t k, float* s) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) dotBlock<4, C>(a + i * lda, lda, b, ldb, k, s + i * C, C);
  switch (m - i) {
    case 3: dotBlock<3, C>(a + i * lda, lda, b, ldb, k, s + i * C, C); break;
    case 2: dotBlock<2, C>(a + i * lda, lda, b, ldb, k, s + i * C, C); break;
    case 1: dotBlock<1, C>(a + i * lda, lda, b, ldb, k, s + i * C, C); break;
    default: break;
  }
}

// The same with B transposed (row j of B, k long, at j·ldb): one dot product per output, two rows of B at a time,
// each read once for all m rows of A.
PEFT_SIMD_CLONES void smallTileT(const Gemm& g, const float* a, const float* b, float* c, int64_t j0, int64_t w) {
  const float alpha = static_cast<float>(g.alpha);
  const int64_t m = g.m, k = g.k;
  float s[kSmallM * 2];
  for (int64_t t = 0; t < w; t += 2) {
    const int64_t cols = std::min<int64_t>(2, w - t);
    const float* brow = b + (j0 + t) * g.ldb;
    if (!g.transA) {
      if (cols == 2) dotRows<2>(a, g.lda, m, brow, g.ldb, k, s);
      else dotRows<1>(a, g.lda, m, brow, g.ldb, k, s);
    } else {
      for (int64_t i = 0; i < m; i++) {
        for (int64_t cc = 0; cc < cols; cc++) {
          float acc = 0.0f;
          for (int64_t p = 0; p < k; p++) acc += a[p * g.lda + i] * brow[cc * g.ldb + p];
          s[i * cols + cc] = acc;
        }
      }
    }
    for (int64_t i = 0; i < m; i++) {
      for (int64_t cc = 0; cc < cols; cc++) {
        float* o = c + i * g.ldc + j0 + t + cc;
        float base = g.accumulate ? *o : 0.0f;
        if (g.bias) base += g.bias[j0 + t + cc];
        *o = alpha * s[i * cols + cc] + base;
      }
    }
  }
}

// How one product's output is cut: pm × pn pieces, as nearly square as possible (a piece re-packs its rows of A and
// its columns of B, so square pieces re-pack least), at most `limit` of them and each of at least kMinTaskFlops.
// A function of the shape and the limit only.
struct Pieces {
  int64_t pm = 1, pn = 1, mUnits = 1, nUnits = 1;
  int64_t count() const { return pm * pn; }
  // Rows (or columns) [lo, hi) of piece index a of `parts` along an axis of `len` (units of kPieceUnit).
  static void bounds(int64_t len, int64_t units, int64_t parts, int64_t a, int64_t& lo, int64_t& hi) {
    lo = std::min(len, units * a / parts * kPieceUnit);
    hi = std::min(len, units * (a + 1) / parts * kPieceUnit);
  }
};

Pieces piecesFor(int64_t m, int64_t n, double flops, int64_t limit) {
  Pieces p;
  p.mUnits = (m + kPieceUnit - 1) / kPieceUnit;
  p.nUnits = (n + kPieceUnit - 1) / kPieceUnit;
  const double most = std::min<double>(static_cast<double>(limit), flops / kMinTaskFlops);
  while (2.0 * p.count() <= most) {
    const bool rowsLonger = m * p.pn >= n * p.pm;  // m / pm ≥ n / pn
    if (rowsLonger && p.mUnits >= 2 * p.pm) p.pm *= 2;
    else if (p.nUnits >= 2 * p.pn) p.pn *= 2;
    else if (p.mUnits >= 2 * p.pm) p.pm *= 2;
    else break;
  }
  return p;
}

// The most pieces a product is cut into: the machine's core count rounded up to a power of two (at most 64), so that
// every core can get a share. It is fixed for the machine, whatever threads this process is told to use.
int64_t pieceLimit() {
  static const int64_t limit = [] {
    int64_t cores = onlineCores(), p = 1;
    while (p < cores && p < 64) p *= 2;
    return p;
  }();
  return limit;
}

}  // namespace

void gemmItemOffsets(const Gemm& g, int64_t batch, std::vector<int64_t>& aOff, std::vector<int64_t>& bOff, std::vector<int64_t>& cOff) {
  aOff.resize(batch), bOff.resize(batch), cOff.resize(batch);
  std::vector<int64_t> idx(g.nbatch, 0);
  for (int64_t bi = 0; bi < batch; bi++) {
    int64_t ao = g.aOffset, bo = g.bOffset, co = g.outOffset;
    for (int d = 0; d < g.nbatch; d++) {
      ao += idx[d] * static_cast<int64_t>(g.aBatchStrides[d]);
      bo += idx[d] * static_cast<int64_t>(g.bBatchStrides[d]);
      co += idx[d] * static_cast<int64_t>(g.outBatchStrides[d]);
    }
    aOff[bi] = ao;
    bOff[bi] = bo;
    cOff[bi] = co;
    for (int d = g.nbatch - 1; d >= 0; d--) {
      if (++idx[d] < static_cast<int64_t>(g.batchShape[d])) break;
      idx[d] = 0;
    }
  }
}

void gemmKernel(const Gemm& g) {
  int64_t batch = 1;
  for (int d = 0; d < g.nbatch; d++) batch *= static_cast<int64_t>(g.batchShape[d]);
  if (batch == 0 || g.m == 0 || g.n == 0) return;
  if (g.m > INT_MAX || g.n > INT_MAX || g.k > INT_MAX || g.lda > INT_MAX || g.ldb > INT_MAX || g.ldc > INT_MAX) {
    throw std::length_error("gemm: a dimension exceeds BLAS's 32-bit integers");
  }

  std::vector<int64_t> aOff, bOff, cOff;
  gemmItemOffsets(g, batch, aOff, bOff, cOff);

  const Operand A = operand(g.a, g.transA, g.m, g.k, g.lda);
  const Operand B = operand(g.b, g.transB, g.k, g.n, g.ldb);
  const float alpha = static_cast<float>(g.alpha);
  const bool addOut = g.accumulate || g.bias != nullptr;

  // Rows [i0, i1) × columns [j0, j1) of item bi's output.
  auto block = [&](int64_t bi, int64_t i0, int64_t i1, int64_t j0, int64_t j1, std::vector<float>& sa, std::vector<float>& sb) {
    float* c = g.out + cOff[bi];
    const int64_t rows = i1 - i0, cols = j1 - j0;
    if (g.bias) {
      for (int64_t i = i0; i < i1; i++) {
        float* row = c + i * g.ldc;
        if (g.accumulate) {
          for (int64_t j = j0; j < j1; j++) row[j] += g.bias[j];
        } else {
          for (int64_t j = j0; j < j1; j++) row[j] = g.bias[j];
        }
      }
    }
    if (g.k == 0) {  // an empty sum: zeros (plus bias), or nothing added
      if (!addOut) {
        for (int64_t i = i0; i < i1; i++) std::fill(c + i * g.ldc + j0, c + i * g.ldc + j1, 0.0f);
      }
      return;
    }
    const float* a = packed(A, aOff[bi], sa);
    const float* b = packed(B, bOff[bi], sb);
    const int64_t lda = A.pack ? A.cols : A.ld, ldb = B.pack ? B.cols : B.ld;
    // Row i of op(A) starts at i·lda (or at column i when transposed); column j of op(B) likewise.
    const float* ap = a + (g.transA ? i0 : i0 * lda);
    const float* bp = b + (g.transB ? j0 * ldb : j0);
    // A block with one row (or column) has a single stored row in its transposed operand: give BLAS a legal ld.
    int ldA = static_cast<int>(lda), ldB = static_cast<int>(ldb);
    if (g.transA ? g.k == 1 : rows == 1) ldA = std::max<int>(ldA, static_cast<int>(g.transA ? rows : g.k));
    if (g.transB ? cols == 1 : g.k == 1) ldB = std::max<int>(ldB, static_cast<int>(g.transB ? g.k : cols));
    int ldC = static_cast<int>(g.ldc);
    if (rows == 1) ldC = std::max<int>(ldC, static_cast<int>(cols));
    cblas_sgemm(CblasRowMajor, g.transA ? CblasTrans : CblasNoTrans, g.transB ? CblasTrans : CblasNoTrans,
                static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(g.k), alpha, ap, ldA, bp, ldB,
                addOut ? 1.0f : 0.0f, c + i0 * g.ldc + j0, ldC);
  };

  const double flops = 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(std::max<int64_t>(g.k, 1));
  const int T = activeThreads();
  if (g.m <= kSmallM && g.k > 0 && !A.pack && !B.pack) {
    // Few rows: stream B once per item, in column tiles; split the tiles over threads only when B is big enough
    // (≥ 2 MiB) for a second thread's bandwidth to pay for its wake-up.
    const double bytes = 4.0 * static_cast<double>(g.k) * static_cast<double>(g.n) * static_cast<double>(batch);
    const bool split = T > 1 && bytes >= 2.0 * (1 << 20);
    // Whole rows of B in order, in ranges of k (rows of B) fixed by the shape alone: one per MiB of B, at most
    // kSmallChunks. Threads take ranges, and the ranges' partial sums are added in range order. The choice depends
    // on k and n only, so a row of A gets the same result in a product of one row as in one of kSmallM.
    const int64_t chunks = std::clamp<int64_t>((4 * g.k * g.n) >> 20, 1, std::min<int64_t>(kSmallChunks, g.k));
    if (!g.transB && chunks * kSmallM * g.n <= kMaxPartials) {
      const int64_t rowsPerChunk = (g.k + chunks - 1) / chunks;
      std::vector<float> partial(static_cast<size_t>(chunks * g.m * g.n));
      const float alpha = static_cast<float>(g.alpha);
      for (int64_t bi = 0; bi < batch; bi++) {
        const float* a = g.a + aOff[bi];
        const float* b = g.b + bOff[bi];
        float* c = g.out + cOff[bi];
        // In parallel from 2 MiB of B on: a second thread's bandwidth then pays for its wake-up.
        parallelFor(chunks, 1, [&](int64_t lo, int64_t hi) {
          for (int64_t ch = lo; ch < hi; ch++) {
            smallRowsN(g, a, b, ch * rowsPerChunk, std::min(g.k, (ch + 1) * rowsPerChunk), partial.data() + ch * g.m * g.n);
          }
        });
        for (int64_t i = 0; i < g.m; i++) {
          float* row = c + i * g.ldc;
          for (int64_t j = 0; j < g.n; j++) {
            float sum = partial[i * g.n + j];
            for (int64_t ch = 1; ch < chunks; ch++) sum += partial[(ch * g.m + i) * g.n + j];
            float base = g.accumulate ? row[j] : 0.0f;
            if (g.bias) base += g.bias[j];
            row[j] = alpha * sum + base;
          }
        }
      }
      return;
    }
    // Equal tiles of at most kTile columns (a multiple of 16), their count a multiple of T when split.
    int64_t tiles = (g.n + kTile - 1) / kTile;
    if (split && batch == 1) tiles = (tiles + T - 1) / T * T;
    const int64_t width = std::min(kTile, ((g.n + tiles - 1) / tiles + 15) / 16 * 16);
    tiles = (g.n + width - 1) / width;
    const int64_t total = tiles * batch;
    const int64_t grain = split ? std::max<int64_t>(1, (total + T - 1) / T) : total;
    parallelFor(total, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; q++) {
        const int64_t bi = q / tiles, j0 = (q % tiles) * width, w = std::min(width, g.n - j0);
        const float* a = g.a + aOff[bi];
        const float* b = g.b + bOff[bi];
        float* c = g.out + cOff[bi];
        if (g.transB) smallTileT(g, a, b, c, j0, w);
        else smallTileN(g, a, b, c, j0, w);
      }
    });
    return;
  }
  // Tasks: every batch item cut into the same pieces; each task is one single-threaded BLAS call.
  const Pieces pieces = piecesFor(g.m, g.n, flops, pieceLimit());
  const int64_t perItem = pieces.count(), tasks = batch * perItem;
  const double taskFlops = flops / static_cast<double>(perItem);
  SingleThreadedBlas single;
  parallelFor(tasks, std::max<int64_t>(1, static_cast<int64_t>(kMinTaskFlops / taskFlops)), [&](int64_t lo, int64_t hi) {
    std::vector<float> sa, sb;
    for (int64_t t = lo; t < hi; t++) {
      const int64_t bi = t / perItem, piece = t % perItem;
      int64_t i0, i1, j0, j1;
      Pieces::bounds(g.m, pieces.mUnits, pieces.pm, piece / pieces.pn, i0, i1);
      Pieces::bounds(g.n, pieces.nUnits, pieces.pn, piece % pieces.pn, j0, j1);
      if (i0 < i1 && j0 < j1) block(bi, i0, i1, j0, j1, sa, sb);
    }
  });
}

}  // namespace peft
