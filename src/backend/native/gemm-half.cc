// Matrix products with bfloat16/float16 operands (frozen half-precision weights), accumulated in float32.
//
// This CPU class (AVX2, no AVX-512 BF16) has no instruction that multiplies 16-bit floats faster than float32, so
// the product is OpenBLAS's sgemm on float32 values: the half operand is widened panel by panel (a few MiB of its
// stored rows at a time, contiguous, so the panel stays in cache between its conversion and its product, and no
// float32 copy of a whole weight is ever made; a tied LM head of 150k rows would need 0.5 GB), and each panel goes
// through gemmKernel with the same threading rules as a float32 product. A panel of a transposed B is a range of
// output columns; otherwise it is a range of the sum's terms, added to the output (panels of columns were strided
// copies and narrow products: 0.4× float32's speed at 16 rows, against 0.8–0.9× now). Widening is exact, so the
// result equals the float32 product of the half values up to the summation order. Products of at most kFewRows rows (decoding) are the
// exception: gemm-few.cc reads the half weight in place and widens it in registers, since such a product is bound by
// the bytes it streams.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define PEFT_HAVE_F16C_PATH 1
#endif

#include "kernels.h"

namespace peft {

float f16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant ? 0x400000u | (mant << 13) : 0);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal half: normalise
      int e = -1;
      do {
        mant <<= 1;
        e++;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

// Elements of op(B) widened per panel: 1 Mi floats (4 MiB). Measured in CPU time on one thread (Qwen2 shapes, 512
// rows): 0.90–0.98× float32 sgemm's speed; 256 Ki elements 0.6–0.8× (sgemm repacks A for every narrow panel);
// widening the whole weight first 0.75–0.94× (the panel no longer fits in cache) and a full float32 copy in memory.
constexpr int64_t kPanelElems = int64_t(1) << 20;
// Below this many elements a conversion runs on the calling thread.
constexpr int64_t kConvertGrain = int64_t(1) << 18;

PEFT_SIMD_CLONES void bf16Run(const uint16_t* src, float* dst, int64_t n) {
  uint32_t* out = reinterpret_cast<uint32_t*>(dst);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) out[i] = uint32_t(src[i]) << 16;
}

void f16RunScalar(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = f16ToFloat(src[i]);
}

#ifdef PEFT_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) void f16RunF16C(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  f16RunScalar(src + i, dst + i, n - i);
}
// CPUID leaf 1, ECX bit 29 (clang before 15 has no "f16c" for __builtin_cpu_supports).
bool cpuHasF16C() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
const bool kHasF16C = cpuHasF16C();
#endif

void f16Run(const uint16_t* src, float* dst, int64_t n) {
#ifdef PEFT_HAVE_F16C_PATH
  if (kHasF16C) return f16RunF16C(src, dst, n);
#endif
  f16RunScalar(src, dst, n);
}

// rows × cols stored elements (row r at src + r·ld) widened into dst (row r at dst + r·cols), in parallel when big.
void widen(const uint16_t* src, int64_t ld, int64_t rows, int64_t cols, HalfKind kind, float* dst) {
  const int64_t grain = std::max<int64_t>(1, kConvertGrain / std::max<int64_t>(cols, 1));
  parallelFor(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      if (kind == HalfKind::bf16) bf16Run(src + r * ld, dst + r * cols, cols);
      else f16Run(src + r * ld, dst + r * cols, cols);
    }
  });
}

// float32 → bfloat16 bits, rounded to nearest even; NaN → 0x7FC0 (PyTorch's).
PEFT_SIMD_CLONES void bf16Narrow(const float* src, uint16_t* dst, int64_t n) {
  const uint32_t* in = reinterpret_cast<const uint32_t*>(src);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const uint32_t x = in[i];
    dst[i] = (x & 0x7fffffffu) > 0x7f800000u ? uint16_t(0x7fc0) : uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  }
}

// float32 → IEEE half bits, rounded to nearest even; NaN → sign | 0x7E00 (PyTorch's). A port of the reference's
// f32BitsToF16Bits (src/backend/half.ts).
uint16_t f16FromBits(uint32_t x) {
  const uint32_t sign = (x >> 16) & 0x8000u, abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    if (abs <= 0x33000000u) return uint16_t(sign);
    const uint32_t e = abs >> 23, m = (abs & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return uint16_t(sign | q);
  }
  const uint32_t r = abs - 0x38000000u;
  uint32_t q = r >> 13;
  const uint32_t rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
  return uint16_t(sign | q);
}

void f16Narrow(const float* src, uint16_t* dst, int64_t n) {
  const uint32_t* in = reinterpret_cast<const uint32_t*>(src);
  for (int64_t i = 0; i < n; i++) dst[i] = f16FromBits(in[i]);
}

