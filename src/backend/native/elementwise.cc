// Element-wise kernels over strided views: copy, unary, unaryGrad, binary, where.
//
// Each kernel walks its views with forRange (common.h) and specialises the innermost loop on the views' inner
// strides (contiguous, broadcast, other), so the common cases compile to plain vectorisable loops.
// Precision follows the reference, which computes in double and rounds once on store. For + − × ÷ √ of floats,
// float arithmetic gives the very same result (double rounding is harmless for them), so those stay in float.
// The activations of transformer blocks (exp, sigmoid, SiLU, tanh, both GELUs and their gradients) use the
// vectorisable float functions of vmath.h, in forms without cancellation, so they stay within a few ulps;
// the rest (log, sin, cos, pow, rsqrt) call libm in double.
#include <cmath>
#include <type_traits>

#include "kernels.h"
#include "vmath.h"

namespace peft {
namespace {

constexpr float kSqrt2OverPiF = 0.7978845608028654f;  // √(2/π)

// The contiguous inner loops, compiled for AVX2 and the baseline (see PEFT_SIMD_CLONES).
template <class F>
PEFT_SIMD_CLONES void loop1(const float* x, float* out, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) out[i] = f(x[i]);
}

template <class F>
PEFT_SIMD_CLONES void loop2(const float* a, const float* b, float* out, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) out[i] = f(a[i], b[i]);
}

// out[i] = f(x[i]) for a one-view Strided.
template <class F>
void map1(const Strided& s, const float* x, float* out, int64_t grain, F f) {
  const int64_t sx = s.inner(0);
  parallelFor(s.size, grain, [&](int64_t b, int64_t e) {
    forRange(s, b, e, [&](int64_t o, const int64_t* off, int64_t n) {
      const float* xp = x + off[0];
      float* op = out + o;
      if (sx == 1) {
        loop1(xp, op, n, f);
      } else {
        for (int64_t i = 0; i < n; i++) op[i] = f(xp[i * sx]);
      }
    });
  });
}

// out[i] = f(a[i], b[i]) for a two-view Strided; the scalar-broadcast cases get their own loops.
template <class F>
void map2(const Strided& s, const float* a, const float* b, float* out, int64_t grain, F f) {
  const int64_t sa = s.inner(0), sb = s.inner(1);
  parallelFor(s.size, grain, [&](int64_t lo, int64_t hi) {
    forRange(s, lo, hi, [&](int64_t o, const int64_t* off, int64_t n) {
      const float* ap = a + off[0];
      const float* bp = b + off[1];
      float* op = out + o;
      if (sa == 1 && sb == 1) {
        loop2(ap, bp, op, n, f);
      } else if (sa == 1 && sb == 0) {
        const float bv = *bp;
        for (int64_t i = 0; i < n; i++) op[i] = f(ap[i], bv);
      } else if (sa == 0 && sb == 1) {
        const float av = *ap;
        for (int64_t i = 0; i < n; i++) op[i] = f(av, bp[i]);
      } else {
        for (int64_t i = 0; i < n; i++) op[i] = f(ap[i * sa], bp[i * sb]);
      }
    });
  });
}

float jsPow(float a, float b) {
  // C's pow(1, NaN) and pow(−1, ±∞) are 1; JavaScript's Math.pow gives NaN for both.
  if (std::isnan(b) || (std::isinf(b) && std::fabs(a) == 1.0f)) return NAN;
  return static_cast<float>(std::pow(static_cast<double>(a), static_cast<double>(b)));
}

}  // namespace

template <class In, class Out>
void copyKernel(const Strided& s, const In* x, Out* out) {
  const int64_t sx = s.inner(0);
  parallelFor(s.size, kGrainCheap, [&](int64_t b, int64_t e) {
    forRange(s, b, e, [&](int64_t o, const int64_t* off, int64_t n) {
      const In* xp = x + off[0];
      Out* op = out + o;
      if constexpr (std::is_same_v<Out, int32_t> && !std::is_same_v<In, int32_t>) {
        for (int64_t i = 0; i < n; i++) op[i] = toInt32(xp[i * sx]);  // Math.trunc, then ToInt32
      } else if (sx == 1) {
        for (int64_t i = 0; i < n; i++) op[i] = static_cast<Out>(xp[i]);
      } else {
        for (int64_t i = 0; i < n; i++) op[i] = static_cast<Out>(xp[i * sx]);
      }
    });
  });
}
template void copyKernel(const Strided&, const float*, float*);
template void copyKernel(const Strided&, const float*, int32_t*);
template void copyKernel(const Strided&, const int32_t*, float*);
template void copyKernel(const Strided&, const int32_t*, int32_t*);

