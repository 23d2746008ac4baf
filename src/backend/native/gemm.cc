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
  Operand o{base, trans ? inner : outer, trans ? outer : inner, ld, storedRowsOverlap(trans, outer, inner, ld)};
  if (o.rows <= 1) o.ld = std::max<int64_t>(o.cols, 1);
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

bool storedRowsOverlap(bool trans, int64_t outer, int64_t inner, int64_t ld) {
  return (trans ? inner : outer) > 1 && ld < (trans ? outer : inner);
}

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
  // Few rows (decoding): gemm-few.cc streams B once, without BLAS's packing.
  if (g.m <= kFewRows && g.k > 0 && !A.pack && !B.pack) {
    gemmFewRows(g, batch, aOff, bOff, cOff);
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
