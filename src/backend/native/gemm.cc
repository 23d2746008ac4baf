// Batched matrix products through CBLAS (OpenBLAS, or Accelerate on macOS).
//
// Each batch item is one or more cblas_sgemm calls in row-major order; GemmSpec's addressing (element (i, j) of A at
// i·lda + j, or j·lda + i when transposed; of the output at i·ldc + j) is exactly BLAS's, so operands are passed as
// they are. BLAS insists on lda ≥ the stored row length; a matrix with a single stored row never uses its stride, so
// it gets a legal one, and a matrix whose rows overlap (lda = 0 for a broadcast row, say) is packed into scratch.
// A bias row is written into the output first and the product added to it (beta = 1), so it costs no extra pass.
//
// Threading. OpenBLAS threads a product well when all three dimensions are large; on skinny products (LoRA's rank-8
// factors, decoding's few rows, attention heads) its threading costs more than it gains, and badly so when another
// process holds a core. So only products with every dimension ≥ kBlasThreadDim go to OpenBLAS's own threads;
// the others are cut along their longest output axis into pieces, one single-threaded BLAS call per piece inside
// our parallel region (OpenBLAS's OpenMP build runs single-threaded in a parallel region). Many small batch items
// (attention heads) are spread over the threads likewise, one item per call. The pthreads build of OpenBLAS is not
// safe to call that way, so there everything stays sequential and OpenBLAS threads what it will.
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

#if defined(PEFT_BLAS_OPENMP) || defined(PEFT_BLAS_ACCELERATE)
constexpr bool kSplitOurselves = true;
#else
constexpr bool kSplitOurselves = false;
#endif

// Products with m, n and k all at least this large are threaded by BLAS itself.
constexpr int64_t kBlasThreadDim = 128;
// The least work worth a thread (≈ 20 µs at 100 GFLOP/s): smaller products or pieces run on the calling thread.
constexpr double kMinTaskFlops = 2e6;

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

// Σ_{p ∈ [p0, p1)} A[i, p]·B[p, :] into acc[i·n …] for all m rows, B not transposed: whole rows of B, read in order
// (one sequential stream; reading column tiles of a wider B interleaves streams and halves the bandwidth).
PEFT_SIMD_CLONES void smallRowsN(const Gemm& g, const float* a, const float* b, int64_t p0, int64_t p1, float* acc) {
  const int64_t m = g.m, n = g.n;
  for (int64_t q = 0; q < m * n; q++) acc[q] = 0.0f;
  for (int64_t p = p0; p < p1; p++) {
    const float* brow = b + p * g.ldb;
    for (int64_t i = 0; i < m; i++) {
      const float av = g.transA ? a[p * g.lda + i] : a[i * g.lda + p];
      float* ai = acc + i * n;
#pragma omp simd
      for (int64_t t = 0; t < n; t++) ai[t] += av * brow[t];
    }
  }
}

// R dot products of rows of A (row i at a + i·lda) with one row of B, sharing the loads of B.
template <int R>
inline void dots(const float* a, int64_t lda, const float* brow, int64_t k, float* s) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const float* a0 = a;
  const float* a1 = a + (R > 1 ? lda : 0);
  const float* a2 = a + (R > 2 ? 2 * lda : 0);
  const float* a3 = a + (R > 3 ? 3 * lda : 0);
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t p = 0; p < k; p++) {
    const float bv = brow[p];
    s0 += a0[p] * bv;
    if (R > 1) s1 += a1[p] * bv;
    if (R > 2) s2 += a2[p] * bv;
    if (R > 3) s3 += a3[p] * bv;
  }
  s[0] = s0;
  if (R > 1) s[1] = s1;
  if (R > 2) s[2] = s2;
  if (R > 3) s[3] = s3;
}

