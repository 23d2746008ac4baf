// N-API bindings: argument checks and conversions, then a call into the kernels.
//
// Every storage arrives as its typed array; shapes, strides and offsets of views come packed in one Float64Array
// (cheaper than reading JS arrays element by element). Nothing a caller passes may crash the process, so sizes,
// view extents, ids and targets are all checked here, before any kernel runs (kernels run in OpenMP regions,
// which exceptions must not leave). Messages name the kernel and the argument; out-of-range ids and targets throw
// RangeErrors with the reference backend's wording.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#if defined(PEFT_BLAS_OPENBLAS)
#include <cblas.h>
#endif

#include "kernels.h"

namespace {

using peft::Strided;

enum class DType { f32, i32, u16 };

struct Buf {
  void* data = nullptr;
  double size = 0;  // elements
  DType dtype = DType::f32;
  float* f() const { return static_cast<float*>(data); }
  int32_t* i() const { return static_cast<int32_t*>(data); }
  const uint16_t* h() const { return static_cast<const uint16_t*>(data); }
};

std::string num(double v) {  // integers as JavaScript prints them
  if (v == std::floor(v) && std::fabs(v) < 9e15) return std::to_string(static_cast<int64_t>(v));
  return std::to_string(v);
}

// The arguments of one kernel call, read with checks; every error names the kernel.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* kernel) : info_(info), env_(info.Env()), kernel_(kernel) {}

  [[noreturn]] void typeError(const std::string& msg) const { throw Napi::TypeError::New(env_, where() + msg); }
  [[noreturn]] void rangeError(const std::string& msg) const { throw Napi::RangeError::New(env_, where() + msg); }
  // The reference's own wording, for errors callers may match on (bad ids and targets).
  [[noreturn]] void referenceRangeError(const std::string& msg) const { throw Napi::RangeError::New(env_, msg); }

  // A Float32Array or Int32Array (or null when allowed) with at least `need` elements.
  Buf storage(size_t i, const char* name, double need, bool nullable = false) const {
    Napi::Value v = info_[i];
    Buf b;
    if (nullable && v.IsNull()) return b;
    napi_typedarray_type type;
    size_t length = 0;
    if (!v.IsTypedArray() ||
        napi_get_typedarray_info(env_, v, &type, &length, &b.data, nullptr, nullptr) != napi_ok ||
        (type != napi_float32_array && type != napi_int32_array)) {
      typeError(std::string(name) + " must be a Float32Array or Int32Array");
    }
    b.dtype = type == napi_float32_array ? DType::f32 : DType::i32;
    b.size = static_cast<double>(length);
    if (b.size < need) {
      rangeError(std::string(name) + " has " + num(b.size) + " elements, the call needs " + num(need));
    }
    return b;
  }
  // A Uint16Array of half-precision bits (bfloat16 or float16, as the call says), any length.
  Buf halfStorage(size_t i, const char* name) const {
    Buf b;
    napi_typedarray_type type;
    size_t length = 0;
    if (!info_[i].IsTypedArray() ||
        napi_get_typedarray_info(env_, info_[i], &type, &length, &b.data, nullptr, nullptr) != napi_ok ||
        type != napi_uint16_array) {
      typeError(std::string(name) + " must be a Uint16Array (half-precision bits)");
    }
    b.dtype = DType::u16;
    b.size = static_cast<double>(length);
    return b;
  }
  float* f32(size_t i, const char* name, double need, bool nullable = false) const {
    Buf b = storage(i, name, need, nullable);
    if (b.data && b.dtype != DType::f32) typeError(std::string(name) + " must be float32");
    return b.f();
  }
  int32_t* i32(size_t i, const char* name, double need) const {
    Buf b = storage(i, name, need);
    if (b.dtype != DType::i32) typeError(std::string(name) + " must be int32");
    return b.i();
  }
  // A Uint8Array or Int8Array (as `type` says) with at least `need` elements, or null when allowed.
  const void* bytes(size_t i, const char* name, double need, napi_typedarray_type want, bool nullable = false) const {
    Napi::Value v = info_[i];
    if (nullable && v.IsNull()) return nullptr;
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (!v.IsTypedArray() || napi_get_typedarray_info(env_, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != want) {
      typeError(std::string(name) + (want == napi_uint8_array ? " must be a Uint8Array" : " must be an Int8Array"));
    }
    if (double(length) < need) rangeError(std::string(name) + " has " + num(double(length)) + " elements, the call needs " + num(need));
    return data;
  }
  double number(size_t i, const char* name) const {
    if (!info_[i].IsNumber()) typeError(std::string(name) + " must be a number");
    return info_[i].As<Napi::Number>().DoubleValue();
  }
  // A non-negative integer (a size or an index).
  int64_t count(size_t i, const char* name) const {
    const double v = number(i, name);
    if (!(v >= 0 && v <= 9007199254740991.0 && v == std::floor(v))) {
      rangeError(std::string(name) + " must be a non-negative integer, got " + num(v));
    }
    return static_cast<int64_t>(v);
  }
  bool flag(size_t i) const { return info_[i].ToBoolean().Value(); }
  template <class E>
  E op(size_t i, const char* what) const {
    const int64_t k = count(i, what);
    if (k >= static_cast<int64_t>(E::count)) rangeError(std::string("unknown ") + what + " " + num(double(k)));
    return static_cast<E>(k);
  }
  // The packed view description; len receives its length.
  const double* meta(size_t i, size_t& len) const {
    Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      typeError("view description must be a Float64Array");
    }
    auto fa = v.As<Napi::Float64Array>();
    len = fa.ElementLength();
    return fa.Data();
  }