PEFT_SIMD_CLONES void bf16RoundRun(float* v, int64_t n) {
  uint32_t* bits = reinterpret_cast<uint32_t*>(v);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const uint32_t x = bits[i];
    bits[i] = (x & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : (x + 0x7fffu + ((x >> 16) & 1u)) & 0xffff0000u;
  }
}

void f16RoundRunScalar(float* v, int64_t n) {
  const uint32_t* bits = reinterpret_cast<const uint32_t*>(v);
  for (int64_t i = 0; i < n; i++) v[i] = f16ToFloat(f16FromBits(bits[i]));
}

#ifdef PEFT_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) void f16RoundRunF16C(float* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(v + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT)));
  }
  f16RoundRunScalar(v + i, n - i);
}
#endif

}  // namespace

void roundToHalf(float* v, int64_t n, HalfKind kind) {
  if (kind == HalfKind::bf16) return bf16RoundRun(v, n);
#ifdef PEFT_HAVE_F16C_PATH
  if (kHasF16C) return f16RoundRunF16C(v, n);
#endif
  f16RoundRunScalar(v, n);
}

void floatToHalf(const float* src, int64_t n, HalfKind kind, uint16_t* dst) {
  parallelFor(n, kConvertGrain, [&](int64_t b, int64_t e) {
    if (kind == HalfKind::bf16) bf16Narrow(src + b, dst + b, e - b);
    else f16Narrow(src + b, dst + b, e - b);
  });
}

void halfToFloat(const uint16_t* src, int64_t n, HalfKind kind, float* dst) { widen(src, n, 1, n, kind, dst); }

void gemmHalfKernel(const Gemm& g, const uint16_t* a16, HalfKind aKind, const uint16_t* b16, HalfKind bKind) {
  int64_t batch = 1;
  for (int d = 0; d < g.nbatch; d++) batch *= static_cast<int64_t>(g.batchShape[d]);
  if (batch == 0 || g.m == 0 || g.n == 0) return;
  std::vector<float> aWide, panel;
  std::vector<int64_t> aOff, bOff, cOff;
  gemmItemOffsets(g, batch, aOff, bOff, cOff);
  // Few rows (decoding) read the half weight in place, widened in registers: half the bytes of a float32 weight.
  if (!a16 && b16 && g.m <= kFewRows && g.k > 0 && !storedRowsOverlap(g.transA, g.m, g.k, g.lda) &&
      !storedRowsOverlap(g.transB, g.k, g.n, g.ldb)) {
    gemmFewRows(g, batch, aOff, bOff, cOff, b16, bKind);
    return;
  }
  // Panels of about kPanelElems widened elements, each whole stored rows of B (contiguous): for B transposed, rows of
  // B are columns of the output (a multiple of 16 per panel); otherwise they are terms of the sum (a multiple of 16
  // per panel), and each panel's product is added to the output.
  const int64_t rowLength = g.transB ? g.k : g.n, storedRows = g.transB ? g.n : g.k;
  const int64_t width = b16 ? std::min(storedRows, std::max<int64_t>(16, kPanelElems / std::max<int64_t>(rowLength, 1) / 16 * 16)) : storedRows;
  for (int64_t bi = 0; bi < batch; bi++) {
    const int64_t ao = aOff[bi], bo = bOff[bi], co = cOff[bi];
    Gemm item = g;
    item.nbatch = 0;
    item.outOffset = 0;
    item.out = g.out + co;
    if (a16) {  // a half A (rare: weights are B): widen the whole stored matrix
      const int64_t rows = g.transA ? g.k : g.m, cols = g.transA ? g.m : g.k;
      aWide.resize(static_cast<size_t>(rows * cols));
      widen(a16 + ao, g.lda, rows, cols, aKind, aWide.data());
      item.a = aWide.data(), item.aOffset = 0, item.lda = cols;
    } else {
      item.aOffset = ao;
    }
    if (!b16) {
      item.bOffset = bo;
      gemmKernel(item);
      continue;
    }
    panel.resize(static_cast<size_t>(width * rowLength));
    for (int64_t r0 = 0; r0 < storedRows; r0 += width) {
      const int64_t w = std::min(width, storedRows - r0);
      widen(b16 + bo + r0 * g.ldb, g.ldb, w, rowLength, bKind, panel.data());
      Gemm part = item;
      part.b = panel.data(), part.bOffset = 0, part.ldb = rowLength;
      if (g.transB) {  // output columns r0 … r0 + w
        part.n = w;
        part.out = item.out + r0;
        part.bias = g.bias ? g.bias + r0 : nullptr;
      } else {  // terms r0 … r0 + w of every output element, added to the panels before
        part.k = w;
        part.aOffset += g.transA ? r0 * g.lda : r0;
        if (r0 > 0) part.accumulate = true, part.bias = nullptr;
      }
      gemmKernel(part);
    }
  }
}

}  // namespace peft
