// The kernels behind every Backend method (src/backend/backend.ts documents their semantics; the pure-TypeScript
// backend is the reference). Arguments are raw pointers and element counts already checked by addon.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "common.h"

namespace peft {

// Op lists, in one place: the enums index these names and addon.cc exports them, so the TypeScript side maps
// op strings to numbers without keeping a second copy of the order.
#define PEFT_UNARY_OPS(X) \
  X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(abs) X(square) X(reciprocal) \
  X(tanh) X(sigmoid) X(relu) X(gelu) X(gelu_tanh) X(silu) X(sin) X(cos)
#define PEFT_UNARY_GRAD_OPS(X) X(tanh) X(sigmoid) X(relu) X(gelu) X(gelu_tanh) X(silu)
#define PEFT_BINARY_OPS(X) \
  X(add) X(sub) X(mul) X(div) X(pow) X(max) X(min) X(eq) X(ne) X(lt) X(le) X(gt) X(ge)
#define PEFT_REDUCE_OPS(X) X(sum) X(max) X(min)
#define PEFT_RANDOM_KINDS(X) X(uniform) X(normal) X(bernoulli)

#define PEFT_ENUM_ITEM(name) name,
enum class Unary { PEFT_UNARY_OPS(PEFT_ENUM_ITEM) count };
enum class UnaryGrad { PEFT_UNARY_GRAD_OPS(PEFT_ENUM_ITEM) count };
enum class Binary { PEFT_BINARY_OPS(PEFT_ENUM_ITEM) count };
enum class Reduce { PEFT_REDUCE_OPS(PEFT_ENUM_ITEM) count };
enum class RandomKind { PEFT_RANDOM_KINDS(PEFT_ENUM_ITEM) count };
#undef PEFT_ENUM_ITEM

// elementwise.cc — views in `s` (view 0 is the first input, and so on); outputs are contiguous in s's order.
template <class In, class Out>
void copyKernel(const Strided& s, const In* x, Out* out);
void unaryKernel(Unary op, const Strided& s, const float* x, float* out);
void unaryGradKernel(UnaryGrad op, const Strided& s, const float* x, const float* dy, float* out);
void binaryKernel(Binary op, const Strided& s, const float* a, const float* b, float* out);
template <class Cond>
void whereKernel(const Strided& s, const Cond* cond, const float* a, const float* b, float* out);

// generate.cc
template <class T>
void fillKernel(T* out, int64_t n, double value);
template <class T>
void arangeKernel(T* out, int64_t n, double start, double step);
template <class T>
void randomKernel(T* out, int64_t n, RandomKind kind, double a, double b, uint32_t seed, int64_t counter);

// reduce.cc — x is the view (shape, strides, offset) of rank nd; axes with keep[d] false are reduced.
void reduceKernel(Reduce op, int nd, const double* shape, const double* strides, int64_t offset, const bool* keep,
                  const float* x, float* out);
void argmaxKernel(const float* x, int64_t outer, int64_t n, int64_t inner, int32_t* out);

// gemm.cc
// out[b](i, j) at outOffset + Σ bd·outBatchStrides[d] + i·ldc + j = alpha·(A[b]·B[b])(i, j) + bias[j] (when bias is
// not null) + out[b](i, j) (when accumulate).
struct Gemm {
  const float* a;
  const float* b;
  float* out;
  const float* bias;  // n entries, or null
  double alpha;
  int64_t aOffset, lda, bOffset, ldb, m, n, k, outOffset, ldc;
  bool transA, transB, accumulate;
  int nbatch;
  const double* batchShape;
  const double* aBatchStrides;
  const double* bBatchStrides;
  const double* outBatchStrides;
};
void gemmKernel(const Gemm& g);
// Storage offsets of A, B and the output for each of the `batch` items (batchShape walked row-major).
void gemmItemOffsets(const Gemm& g, int64_t batch, std::vector<int64_t>& aOff, std::vector<int64_t>& bOff, std::vector<int64_t>& cOff);
// Whether an operand of op() shape outer × inner, stored (transposed when trans) with row stride ld, has rows that
// overlap (ld shorter than a stored row, as a broadcast row's 0): BLAS refuses it and the few-row kernels assume not.
bool storedRowsOverlap(bool trans, int64_t outer, int64_t inner, int64_t ld);

enum class HalfKind { none = 0, bf16 = 1, f16 = 2 };

// gemm-few.cc — products with at most kFewRows rows (one row gives the same bits as in a batch), B's stored rows not
// overlapping; B is float32 at g.b, or half bits of kind bKind at b16 when that is not null.
constexpr int64_t kFewRows = 8;
void gemmFewRows(const Gemm& g, int64_t batch, const std::vector<int64_t>& aOff, const std::vector<int64_t>& bOff,
                 const std::vector<int64_t>& cOff, const uint16_t* b16 = nullptr, HalfKind bKind = HalfKind::none);

// gemm-half.cc — products with bfloat16/float16 operands (a16/b16 replace g.a/g.b where not null), float32 accumulation.
void gemmHalfKernel(const Gemm& g, const uint16_t* a16, HalfKind aKind, const uint16_t* b16, HalfKind bKind);
// The float32 value of IEEE half bits (exact; NaN payloads kept and quieted, as F16C does).
float f16ToFloat(uint16_t h);
// n half elements widened to float32 (exact).
void halfToFloat(const uint16_t* src, int64_t n, HalfKind kind, float* dst);
// n float32 values rounded to half bits (nearest even; NaN as PyTorch writes it).
void floatToHalf(const float* src, int64_t n, HalfKind kind, uint16_t* dst);
// n float32 values rounded in place to the nearest bfloat16/float16 value (nearest even), kept as float32.
void roundToHalf(float* v, int64_t n, HalfKind kind);

// rows.cc — row-wise kernels of contiguous [rows, cols] matrices.
void softmaxKernel(const float* x, int64_t rows, int64_t cols, bool log, float* out);
void softmaxGradKernel(const float* y, const float* dy, int64_t rows, int64_t cols, bool log, float* out);
void layerNormKernel(const float* x, const float* w, const float* b, int64_t rows, int64_t cols, double eps,
                     float* out, float* mean, float* rstd);
void layerNormGradKernel(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                         int64_t rows, int64_t cols, float* dx, float* dw, float* db);
void rmsNormKernel(const float* x, const float* w, int64_t rows, int64_t cols, double eps, float* out, float* rstd);
void rmsNormGradKernel(const float* x, const float* w, const float* rstd, const float* dy, int64_t rows,
                       int64_t cols, float* dx, float* dw);
// Targets were checked by the caller (in [0, cols) or == ignoreIndex).
void crossEntropyKernel(const float* logits, const int32_t* targets, int64_t rows, int64_t cols, double ignoreIndex,
                        float* loss, float* lse);
void crossEntropyGradKernel(const float* logits, const int32_t* targets, const float* lse, const float* dLoss,
                            int64_t rows, int64_t cols, double ignoreIndex, float* out);

// One softmax row (y may be x).
void softmaxRow(const float* x, int64_t cols, float* y);

// fused.cc
// dst (view 0 of s, must not overlap itself) = (or +=) src (view 1).
template <class T>
void assignKernel(const Strided& s, const T* src, T* dst, bool accumulate);
// out (contiguous) = x · (u(seed, counter + i) < keep ? scale : 0), i the row-major index of x's view.
void dropoutKernel(const Strided& s, const float* x, float* out, double keep, double scale, uint32_t seed,
                   int64_t counter);
// Rows of contiguous x (+ the mask row, view 0 of r, when mask is not null) → softmax into out (may be x).
void maskedSoftmaxKernel(const Rows& r, const float* x, const float* mask, float* out);
// Views of r: x, cos, sin, out; see fused.cc.
void rotaryKernel(const Rows& r, const float* x, const float* cosT, const float* sinT, float* out, bool transpose);

// indexing.cc — ids were checked by the caller. T is float or int32_t (same for src and out).
template <class T>
void gatherKernel(const T* src, int64_t outer, int64_t n, int64_t inner, const int32_t* ids, int64_t count, T* out);
template <class T>
void scatterAddKernel(const T* src, int64_t outer, int64_t n, int64_t inner, const int32_t* ids, int64_t count,
                      T* out);

// optim.cc — the scalars are precomputed in JavaScript exactly as the reference does, so results match bit for bit.
struct AdamW {
  double beta1, beta2, eps, stepSize, bc2Sqrt, decay;
};
void adamwKernel(float* p, const float* g, float* m, float* v, int64_t n, const AdamW& hp);

// quant.cc — a frozen quantised weight [n, k]: 4-bit (packed, code, blocksize, and absmax or the nested absmax) or
// int8 rows (int8, scb). Sizes were checked by the caller.
struct QuantMatrix {
  int64_t n = 0, k = 0;
  const uint8_t* packed = nullptr;
  const float* code = nullptr;
  int64_t blocksize = 0;
  const float* absmax = nullptr;
  const uint8_t* nestedCodes = nullptr;
  const float* nestedAbsmax = nullptr;
  const float* nestedCode = nullptr;
  int64_t nestedBlocksize = 0;
  float offset = 0;
  const int8_t* int8 = nullptr;
  const float* scb = nullptr;
};
// out [rows, n] = x [rows, k]·Wᵀ, or with transpose out [rows, k] = x [rows, n]·W, one panel of W at a time. With a
// compute dtype (bnb_4bit_compute_dtype), x and the dequantised W are rounded to it first; sums stay float32.
void quantMatmulKernel(const float* x, int64_t rows, const QuantMatrix& w, bool transpose, HalfKind compute,
                       float* out);
// bitsandbytes' 4-bit quantisation (kQuantizeBlockwise<NF4|FP4>): absmax per block, codes two per byte (high nibble first).
void quantize4bitKernel(const float* x, int64_t n, bool nf4, int64_t blocksize, uint8_t* packed, float* absmax);
// acc [rows, n] = a [rows, k]·bᵀ (b [n, k]) exactly, in int32.
void int8ProductKernel(const int8_t* a, int64_t rows, const int8_t* b, int64_t n, int64_t k, int32_t* acc);

}  // namespace peft