 private:
  std::string where() const { return std::string("native ") + kernel_ + ": "; }
  const Napi::CallbackInfo& info_;
  Napi::Env env_;
  const char* kernel_;
};

bool isInt(double v) { return std::isfinite(v) && v == std::floor(v) && std::fabs(v) <= 9007199254740991.0; }

// Views packed as [nd, shape[nd], then per view: offset, strides[nd]] (then, for reduce, keep[nd]). Checks the
// numbers and that each view stays inside its storage; returns the collapsed Strided and the raw pieces.
struct ParsedViews {
  Strided s;
  int nd = 0;
  const double* shape = nullptr;
  const double* strides[peft::kMaxViews] = {};
  double offsets[peft::kMaxViews] = {};
  const double* tail = nullptr;  // whatever follows the views
  double size = 1;
};

ParsedViews parseViews(const Args& args, size_t metaArg, int nv, const Buf* bufs, size_t extra = 0) {
  size_t len;
  const double* m = args.meta(metaArg, len);
  ParsedViews p;
  if (len < 1 || !(m[0] >= 0 && m[0] <= 1024 && isInt(m[0]))) args.rangeError("bad view description");
  p.nd = static_cast<int>(m[0]);
  if (len < 1 + p.nd + static_cast<size_t>(nv) * (1 + p.nd) + extra * p.nd) args.rangeError("bad view description");
  p.shape = m + 1;
  for (int d = 0; d < p.nd; d++) {
    if (!(isInt(p.shape[d]) && p.shape[d] >= 0)) args.rangeError("shape entries must be non-negative integers");
    p.size *= p.shape[d];
  }
  if (p.size > 9007199254740991.0) args.rangeError("view too large");
  for (int v = 0; v < nv; v++) {
    const double* vm = m + 1 + p.nd + v * (1 + p.nd);
    p.offsets[v] = vm[0];
    p.strides[v] = vm + 1;
    double lo = vm[0], hi = vm[0];
    bool ok = isInt(vm[0]);
    for (int d = 0; d < p.nd; d++) {
      ok = ok && isInt(p.strides[v][d]);
      const double reach = (p.shape[d] - 1) * p.strides[v][d];
      (reach < 0 ? lo : hi) += reach;
    }
    if (!ok) args.rangeError("offsets and strides must be integers");
    if (p.size > 0 && (lo < 0 || hi >= bufs[v].size)) {
      args.rangeError("view " + std::to_string(v) + " reaches elements [" + num(lo) + ", " + num(hi) +
                      "] of a storage of " + num(bufs[v].size));
    }
  }
  p.tail = m + 1 + p.nd + nv * (1 + p.nd);
  try {
    p.s = peft::makeStrided(nv, p.nd, p.shape, p.strides, p.offsets);
  } catch (const std::exception& e) {
    args.rangeError(e.what());
  }
  return p;
}

// ---- kernels ---------------------------------------------------------------------------------------------------

void Copy(const Napi::CallbackInfo& info) {
  Args args(info, "copy");
  Buf x = args.storage(0, "x", 0);
  ParsedViews p = parseViews(args, 1, 1, &x);
  Buf out = args.storage(2, "out", p.size);
  if (x.dtype == DType::f32) {
    if (out.dtype == DType::f32) peft::copyKernel(p.s, x.f(), out.f());
    else peft::copyKernel(p.s, x.f(), out.i());
  } else {
    if (out.dtype == DType::f32) peft::copyKernel(p.s, x.i(), out.f());
    else peft::copyKernel(p.s, x.i(), out.i());
  }
}

// convertHalf(src, srcOffset, dst, n, kind): n contiguous elements from src[srcOffset…] into dst[0…], one side a
// Float32Array and the other a Uint16Array of half bits of `kind` (1 bfloat16, 2 float16): widening or rounding.
void ConvertHalf(const Napi::CallbackInfo& info) {
  Args args(info, "convertHalf");
  const int64_t offset = args.count(1, "srcOffset"), n = args.count(3, "n"), kind = args.count(4, "kind");
  if (kind != 1 && kind != 2) args.rangeError("kind must be 1 (bfloat16) or 2 (float16)");
  const auto k = static_cast<peft::HalfKind>(kind);
  const bool widen = info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  Buf src = widen ? args.halfStorage(0, "src") : args.storage(0, "src", double(offset + n));
  Buf dst = widen ? args.storage(2, "dst", double(n)) : args.halfStorage(2, "dst");
  if (src.size < double(offset + n) || dst.size < double(n)) args.rangeError("src or dst is too short for n elements");
  if (widen) {
    if (dst.dtype != DType::f32) args.typeError("dst must be a Float32Array");
    peft::halfToFloat(src.h() + offset, n, k, dst.f());
  } else {
    if (src.dtype != DType::f32) args.typeError("src must be a Float32Array");
    peft::floatToHalf(src.f() + offset, n, k, const_cast<uint16_t*>(dst.h()));
  }
}

