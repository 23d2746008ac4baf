// Batched matrix products through CBLAS (OpenBLAS, or Accelerate on macOS).
//
// Each batch item is one cblas_sgemm call in row-major order; GemmSpec's addressing (element (i, j) of A at
// i·lda + j, or j·lda + i when transposed) is exactly BLAS's, so operands are passed as they are. BLAS insists on
// lda ≥ the stored row length; a matrix with a single stored row never uses its stride, so it gets a legal one, and
// a matrix whose rows overlap (lda = 0 for a broadcast row, say) is packed into scratch first.
// Big items run one after another and BLAS threads each; many small items (attention heads) are spread over our
// threads with one single-threaded BLAS call each, which OpenBLAS's OpenMP build does by itself inside a
// parallel region. The pthreads build is not safe to call that way, so there the batch stays sequential.
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
constexpr bool kBatchInParallel = true;
#else
constexpr bool kBatchInParallel = false;
#endif

// How a batch is run: items below kSmallItemFlops go one per thread at a time (OpenBLAS's own threading scales
// poorly on them, e.g. 128×64×128 attention products), provided there are enough items to keep every thread busy
// (or they are tiny, where threading one product is hopeless anyway); each thread gets at least kMinTaskFlops.
constexpr double kSmallItemFlops = 2.0 * 512 * 512 * 512;
constexpr double kTinyItemFlops = 2.0 * 128 * 128 * 128;
constexpr double kMinTaskFlops = 1 << 20;

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

}  // namespace

void gemmKernel(const Gemm& g) {
  int64_t batch = 1;
  for (int d = 0; d < g.nbatch; d++) batch *= static_cast<int64_t>(g.batchShape[d]);
  const int64_t mn = g.m * g.n;
  if (batch == 0 || mn == 0) return;
  if (g.k == 0) {  // an empty sum: zeros, or nothing added
    if (!g.accumulate) fillKernel(g.out, batch * mn, 0.0);
    return;
  }
  if (g.m > INT_MAX || g.n > INT_MAX || g.k > INT_MAX || g.lda > INT_MAX || g.ldb > INT_MAX) {
    throw std::length_error("gemm: a dimension exceeds BLAS's 32-bit integers");
  }

  // Per-item storage offsets, walking batchShape row-major.
  std::vector<int64_t> aOff(batch), bOff(batch);
  std::vector<int64_t> idx(g.nbatch, 0);
  for (int64_t bi = 0; bi < batch; bi++) {
    int64_t ao = g.aOffset, bo = g.bOffset;
    for (int d = 0; d < g.nbatch; d++) {
      ao += idx[d] * static_cast<int64_t>(g.aBatchStrides[d]);
      bo += idx[d] * static_cast<int64_t>(g.bBatchStrides[d]);
    }
    aOff[bi] = ao;
    bOff[bi] = bo;
    for (int d = g.nbatch - 1; d >= 0; d--) {
      if (++idx[d] < static_cast<int64_t>(g.batchShape[d])) break;
      idx[d] = 0;
    }
  }

  const Operand A = operand(g.a, g.transA, g.m, g.k, g.lda);
  const Operand B = operand(g.b, g.transB, g.k, g.n, g.ldb);
  const float beta = g.accumulate ? 1.0f : 0.0f;
  auto items = [&](int64_t lo, int64_t hi) {
    std::vector<float> scratchA, scratchB;
    for (int64_t bi = lo; bi < hi; bi++) {
      const float* a = packed(A, aOff[bi], scratchA);
      const float* b = packed(B, bOff[bi], scratchB);
      cblas_sgemm(CblasRowMajor, g.transA ? CblasTrans : CblasNoTrans, g.transB ? CblasTrans : CblasNoTrans,
                  static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), 1.0f, a,
                  static_cast<int>(A.pack ? A.cols : A.ld), b, static_cast<int>(B.pack ? B.cols : B.ld), beta,
                  g.out + bi * mn, static_cast<int>(g.n));
    }
  };
  const double flops = 2.0 * static_cast<double>(mn) * static_cast<double>(g.k);
  const bool spread = flops < kTinyItemFlops || (flops < kSmallItemFlops && batch >= 2 * maxThreads());
  if (kBatchInParallel && batch > 1 && spread) {
    parallelFor(batch, std::max<int64_t>(1, static_cast<int64_t>(kMinTaskFlops / flops)), items);
  } else {
    items(0, batch);
  }
}

}  // namespace peft
