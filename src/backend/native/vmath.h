// Float exp and the functions built on it, written so that GCC vectorises loops calling them (no branches, no
// libm calls): the hot transcendental loops (softmax, cross-entropy, SiLU, GELU-tanh) run 4–8 lanes wide instead
// of one libm call per element. Accuracy: within 2 ulp of the correctly rounded float results over the whole
// range (Cephes' expf polynomial after a Cody–Waite reduction), underflowing gradually like libm, ∞ above
// 88.72, NaN for NaN. Every formula below avoids cancellation, so the derived functions keep that relative accuracy.
#pragma once

#include <cstdint>

namespace peft {

inline float bitsToFloat(int32_t i) {
  return __builtin_bit_cast(float, i);  // std::bit_cast before C++20
}

inline float vexp(float x) {
  x = x < -105.0f ? -105.0f : x;  // exp(−105) rounds to 0; NaN passes both clamps
  x = x > 89.0f ? 89.0f : x;      // exp(89) overflows to ∞
  const float t = x * 1.44269504088896341f;
  const int32_t n = static_cast<int32_t>(t + (t >= 0 ? 0.5f : -0.5f));  // nearest integer to x/ln 2
  const float fn = static_cast<float>(n);
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;  // x − n·ln 2, the first product exact
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2ⁿ as two normal factors, so that n = 128 (overflow) and n < −126 (denormals) come out right.
  const int32_t h = n >> 1;
  return p * bitsToFloat((h + 127) << 23) * bitsToFloat((n - h + 127) << 23);
}

// 1 / (1 + e^−x): for x ≪ 0 the exponential overflows to ∞ and the result is 0, as it should be.
inline float vsigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }

// σ(x) and σ'(x) = σ(x)·(1 − σ(x)) together, from q = σ(|x|) and e = e^−|x| ≤ 1 (so nothing overflows):
// 1 − q = e·q exactly enough, whence σ(x) = q or e·q and σ'(x) = q·q·e without cancellation.
inline void vsigmoidAndGrad(float x, float& s, float& ds) {
  const float e = vexp(-__builtin_fabsf(x)), q = 1.0f / (1.0f + e);
  const float w = x >= 0 ? 1.0f : 0.0f;
  s = w * q + (1.0f - w) * (e * q);
  ds = q * q * e;
}

// tanh: an odd polynomial near 0 (Cephes' tanhf), 1 − 2/(e^{2|x|} + 1) beyond. Both are computed and blended
// arithmetically: GCC turns a select between them into a branch and then gives up vectorising the loop.
inline float vtanh(float x) {
  const float ax = __builtin_fabsf(x);
  const float big = __builtin_copysignf(1.0f - 2.0f / (vexp(2.0f * ax) + 1.0f), x);
  const float xs = __builtin_copysignf(ax < 0.625f ? ax : 0.625f, x), z = xs * xs;  // keeps `small` finite
  const float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                        1.33314422036e-1f) * z - 3.33332819422e-1f) * z * xs + xs;
  const float w = ax < 0.625f ? 1.0f : 0.0f;
  return w * small + (1.0f - w) * big;
}

// 1 − tanh²(x) = 4e/(1 + e)² with e = e^{−2|x|}: no cancellation for large |x|.
inline float vtanhGrad(float x) {
  const float e = vexp(-2.0f * __builtin_fabsf(x)), d = 1.0f + e;
  return 4.0f * e / (d * d);
}

// The standard normal CDF Φ(x) = ½·erfc(−x/√2), for erf-GELU x·Φ(x). erfc(z) for z ≥ 0 is Numerical Recipes'
// erfcc (relative error < 1.2e-7 over the whole range), so Φ keeps its relative accuracy in the lower tail where
// ½·(1 + erf) would cancel; the upper tail is 1 − ½·erfc(z).
inline float vnormcdf(float x) {
  const float z = __builtin_fabsf(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                     t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float half = 0.5f * t * vexp(-z * z + poly);  // ½·erfc(z) = Φ(−|x|)
  const float w = x >= 0 ? 1.0f : 0.0f;
  return w * (1.0f - half) + (1.0f - w) * half;
}

// The standard normal density φ(x) = e^{−x²/2} / √(2π).
inline float vnormpdf(float x) { return 0.39894228040143268f * vexp(-0.5f * x * x); }

}  // namespace peft