void Fill(const Napi::CallbackInfo& info) {
  Args args(info, "fill");
  Buf out = args.storage(0, "out", 0);
  const double value = args.number(1, "value");
  if (out.dtype == DType::f32) peft::fillKernel(out.f(), int64_t(out.size), value);
  else peft::fillKernel(out.i(), int64_t(out.size), value);
}

void Arange(const Napi::CallbackInfo& info) {
  Args args(info, "arange");
  Buf out = args.storage(0, "out", 0);
  const double start = args.number(1, "start"), step = args.number(2, "step");
  if (out.dtype == DType::f32) peft::arangeKernel(out.f(), int64_t(out.size), start, step);
  else peft::arangeKernel(out.i(), int64_t(out.size), start, step);
}

void Random(const Napi::CallbackInfo& info) {
  Args args(info, "random");
  Buf out = args.storage(0, "out", 0);
  const auto kind = args.op<peft::RandomKind>(1, "random kind");
  const double a = args.number(2, "a"), b = args.number(3, "b");
  const uint32_t seed = static_cast<uint32_t>(peft::toInt32(args.number(4, "seed")));  // as `hi ^ seed` sees it
  const double counter = args.number(5, "counter");
  if (!isInt(counter) || std::fabs(counter) + out.size > 9007199254740991.0) {
    args.rangeError("counter must be an integer below 2^53");
  }
  const auto c = static_cast<int64_t>(counter);
  if (out.dtype == DType::f32) peft::randomKernel(out.f(), int64_t(out.size), kind, a, b, seed, c);
  else peft::randomKernel(out.i(), int64_t(out.size), kind, a, b, seed, c);
}

void Unary(const Napi::CallbackInfo& info) {
  Args args(info, "unary");
  const auto op = args.op<peft::Unary>(0, "unary op");
  Buf x = args.storage(1, "x", 0);
  ParsedViews p = parseViews(args, 2, 1, &x);
  float* out = args.f32(3, "out", p.size);
  if (x.dtype != DType::f32) args.typeError("x must be float32");
  peft::unaryKernel(op, p.s, x.f(), out);
}

void UnaryGrad(const Napi::CallbackInfo& info) {
  Args args(info, "unaryGrad");
  const auto op = args.op<peft::UnaryGrad>(0, "unaryGrad op");
  Buf v[2] = {args.storage(1, "x", 0), args.storage(2, "dy", 0)};
  ParsedViews p = parseViews(args, 3, 2, v);
  float* out = args.f32(4, "out", p.size);
  if (v[0].dtype != DType::f32 || v[1].dtype != DType::f32) args.typeError("x and dy must be float32");
  peft::unaryGradKernel(op, p.s, v[0].f(), v[1].f(), out);
}

void Binary(const Napi::CallbackInfo& info) {
  Args args(info, "binary");
  const auto op = args.op<peft::Binary>(0, "binary op");
  Buf v[2] = {args.storage(1, "a", 0), args.storage(2, "b", 0)};
  ParsedViews p = parseViews(args, 3, 2, v);
  float* out = args.f32(4, "out", p.size);
  if (v[0].dtype != DType::f32 || v[1].dtype != DType::f32) args.typeError("a and b must be float32");
  peft::binaryKernel(op, p.s, v[0].f(), v[1].f(), out);
}

void Where(const Napi::CallbackInfo& info) {
  Args args(info, "where");
  Buf v[3] = {args.storage(0, "cond", 0), args.storage(1, "a", 0), args.storage(2, "b", 0)};
  ParsedViews p = parseViews(args, 3, 3, v);
  float* out = args.f32(4, "out", p.size);
  if (v[1].dtype != DType::f32 || v[2].dtype != DType::f32) args.typeError("a and b must be float32");
  if (v[0].dtype == DType::f32) peft::whereKernel(p.s, v[0].f(), v[1].f(), v[2].f(), out);
  else peft::whereKernel(p.s, v[0].i(), v[1].f(), v[2].f(), out);
}

void Reduce(const Napi::CallbackInfo& info) {
  Args args(info, "reduce");
  const auto op = args.op<peft::Reduce>(0, "reduce op");
  Buf x = args.storage(1, "x", 0);
  ParsedViews p = parseViews(args, 2, 1, &x, 1);
  bool keep[1024];
  double outSize = 1;
  for (int d = 0; d < p.nd; d++) {
    keep[d] = p.tail[d] != 0;
    if (keep[d]) outSize *= p.shape[d];
  }
  float* out = args.f32(3, "out", outSize);
  if (x.dtype != DType::f32) args.typeError("x must be float32");
  peft::reduceKernel(op, p.nd, p.shape, p.strides[0], int64_t(p.offsets[0]), keep, x.f(), out);
}

void Argmax(const Napi::CallbackInfo& info) {
  Args args(info, "argmax");
  const int64_t outer = args.count(1, "outer"), n = args.count(2, "n"), inner = args.count(3, "inner");
  const float* x = args.f32(0, "x", double(outer) * n * inner);
  int32_t* out = args.i32(4, "out", double(outer) * inner);
  peft::argmaxKernel(x, outer, n, inner, out);
}