void unaryKernel(Unary op, const Strided& s, const float* x, float* out) {
  using D = double;
  auto libm = [&](auto f) { map1(s, x, out, kGrainMath, [f](float v) { return static_cast<float>(f(D(v))); }); };
  auto vec = [&](auto f) { map1(s, x, out, kGrainMath, f); };
  auto cheap = [&](auto f) { map1(s, x, out, kGrainCheap, f); };
  switch (op) {
    case Unary::neg: return cheap([](float v) { return -v; });
    case Unary::exp: return vec([](float v) { return vexp(v); });
    case Unary::log: return libm([](D v) { return std::log(v); });
    case Unary::sqrt: return cheap([](float v) { return std::sqrt(v); });
    case Unary::rsqrt: return libm([](D v) { return 1 / std::sqrt(v); });
    case Unary::abs: return cheap([](float v) { return std::fabs(v); });
    case Unary::square: return cheap([](float v) { return v * v; });
    case Unary::reciprocal: return cheap([](float v) { return 1.0f / v; });
    case Unary::tanh: return vec([](float v) { return vtanh(v); });
    case Unary::sigmoid: return vec([](float v) { return vsigmoid(v); });
    case Unary::relu: return cheap([](float v) { return v > 0 ? v : 0.0f; });
    case Unary::gelu: return vec([](float v) { return v * vnormcdf(v); });  // ½·x·(1 + erf(x/√2)) = x·Φ(x)
    case Unary::gelu_tanh:  // 0.5·x·(1 + tanh(u)) = x·σ(2u), which has no cancellation for x ≪ 0
      return vec([](float v) { return v * vsigmoid(2.0f * kSqrt2OverPiF * (v + 0.044715f * v * v * v)); });
    case Unary::silu: return vec([](float v) { return v * vsigmoid(v); });
    case Unary::sin: return libm([](D v) { return std::sin(v); });
    case Unary::cos: return libm([](D v) { return std::cos(v); });
    case Unary::count: break;
  }
}

void unaryGradKernel(UnaryGrad op, const Strided& s, const float* x, const float* dy, float* out) {
  // out = dy · f'(x)
  auto vec = [&](auto df) { map2(s, x, dy, out, kGrainMath, [df](float xv, float g) { return g * df(xv); }); };
  switch (op) {
    case UnaryGrad::tanh: return vec([](float v) { return vtanhGrad(v); });
    case UnaryGrad::sigmoid: return vec([](float v) { float q, dq; vsigmoidAndGrad(v, q, dq); return dq; });
    case UnaryGrad::relu:
      return map2(s, x, dy, out, kGrainCheap, [](float xv, float g) { return g * (xv > 0 ? 1.0f : 0.0f); });
    case UnaryGrad::gelu: return vec([](float v) { return vnormcdf(v) + v * vnormpdf(v); });
    case UnaryGrad::gelu_tanh:
      // With σ = σ(2u): 0.5·(1 + tanh u) = σ and 0.5·(1 − tanh² u) = 2σ(1 − σ) = 2σ'(2u).
      return vec([](float v) {
        float q, dq;
        vsigmoidAndGrad(2.0f * kSqrt2OverPiF * (v + 0.044715f * v * v * v), q, dq);
        return q + 2.0f * v * dq * kSqrt2OverPiF * (1.0f + 3.0f * 0.044715f * v * v);
      });
    case UnaryGrad::silu:
      return vec([](float v) { float q, dq; vsigmoidAndGrad(v, q, dq); return q + v * dq; });
    case UnaryGrad::count: break;
  }
}

void binaryKernel(Binary op, const Strided& s, const float* a, const float* b, float* out) {
  auto run = [&](auto f) { map2(s, a, b, out, kGrainCheap, f); };
  switch (op) {
    case Binary::add: return run([](float x, float y) { return x + y; });
    case Binary::sub: return run([](float x, float y) { return x - y; });
    case Binary::mul: return run([](float x, float y) { return x * y; });
    case Binary::div: return run([](float x, float y) { return x / y; });
    case Binary::pow: return map2(s, a, b, out, kGrainMath, jsPow);
    case Binary::max: return run([](float x, float y) { return x >= y || x != x ? x : y; });
    case Binary::min: return run([](float x, float y) { return x <= y || x != x ? x : y; });
    case Binary::eq: return run([](float x, float y) { return x == y ? 1.0f : 0.0f; });
    case Binary::ne: return run([](float x, float y) { return x != y ? 1.0f : 0.0f; });
    case Binary::lt: return run([](float x, float y) { return x < y ? 1.0f : 0.0f; });
    case Binary::le: return run([](float x, float y) { return x <= y ? 1.0f : 0.0f; });
    case Binary::gt: return run([](float x, float y) { return x > y ? 1.0f : 0.0f; });
    case Binary::ge: return run([](float x, float y) { return x >= y ? 1.0f : 0.0f; });
    case Binary::count: break;
  }
}

template <class Cond>
void whereKernel(const Strided& s, const Cond* cond, const float* a, const float* b, float* out) {
  const int64_t sc = s.inner(0), sa = s.inner(1), sb = s.inner(2);
  parallelFor(s.size, kGrainCheap, [&](int64_t lo, int64_t hi) {
    forRange(s, lo, hi, [&](int64_t o, const int64_t* off, int64_t n) {
      const Cond* cp = cond + off[0];
      const float* ap = a + off[1];
      const float* bp = b + off[2];
      float* op = out + o;
      if (sc == 1 && sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++) op[i] = cp[i] != 0 ? ap[i] : bp[i];
      } else {
        for (int64_t i = 0; i < n; i++) op[i] = cp[i * sc] != 0 ? ap[i * sa] : bp[i * sb];
      }
    });
  });
}
template void whereKernel(const Strided&, const float*, const float*, const float*, float*);
template void whereKernel(const Strided&, const int32_t*, const float*, const float*, float*);

}  // namespace peft