// The same with B transposed (row j of B, k long, at j·ldb): one dot product per output, B's row read once for all
// m rows of A (four at a time).
PEFT_SIMD_CLONES void smallTileT(const Gemm& g, const float* a, const float* b, float* c, int64_t j0, int64_t w) {
  const float alpha = static_cast<float>(g.alpha);
  const int64_t m = g.m, k = g.k;
  float s[kSmallM];
  for (int64_t t = 0; t < w; t++) {
    const float* brow = b + (j0 + t) * g.ldb;
    if (!g.transA) {
      int64_t i = 0;
      for (; i + 4 <= m; i += 4) dots<4>(a + i * g.lda, g.lda, brow, k, s + i);
      switch (m - i) {
        case 3: dots<3>(a + i * g.lda, g.lda, brow, k, s + i); break;
        case 2: dots<2>(a + i * g.lda, g.lda, brow, k, s + i); break;
        case 1: dots<1>(a + i * g.lda, g.lda, brow, k, s + i); break;
        default: break;
      }
    } else {
      for (int64_t i = 0; i < m; i++) {
        float acc = 0.0f;
        for (int64_t p = 0; p < k; p++) acc += a[p * g.lda + i] * brow[p];
        s[i] = acc;
      }
    }
    for (int64_t i = 0; i < m; i++) {
      float* o = c + i * g.ldc + j0 + t;
      float base = g.accumulate ? *o : 0.0f;
      if (g.bias) base += g.bias[j0 + t];
      *o = alpha * s[i] + base;
    }
  }
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
    if (!g.transB && g.m * g.n <= kSmallM * kTile) {
      // Whole rows of B in order; threads take ranges of k (rows of B) and their partial sums are added in order.
      const int P = split ? T : 1;
      std::vector<float> partial(static_cast<size_t>(P * g.m * g.n));
      const float alpha = static_cast<float>(g.alpha);
      for (int64_t bi = 0; bi < batch; bi++) {
        const float* a = g.a + aOff[bi];
        const float* b = g.b + bOff[bi];
        float* c = g.out + cOff[bi];
        const int64_t grain = P > 1 ? (g.k + P - 1) / P : g.k;
        const int used = chunksFor(g.k, grain);  // before the region: it may change the thread count afterwards
        parallelChunks(g.k, grain, [&](int ch, int64_t p0, int64_t p1) {
          smallRowsN(g, a, b, p0, p1, partial.data() + ch * g.m * g.n);
        });
        for (int64_t i = 0; i < g.m; i++) {
          float* row = c + i * g.ldc;
          for (int64_t j = 0; j < g.n; j++) {
            float sum = partial[i * g.n + j];
            for (int ch = 1; ch < used; ch++) sum += partial[(ch * g.m + i) * g.n + j];
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
  const bool blasThreads = g.m >= kBlasThreadDim && g.n >= kBlasThreadDim && g.k >= kBlasThreadDim;
  if (kSplitOurselves && T == 1 && maxThreads() > 1) {
    // Contended (see activeThreads): everything on this thread, BLAS included (it reads the OpenMP thread count on
    // every call).
    noteSerialRegion();
    std::vector<float> sa, sb;
#if defined(PEFT_BLAS_OPENMP)
    omp_set_num_threads(1);
#endif
    for (int64_t bi = 0; bi < batch; bi++) block(bi, 0, g.m, 0, g.n, sa, sb);
#if defined(PEFT_BLAS_OPENMP)
    omp_set_num_threads(maxThreadsSetting());
#endif
    return;
  }
  if (!kSplitOurselves || T == 1 || (batch == 1 && blasThreads)) {
    // Sequential items; BLAS threads each as it sees fit (big products) or runs them on this thread (tiny ones).
    std::vector<float> sa, sb;
    for (int64_t bi = 0; bi < batch; bi++) block(bi, 0, g.m, 0, g.n, sa, sb);
    return;
  }
  if (batch > 1 && !(blasThreads && batch < 2 * T)) {
    // Items spread over the threads, each item one single-threaded call; at least kMinTaskFlops per task.
    parallelFor(batch, std::max<int64_t>(1, static_cast<int64_t>(kMinTaskFlops / flops)), [&](int64_t lo, int64_t hi) {
      std::vector<float> sa, sb;
      for (int64_t bi = lo; bi < hi; bi++) block(bi, 0, g.m, 0, g.n, sa, sb);
    });
    return;
  }
  if (batch > 1) {  // a few big items: one after another, BLAS threading each
    std::vector<float> sa, sb;
    for (int64_t bi = 0; bi < batch; bi++) block(bi, 0, g.m, 0, g.n, sa, sb);
    return;
  }
  // One skinny or small product: cut the longer output axis into pieces of at least kMinTaskFlops (and a
  // multiple of 16 columns, so that pieces keep whole vector widths).
  const bool alongRows = g.m >= g.n;
  const int64_t len = alongRows ? g.m : g.n;
  const int64_t unit = alongRows ? 1 : 16;
  const int64_t units = (len + unit - 1) / unit;
  const int64_t pieces = std::min<int64_t>({static_cast<int64_t>(T), units, std::max<int64_t>(1, static_cast<int64_t>(flops / kMinTaskFlops))});
  if (pieces <= 1) {
    std::vector<float> sa, sb;
#if defined(PEFT_BLAS_OPENMP)
    // OpenBLAS would thread a product of this size itself (its threshold is m·n·k ≥ 262144); it reads the OpenMP
    // thread count on every call, so one thread it is.
    omp_set_num_threads(1);
    block(0, 0, g.m, 0, g.n, sa, sb);
    omp_set_num_threads(maxThreadsSetting());
#else
    block(0, 0, g.m, 0, g.n, sa, sb);
#endif
    return;
  }
  parallelChunks(pieces, 1, [&](int, int64_t p0, int64_t p1) {
    std::vector<float> sa, sb;
    for (int64_t p = p0; p < p1; p++) {
      const int64_t lo = std::min(len, (units * p / pieces) * unit), hi = std::min(len, (units * (p + 1) / pieces) * unit);
      if (lo >= hi) continue;
      if (alongRows) block(0, lo, hi, 0, g.n, sa, sb);
      else block(0, 0, g.m, lo, hi, sa, sb);
    }
  });
}

}  // namespace peft