// gemm(a, b, out, meta, alpha, bias) with meta = [aOffset, transA, lda, bOffset, transB, ldb, m, n, k, accumulate,
//   outOffset, ldc, biasOffset, nbatch, batchShape[nbatch], aBatchStrides[nbatch], bBatchStrides[nbatch],
//   outBatchStrides[nbatch], aKind, bKind]; bias is a Float32Array or null. A kind of 0 means a Float32Array operand,
//   1 (bfloat16) or 2 (float16) a Uint16Array of those bits.
void Gemm(const Napi::CallbackInfo& info) {
  Args args(info, "gemm");
  size_t len;
  const double* m = args.meta(3, len);
  constexpr size_t kHead = 14;
  if (len < kHead || !(isInt(m[kHead - 1]) && m[kHead - 1] >= 0 && len >= kHead + 4 * size_t(m[kHead - 1]) + 2)) {
    args.rangeError("bad gemm description");
  }
  for (size_t i = 0; i < len; i++) {
    if (!isInt(m[i])) args.rangeError("gemm description entries must be integers");
  }
  peft::Gemm g{};
  g.aOffset = int64_t(m[0]), g.transA = m[1] != 0, g.lda = int64_t(m[2]);
  g.bOffset = int64_t(m[3]), g.transB = m[4] != 0, g.ldb = int64_t(m[5]);
  g.m = int64_t(m[6]), g.n = int64_t(m[7]), g.k = int64_t(m[8]), g.accumulate = m[9] != 0;
  g.outOffset = int64_t(m[10]), g.ldc = int64_t(m[11]);
  const int64_t biasOffset = int64_t(m[12]);
  g.nbatch = int(m[13]);
  g.batchShape = m + kHead, g.aBatchStrides = g.batchShape + g.nbatch, g.bBatchStrides = g.aBatchStrides + g.nbatch;
  g.outBatchStrides = g.bBatchStrides + g.nbatch;
  g.alpha = args.number(4, "alpha");
  if (g.m < 0 || g.n < 0 || g.k < 0) args.rangeError("m, n and k must be non-negative");
  if (g.outOffset < 0 || g.ldc < 0 || biasOffset < 0) args.rangeError("outOffset, ldc and biasOffset must be non-negative");
  double batch = 1;
  for (int d = 0; d < g.nbatch; d++) {
    if (g.batchShape[d] < 0) args.rangeError("batch shape entries must be non-negative");
    batch *= g.batchShape[d];
  }
  const double* kinds = g.outBatchStrides + g.nbatch;
  for (int i = 0; i < 2; i++) {
    if (kinds[i] < 0 || kinds[i] > 2) args.rangeError("operand kinds must be 0 (float32), 1 (bfloat16) or 2 (float16)");
  }
  const auto aKind = static_cast<peft::HalfKind>(int(kinds[0])), bKind = static_cast<peft::HalfKind>(int(kinds[1]));
  Buf a = aKind == peft::HalfKind::none ? args.storage(0, "a", 0) : args.halfStorage(0, "a");
  Buf b = bKind == peft::HalfKind::none ? args.storage(1, "b", 0) : args.halfStorage(1, "b");
  Buf out = args.storage(2, "out", 0);
  if (out.dtype != DType::f32) args.typeError("out must be float32");
  g.out = out.f();
  const float* bias = args.f32(5, "bias", biasOffset + double(g.n), true);
  g.bias = bias ? bias + biasOffset : nullptr;
  if (a.dtype == DType::i32 || b.dtype == DType::i32) args.typeError("a and b must be float32 (or half bits with their kind)");
  g.a = a.dtype == DType::f32 ? a.f() : nullptr, g.b = b.dtype == DType::f32 ? b.f() : nullptr;
  // The element range a (batched) matrix of `rows × cols` with row stride ld covers.
  auto extent = [&](double offset, const double* bstrides, double rows, double cols, double ld, double& lo, double& hi) {
    lo = hi = offset;
    for (int d = 0; d < g.nbatch; d++) {
      const double reach = (g.batchShape[d] - 1) * bstrides[d];
      (reach < 0 ? lo : hi) += reach;
    }
    const double reach = (rows - 1) * ld;
    (reach < 0 ? lo : hi) += reach;
    hi += cols - 1;
  };
  if (batch > 0 && g.m > 0 && g.n > 0) {
    double lo, hi;
    extent(double(g.outOffset), g.outBatchStrides, double(g.m), double(g.n), double(g.ldc), lo, hi);
    if (lo < 0 || hi >= out.size) {
      args.rangeError("out is written at elements [" + num(lo) + ", " + num(hi) + "] of a storage of " + num(out.size));
    }
    if (g.m > 1 && g.ldc < g.n) args.rangeError("ldc must be at least n");
    // Output items must not overlap (they are written in parallel): distinct items differ by at least one whole matrix.
    for (int d = 0; d < g.nbatch; d++) {
      if (g.batchShape[d] > 1 && std::fabs(g.outBatchStrides[d]) < 1) args.rangeError("output batch strides must not be 0");
    }
  }
  if (batch > 0 && g.m > 0 && g.n > 0 && g.k > 0) {
    // Every element a product reads must lie in its storage.
    auto check = [&](const Buf& s, const char* name, double offset, const double* bstrides, bool trans, double rows,
                     double cols, double ld) {
      if (trans) std::swap(rows, cols);  // stored shape
      double lo, hi;
      extent(offset, bstrides, rows, cols, ld, lo, hi);
      if (lo < 0 || hi >= s.size) {
        args.rangeError(std::string(name) + " is read at elements [" + num(lo) + ", " + num(hi) + "] of a storage of " +
                        num(s.size));
      }
    };
    check(a, "a", double(g.aOffset), g.aBatchStrides, g.transA, double(g.m), double(g.k), double(g.lda));
    check(b, "b", double(g.bOffset), g.bBatchStrides, g.transB, double(g.k), double(g.n), double(g.ldb));
  }
  if (aKind == peft::HalfKind::none && bKind == peft::HalfKind::none) return peft::gemmKernel(g);
  peft::gemmHalfKernel(g, a.dtype == DType::u16 ? a.h() : nullptr, aKind, b.dtype == DType::u16 ? b.h() : nullptr, bKind);
}

void Softmax(const Napi::CallbackInfo& info) {
  Args args(info, "softmax");
  const int64_t rows = args.count(1, "rows"), cols = args.count(2, "cols");
  const double n = double(rows) * cols;
  peft::softmaxKernel(args.f32(0, "x", n), rows, cols, args.flag(3), args.f32(4, "out", n));
}

void SoftmaxGrad(const Napi::CallbackInfo& info) {
  Args args(info, "softmaxGrad");
  const int64_t rows = args.count(2, "rows"), cols = args.count(3, "cols");
  const double n = double(rows) * cols;
  peft::softmaxGradKernel(args.f32(0, "y", n), args.f32(1, "dy", n), rows, cols, args.flag(4), args.f32(5, "out", n));
}

void LayerNorm(const Napi::CallbackInfo& info) {
  Args args(info, "layerNorm");
  const int64_t rows = args.count(3, "rows"), cols = args.count(4, "cols");
  const double n = double(rows) * cols;
  peft::layerNormKernel(args.f32(0, "x", n), args.f32(1, "weight", double(cols), true),
                        args.f32(2, "bias", double(cols), true), rows, cols, args.number(5, "eps"),
                        args.f32(6, "out", n), args.f32(7, "mean", double(rows)), args.f32(8, "rstd", double(rows)));
}

void LayerNormGrad(const Napi::CallbackInfo& info) {
  Args args(info, "layerNormGrad");
  const int64_t rows = args.count(5, "rows"), cols = args.count(6, "cols");
  const double n = double(rows) * cols;
  peft::layerNormGradKernel(args.f32(0, "x", n), args.f32(1, "weight", double(cols), true),
                            args.f32(2, "mean", double(rows)), args.f32(3, "rstd", double(rows)), args.f32(4, "dy", n),
                            rows, cols, args.f32(7, "dx", n), args.f32(8, "dWeight", double(cols), true),
                            args.f32(9, "dBias", double(cols), true));
}

void RmsNorm(const Napi::CallbackInfo& info) {
  Args args(info, "rmsNorm");
  const int64_t rows = args.count(2, "rows"), cols = args.count(3, "cols");
  const double n = double(rows) * cols;
  peft::rmsNormKernel(args.f32(0, "x", n), args.f32(1, "weight", double(cols), true), rows, cols,
                      args.number(4, "eps"), args.f32(5, "out", n), args.f32(6, "rstd", double(rows)));
}

void RmsNormGrad(const Napi::CallbackInfo& info) {
  Args args(info, "rmsNormGrad");
  const int64_t rows = args.count(4, "rows"), cols = args.count(5, "cols");
  const double n = double(rows) * cols;
  peft::rmsNormGradKernel(args.f32(0, "x", n), args.f32(1, "weight", double(cols), true),
                          args.f32(2, "rstd", double(rows)), args.f32(3, "dy", n), rows, cols, args.f32(6, "dx", n),
                          args.f32(7, "dWeight", double(cols), true));
}

// assign(src, dst, meta, accumulate): meta packs [dst view, src view] (same shape).
void Assign(const Napi::CallbackInfo& info) {
  Args args(info, "assign");
  Buf v[2] = {args.storage(1, "dst", 0), args.storage(0, "src", 0)};
  ParsedViews p = parseViews(args, 2, 2, v);
  const bool accumulate = args.flag(3);
  if (v[0].dtype != v[1].dtype) args.typeError("src and dst must have the same dtype");
  for (int d = 0; d < p.s.nd; d++) {
    if (p.s.shape[d] > 1 && p.s.stride[0][d] == 0) args.rangeError("dst must not overlap itself (a stride of 0)");
  }
  if (v[0].dtype == DType::f32) peft::assignKernel(p.s, v[1].f(), v[0].f(), accumulate);
  else if (!accumulate) peft::assignKernel(p.s, v[1].i(), v[0].i(), false);
  else args.typeError("accumulating assign needs float32");
}

// dropout(x, meta, out, keep, scale, seed, counter)
void Dropout(const Napi::CallbackInfo& info) {
  Args args(info, "dropout");
  Buf x = args.storage(0, "x", 0);
  ParsedViews p = parseViews(args, 1, 1, &x);
  float* out = args.f32(2, "out", p.size);
  if (x.dtype != DType::f32) args.typeError("x must be float32");
  const double keep = args.number(3, "keep"), scale = args.number(4, "scale");
  const uint32_t seed = static_cast<uint32_t>(peft::toInt32(args.number(5, "seed")));
  const double counter = args.number(6, "counter");
  if (!isInt(counter) || std::fabs(counter) + p.size > 9007199254740991.0) args.rangeError("counter must be an integer below 2^53");
  peft::dropoutKernel(p.s, x.f(), out, keep, scale, seed, static_cast<int64_t>(counter));
}

// Views for a row-wise kernel: parsed and bounds-checked like parseViews, walked by rows.
peft::Rows parseRows(const Args& args, const ParsedViews& p, int nv) {
  if (p.nd < 1) args.rangeError("row-wise views need at least one axis");
  try {
    return peft::makeRows(nv, p.nd, p.shape, p.strides, p.offsets);
  } catch (const std::exception& e) {
    args.rangeError(e.what());
  }
}

// maskedSoftmax(x, mask, meta, out): meta packs the mask's view in x's logical shape [..., cols] (or, with a null
// mask, a view whose shape alone counts); x and out are contiguous.
void MaskedSoftmax(const Napi::CallbackInfo& info) {
  Args args(info, "maskedSoftmax");
  const bool hasMask = !info[1].IsNull();
  Buf m = hasMask ? args.storage(1, "mask", 0) : Buf{};
  if (!hasMask) m.size = 9007199254740991.0;  // only the shape is read
  ParsedViews p = parseViews(args, 2, 1, &m);
  if (hasMask && m.dtype != DType::f32) args.typeError("mask must be float32");
  peft::Rows r = parseRows(args, p, 1);
  const float* x = args.f32(0, "x", p.size);
  float* out = args.f32(3, "out", p.size);
  peft::maskedSoftmaxKernel(r, x, hasMask ? m.f() : nullptr, out);
}

// rotary(x, cos, sin, out, meta, transpose): meta packs the four views (same shape, last axis even).
void Rotary(const Napi::CallbackInfo& info) {
  Args args(info, "rotary");
  Buf v[4] = {args.storage(0, "x", 0), args.storage(1, "cos", 0), args.storage(2, "sin", 0), args.storage(3, "out", 0)};
  ParsedViews p = parseViews(args, 4, 4, v);
  for (const Buf& b : v) {
    if (b.dtype != DType::f32) args.typeError("rotary needs float32 views");
  }
  peft::Rows r = parseRows(args, p, 4);
  if (r.cols % 2 != 0) args.rangeError("the last axis must have an even length");
  for (int d = 0; d < r.lead.nd; d++) {
    if (r.lead.shape[d] > 1 && r.lead.stride[3][d] == 0) args.rangeError("out must not overlap itself (a stride of 0)");
  }
  if (r.cols > 1 && r.inner[3] == 0) args.rangeError("out must not overlap itself (a stride of 0)");
  peft::rotaryKernel(r, v[0].f(), v[1].f(), v[2].f(), v[3].f(), args.flag(5));
}

// The reference checks ids while copying, so an empty outer axis checks none; otherwise the first bad id throws.
void checkIds(const Args& args, const int32_t* ids, int64_t count, int64_t outer, int64_t n, const char* what) {
  if (outer == 0) return;
  for (int64_t j = 0; j < count; j++) {
    if (ids[j] < 0 || ids[j] >= n) {
      args.referenceRangeError(std::string(what) + " " + num(ids[j]) + " is out of range [0, " + num(double(n)) + ")");
    }
  }
}

template <bool Scatter>
void GatherOrScatter(const Napi::CallbackInfo& info) {
  Args args(info, Scatter ? "scatterAdd" : "gather");
  const int64_t outer = args.count(1, "outer"), n = args.count(2, "n"), inner = args.count(3, "inner");
  Buf ids = args.storage(4, "ids", 0);
  if (ids.dtype != DType::i32) args.typeError("ids must be int32");
  const int64_t count = int64_t(ids.size);
  const double big = double(outer) * n * inner, small = double(outer) * count * inner;
  Buf src = args.storage(0, "src", Scatter ? small : big);
  Buf out = args.storage(5, "out", Scatter ? big : small);
  if (src.dtype != out.dtype) args.typeError("src and out must have the same dtype");
  checkIds(args, ids.i(), count, outer, n, "index");
  if (src.dtype == DType::f32) {
    if (Scatter) peft::scatterAddKernel(src.f(), outer, n, inner, ids.i(), count, out.f());
    else peft::gatherKernel(src.f(), outer, n, inner, ids.i(), count, out.f());
  } else {
    if (Scatter) peft::scatterAddKernel(src.i(), outer, n, inner, ids.i(), count, out.i());
    else peft::gatherKernel(src.i(), outer, n, inner, ids.i(), count, out.i());
  }
}

void checkTargets(const Args& args, const int32_t* t, int64_t rows, int64_t cols, double ignoreIndex) {
  for (int64_t r = 0; r < rows; r++) {
    if (t[r] != ignoreIndex && (t[r] < 0 || t[r] >= cols)) {
      args.referenceRangeError("target class " + num(t[r]) + " is out of range [0, " + num(double(cols)) + ")");
    }
  }
}

void CrossEntropy(const Napi::CallbackInfo& info) {
  Args args(info, "crossEntropy");
  const int64_t rows = args.count(2, "rows"), cols = args.count(3, "cols");
  const double ignoreIndex = args.number(4, "ignoreIndex");
  const float* logits = args.f32(0, "logits", double(rows) * cols);
  const int32_t* targets = args.i32(1, "targets", double(rows));
  float* loss = args.f32(5, "loss", double(rows));
  float* lse = args.f32(6, "lse", double(rows));
  checkTargets(args, targets, rows, cols, ignoreIndex);
  peft::crossEntropyKernel(logits, targets, rows, cols, ignoreIndex, loss, lse);
}

void CrossEntropyGrad(const Napi::CallbackInfo& info) {
  Args args(info, "crossEntropyGrad");
  const int64_t rows = args.count(4, "rows"), cols = args.count(5, "cols");
  const double ignoreIndex = args.number(6, "ignoreIndex");
  const float* logits = args.f32(0, "logits", double(rows) * cols);
  const int32_t* targets = args.i32(1, "targets", double(rows));
  const float* lse = args.f32(2, "lse", double(rows));
  const float* dLoss = args.f32(3, "dLoss", double(rows));
  float* out = args.f32(7, "out", double(rows) * cols);
  checkTargets(args, targets, rows, cols, ignoreIndex);
  peft::crossEntropyGradKernel(logits, targets, lse, dLoss, rows, cols, ignoreIndex, out);
}

// adamw(param, grad, expAvg, expAvgSq, beta1, beta2, eps, stepSize, bc2Sqrt, decay)
void Adamw(const Napi::CallbackInfo& info) {
  Args args(info, "adamw");
  Buf p = args.storage(0, "param", 0);
  const double n = p.size;
  if (p.dtype != DType::f32) args.typeError("param must be float32");
  peft::AdamW hp{args.number(4, "beta1"), args.number(5, "beta2"), args.number(6, "eps"),
                 args.number(7, "stepSize"), args.number(8, "bc2Sqrt"), args.number(9, "decay")};
  peft::adamwKernel(p.f(), args.f32(1, "grad", n), args.f32(2, "expAvg", n), args.f32(3, "expAvgSq", n), int64_t(n), hp);
}

// quantMatmul(x, rows, transpose, out, n, k, packedOrInt8, absmaxOrScb, code, blocksize, nestedCodes, nestedAbsmax,
//             nestedCode, nestedBlocksize, offset, compute): a 4-bit weight when code is not null, else int8 rows;
//             compute 0 (float32), 1 (bfloat16) or 2 (float16) is the dtype x and W are rounded to.
void QuantMatmul(const Napi::CallbackInfo& info) {
  Args args(info, "quantMatmul");
  peft::QuantMatrix w;
  const int64_t rows = args.count(1, "rows");
  const bool transpose = args.flag(2);
  const int64_t computeKind = args.count(15, "compute");
  if (computeKind > 2) args.rangeError("compute must be 0 (float32), 1 (bfloat16) or 2 (float16)");
  const auto compute = static_cast<peft::HalfKind>(computeKind);
  w.n = args.count(4, "n"), w.k = args.count(5, "k");
  const double numel = double(w.n) * double(w.k);
  const float* x = args.f32(0, "x", double(rows) * double(transpose ? w.n : w.k));
  float* out = args.f32(3, "out", double(rows) * double(transpose ? w.k : w.n));
  w.code = args.f32(8, "code", 16, true);
  if (!w.code) {
    w.int8 = static_cast<const int8_t*>(args.bytes(6, "int8", numel, napi_int8_array));
    w.scb = args.f32(7, "scb", double(w.n));
    return peft::quantMatmulKernel(x, rows, w, transpose, compute, out);
  }
  w.blocksize = args.count(9, "blocksize");
  if (w.blocksize < 2 || w.blocksize % 2 != 0) args.rangeError("blocksize must be even and at least 2");
  const double blocks = std::ceil(numel / double(w.blocksize));
  w.packed = static_cast<const uint8_t*>(args.bytes(6, "packed", std::ceil(numel / 2), napi_uint8_array));
  w.absmax = args.f32(7, "absmax", blocks, true);
  if (!w.absmax) {
    w.nestedCodes = static_cast<const uint8_t*>(args.bytes(10, "nestedCodes", blocks, napi_uint8_array));
    w.nestedBlocksize = args.count(13, "nestedBlocksize");
    if (w.nestedBlocksize < 1) args.rangeError("nestedBlocksize must be positive");
    w.nestedAbsmax = args.f32(11, "nestedAbsmax", std::ceil(blocks / double(w.nestedBlocksize)));
    w.nestedCode = args.f32(12, "nestedCode", 256);
    w.offset = float(args.number(14, "offset"));
  }
  peft::quantMatmulKernel(x, rows, w, transpose, compute, out);
}

// int8Product(a, rows, b, n, k, acc): acc [rows, n] = a [rows, k]·bᵀ in int32.
void Int8Product(const Napi::CallbackInfo& info) {
  Args args(info, "int8Product");
  const int64_t rows = args.count(1, "rows"), n = args.count(3, "n"), k = args.count(4, "k");
  const auto* a = static_cast<const int8_t*>(args.bytes(0, "a", double(rows) * double(k), napi_int8_array));
  const auto* b = static_cast<const int8_t*>(args.bytes(2, "b", double(n) * double(k), napi_int8_array));
  int32_t* acc = args.i32(5, "acc", double(rows) * double(n));
  peft::int8ProductKernel(a, rows, b, n, k, acc);
}

// quantize4bit(values, nf4, blocksize, packed, absmax)
void Quantize4bit(const Napi::CallbackInfo& info) {
  Args args(info, "quantize4bit");
  Buf v = args.storage(0, "values", 0);
  if (v.dtype != DType::f32) args.typeError("values must be float32");
  const bool nf4 = args.flag(1);
  const int64_t blocksize = args.count(2, "blocksize");
  if (blocksize < 2 || blocksize % 2 != 0) args.rangeError("blocksize must be even and at least 2");
  auto* packed = static_cast<uint8_t*>(const_cast<void*>(args.bytes(3, "packed", std::ceil(v.size / 2), napi_uint8_array)));
  float* absmax = args.f32(4, "absmax", std::ceil(v.size / double(blocksize)));
  peft::quantize4bitKernel(v.f(), int64_t(v.size), nf4, blocksize, packed, absmax);
}

// ---- module --------------------------------------------------------------------------------------------------------

// threadStats(): {parallel, late, serial, lateMeanMs, lateMaxMs} of the adaptive thread count (common.h).
Napi::Value ThreadStats(const Napi::CallbackInfo& info) {
  const auto& st = peft::adaptiveStats;
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("parallel", double(st.parallel));
  o.Set("late", double(st.late));
  o.Set("serial", double(st.serial));
  o.Set("lateMeanMs", st.parallel ? 1e3 * st.lateSum / double(st.parallel) : 0.0);
  o.Set("lateMaxMs", 1e3 * st.lateMax);
  return o;
}

Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), peft::maxThreads()); }

void SetThreads(const Napi::CallbackInfo& info) {
  Args args(info, "setThreads");
  const int64_t n = args.count(0, "threads");
  if (n < 1 || n > peft::threadLimit()) args.rangeError("threads must be in [1, " + num(peft::threadLimit()) + "]");
  peft::setThreads(static_cast<int>(n));
}

Napi::Value ThreadLimit(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), peft::threadLimit()); }

void SetAdaptiveThreads(const Napi::CallbackInfo& info) { peft::setAdaptive(info[0].ToBoolean().Value()); }

std::string blasName() {
#if defined(PEFT_BLAS_ACCELERATE)
  return "Accelerate";
#elif defined(PEFT_BLAS_OPENBLAS)
#if defined(PEFT_BLAS_OPENMP)
  return std::string(openblas_get_config()) + " (OpenMP build)";
#else
  return std::string(openblas_get_config()) + " (pthreads build)";
#endif
#else
  return "CBLAS";
#endif
}

Napi::Array names(Napi::Env env, std::initializer_list<const char*> list) {
  Napi::Array a = Napi::Array::New(env, list.size());
  uint32_t i = 0;
  for (const char* s : list) a.Set(i++, Napi::String::New(env, s));
  return a;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // OpenMP's default count (OMP_NUM_THREADS or the cores); this also makes a pthreads OpenBLAS single-threaded.
  // PEFT_TS_THREADS and PEFT_TS_ADAPTIVE_THREADS are read, checked and applied by native-backend.ts.
  peft::setThreads(std::min(peft::maxThreads(), peft::threadLimit()));
  auto fn = [&](const char* name, auto f) { exports.Set(name, Napi::Function::New(env, f, name)); };
  fn("copy", Copy);
  fn("convertHalf", ConvertHalf);
  fn("fill", Fill);
  fn("arange", Arange);
  fn("random", Random);
  fn("unary", Unary);
  fn("unaryGrad", UnaryGrad);
  fn("binary", Binary);
  fn("where", Where);
  fn("reduce", Reduce);
  fn("argmax", Argmax);
  fn("gemm", Gemm);
  fn("softmax", Softmax);
  fn("softmaxGrad", SoftmaxGrad);
  fn("layerNorm", LayerNorm);
  fn("layerNormGrad", LayerNormGrad);
  fn("rmsNorm", RmsNorm);
  fn("rmsNormGrad", RmsNormGrad);
  fn("gather", GatherOrScatter<false>);
  fn("scatterAdd", GatherOrScatter<true>);
  fn("crossEntropy", CrossEntropy);
  fn("crossEntropyGrad", CrossEntropyGrad);
  fn("adamw", Adamw);
  fn("quantMatmul", QuantMatmul);
  fn("int8Product", Int8Product);
  fn("quantize4bit", Quantize4bit);
  fn("assign", Assign);
  fn("dropout", Dropout);
  fn("maskedSoftmax", MaskedSoftmax);
  fn("rotary", Rotary);
  fn("threads", Threads);
  fn("threadStats", ThreadStats);
  fn("setThreads", SetThreads);
  fn("threadLimit", ThreadLimit);
  fn("setAdaptiveThreads", SetAdaptiveThreads);
#define PEFT_NAME(name) #name,
  exports.Set("unaryOps", names(env, {PEFT_UNARY_OPS(PEFT_NAME)}));
  exports.Set("unaryGradOps", names(env, {PEFT_UNARY_GRAD_OPS(PEFT_NAME)}));
  exports.Set("binaryOps", names(env, {PEFT_BINARY_OPS(PEFT_NAME)}));
  exports.Set("reduceOps", names(env, {PEFT_REDUCE_OPS(PEFT_NAME)}));
  exports.Set("randomKinds", names(env, {PEFT_RANDOM_KINDS(PEFT_NAME)}));
#undef PEFT_NAME
  exports.Set("blas", Napi::String::New(env, blasName()));
  return exports;
}

}  // namespace

NODE_API_MODULE(peft_ts_native, Init)
