// Products with frozen quantised weights (bitsandbytes' NF4/FP4 and LLM.int8 layouts; src/backend/quant.ts is the
// reference). The product is cut into panels of W fixed by the shape alone: rows of W for x·Wᵀ, columns of W for
// x·W. Each thread takes whole panels: it dequantises one into its own buffer (a few MiB, so it is still in cache
// when BLAS reads it) and multiplies it there with one single-threaded sgemm over the full inner dimension. The whole
// float32 matrix never exists, and every output element comes from the same BLAS call whatever the thread count.
// Dequantisation is the reference's float32 arithmetic (code·absmax, one rounding; no FMA contraction), in AVX2 where
// the CPU has it, so a panel holds exactly the values the js backend computes. Products of a few rows (decoding)
// dequantise in registers instead (fewRows4bit).
#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <vector>

#if defined(PEFT_BLAS_ACCELERATE)
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEFT_HAVE_AVX2_PATH 1
#endif

#include "kernels.h"

namespace peft {

namespace {

constexpr float kInv127 = 7.874015718698502e-3f;  // int8_vectorwise_dequant's 1/127

// Elements of W dequantised per panel: 2 Mi floats (8 MiB; one per thread, both fit the 32 MiB L3). With 128 rows on
// Qwen2 MLP shapes this ran at 0.77–0.92× float32 sgemm's speed (bench/gemm.ts's nf4 rows, a quiet moment); 4 MiB
// and 1 MiB panels were slower on the wide 8960×1536 input gradient (each panel repacks x once more, and sgemm runs
// on thinner operands).
constexpr int64_t kPanelElems = int64_t(1) << 21;
// Panels a product is cut into at least (when W has enough rows or columns), so that both threads get work.
constexpr int64_t kMinPanels = 4;
// The least work worth a thread of its own (≈ 20 µs at 100 GFLOP/s), as in gemm.cc.
constexpr double kMinTaskFlops = 2e6;

float absmaxOfBlock(const QuantMatrix& w, int64_t b) {
  if (w.absmax) return w.absmax[b];
  return w.nestedCode[w.nestedCodes[b]] * w.nestedAbsmax[b / w.nestedBlocksize] + w.offset;
}

// Values [i, end) of one block of a 4-bit matrix: code[nibble]·absmax, value 2j in the high nibble of byte j.
void dequantRunScalar(const QuantMatrix& w, int64_t i, int64_t end, float absmax, float* out) {
  for (; i < end; i++) {
    const uint8_t byte = w.packed[i >> 1];
    *out++ = w.code[(i & 1) == 0 ? byte >> 4 : byte & 0x0f] * absmax;
  }
}

#ifdef PEFT_HAVE_AVX2_PATH
// code[idx]·scale for 8 nibbles: vpermps reads the low 3 bits of each index from the 8-entry halves of the code, and
// bit 3, moved to the sign bit, picks the half.
__attribute__((target("avx2"))) inline __m256 lookupScaled(__m256 low, __m256 high, __m256i idx, __m256 scale) {
  const __m256 pick = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
  return _mm256_mul_ps(
      _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, idx), _mm256_permutevar8x32_ps(high, idx), pick), scale);
}

// dequantRunScalar, 16 values (8 bytes) per step; high and low nibbles are looked up apart, then interleaved.
__attribute__((target("avx2"))) void dequantRunAvx2(const QuantMatrix& w, int64_t i, int64_t end, float absmax,
                                                     float* out) {
  if (i < end && (i & 1) != 0) dequantRunScalar(w, i, i + 1, absmax, out++), i++;
  const __m256 low = _mm256_loadu_ps(w.code), high = _mm256_loadu_ps(w.code + 8), scale = _mm256_set1_ps(absmax);
  const __m256i mask = _mm256_set1_epi32(0x0f);
  for (; i + 16 <= end; i += 16, out += 16) {
    const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.packed + (i >> 1))));
    const __m256 hi = lookupScaled(low, high, _mm256_srli_epi32(bytes, 4), scale);
    const __m256 lo = lookupScaled(low, high, _mm256_and_si256(bytes, mask), scale);
    const __m256 a = _mm256_unpacklo_ps(hi, lo), b = _mm256_unpackhi_ps(hi, lo);
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(a, b, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(a, b, 0x31));
  }
  dequantRunScalar(w, i, end, absmax, out);
}
const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

// Values [start, start + count) of W in storage order, block by block (the absmax decoded once per block).
void dequantRange(const QuantMatrix& w, int64_t start, int64_t count, float* out) {
  if (!w.packed) {  // int8 rows: (q·SCB[row])·1/127
    for (int64_t i = start, end = start + count; i < end;) {
      const int64_t stop = std::min(end, (i / w.k + 1) * w.k);
      const float s = w.scb[i / w.k];
      for (; i < stop; i++) *out++ = (float(w.int8[i]) * s) * kInv127;
    }
    return;
  }
  for (int64_t i = start, end = start + count; i < end;) {
    const int64_t b = i / w.blocksize, stop = std::min(end, (b + 1) * w.blocksize);
    const float absmax = absmaxOfBlock(w, b);
#ifdef PEFT_HAVE_AVX2_PATH
    if (kHasAvx2) dequantRunAvx2(w, i, stop, absmax, out);
    else dequantRunScalar(w, i, stop, absmax, out);
#else
    dequantRunScalar(w, i, stop, absmax, out);
#endif
    out += stop - i;
    i = stop;
  }
}

#ifdef PEFT_HAVE_AVX2_PATH
// Few-row x·Wᵀ on a 4-bit W read in place (decoding): each row of W is dequantised 16 values at a time in registers
// and multiplied into the sums of every row of x, so a token streams half a byte per weight instead of a dequantised
// panel. Each output element is one fixed sequence of fused multiply-adds (per 16 terms, lane l takes term 2l, then
// 2l + 1), then its lanes added ((0+4)+(1+5))+((2+6)+(3+7)), so its bits do not depend on the other rows, the blocking
// or the threads. Needs rows of W made of whole blocks (k % blocksize == 0, blocksize % 16 == 0).

// v rounded to bfloat16 values (nearest even; NaN → 0x7FC00000, as roundToHalf).
__attribute__((target("avx2"), always_inline)) inline __m256 roundBf16(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd),
                                           _mm256_set1_epi32(int(0xffff0000u)));
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  return _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)), nan);
}

// A block's 16 values code[i]·absmax (rounded to bfloat16 when that is the compute dtype), as two 8-entry halves:
// each weight of the block is one of them, so a lookup replaces a multiply per weight.
template <bool Bf16>
__attribute__((target("avx2"), always_inline)) inline void scaledCode(const QuantMatrix& w, int64_t block, __m256& low,
                                                                      __m256& high) {
  const __m256 scale = _mm256_set1_ps(absmaxOfBlock(w, block));
  low = _mm256_mul_ps(_mm256_loadu_ps(w.code), scale);
  high = _mm256_mul_ps(_mm256_loadu_ps(w.code + 8), scale);
  if (Bf16) low = roundBf16(low), high = roundBf16(high);
}

// The 16 values of W from element e (e a multiple of 16), looked up in the block's scaled code: the even-numbered
// ones (high nibbles) into `even`, the odd-numbered ones into `odd`. vpermps reads the low 3 bits of each index and
// bit 3, shifted to the sign, picks the half of the code; the higher bits of a byte drop out of both.
__attribute__((target("avx2"), always_inline)) inline void dequant16(const QuantMatrix& w, int64_t e, __m256 low,
                                                                     __m256 high, __m256& even, __m256& odd) {
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.packed + (e >> 1))));
  const __m256i hi = _mm256_srli_epi32(bytes, 4);
  even = _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, hi), _mm256_permutevar8x32_ps(high, hi),
                          _mm256_castsi256_ps(_mm256_slli_epi32(hi, 28)));
  odd = _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, bytes), _mm256_permutevar8x32_ps(high, bytes),
                         _mm256_castsi256_ps(_mm256_slli_epi32(bytes, 28)));
}

__attribute__((target("avx2"), always_inline)) inline float laneSum8(__m256 v) {
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // (0+4), (1+5), (2+6), (3+7)
  const __m128 u = _mm_add_ps(t, _mm_shuffle_ps(t, t, _MM_SHUFFLE(2, 3, 0, 1)));       // (0+4)+(1+5), …, (2+6)+(3+7)
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehl_ps(u, u)));
}

// s[r·C + c] = Σ_p x[i0 + r, p]·W[j + c, p], x's rows in pairs order (pairedRows): per 16 terms, lane l sums term 2l
// and then term 2l + 1.
template <int R, int C, bool Bf16>
__attribute__((target("avx2,fma"), always_inline)) inline void fewBlock4bit(const QuantMatrix& w, const float* x,
                                                                           int64_t i0, int64_t j, float* s) {
  __m256 acc[R][C];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
  const int64_t k = w.k, bs = w.blocksize;
  for (int64_t p0 = 0; p0 < k; p0 += bs) {
    __m256 low[C], high[C];
    for (int c = 0; c < C; c++) scaledCode<Bf16>(w, ((j + c) * k + p0) / bs, low[c], high[c]);
    for (int64_t p = p0; p < p0 + bs; p += 16) {
      for (int c = 0; c < C; c++) {
        __m256 even, odd;
        dequant16(w, (j + c) * k + p, low[c], high[c], even, odd);
        for (int r = 0; r < R; r++) {
          const float* xr = x + (i0 + r) * k + p;
          acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(xr), even, acc[r][c]);
          acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 8), odd, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) s[r * C + c] = laneSum8(acc[r][c]);
}

// x's m rows with each 16 terms reordered as dequant16 gives them: the 8 even-numbered, then the 8 odd-numbered.
std::vector<float> pairedRows(const float* x, int64_t m, int64_t k) {
  std::vector<float> out(static_cast<size_t>(m * k));
  for (int64_t i = 0; i < m * k; i += 16)
    for (int64_t l = 0; l < 8; l++) out[i + l] = x[i + 2 * l], out[i + 8 + l] = x[i + 2 * l + 1];
  return out;
}

// fewBlock4bit over all m rows of x against C rows of W: the rows in one block, so each weight is looked up once.
template <int C, bool Bf16>
__attribute__((target("avx2,fma"), always_inline)) inline void fewColumns4bit(const QuantMatrix& w, const float* x,
                                                                             int64_t m, int64_t j, float* s) {
  switch (m) {
    case 8: return fewBlock4bit<8, C, Bf16>(w, x, 0, j, s);
    case 7: return fewBlock4bit<7, C, Bf16>(w, x, 0, j, s);
    case 6: return fewBlock4bit<6, C, Bf16>(w, x, 0, j, s);
    case 5: return fewBlock4bit<5, C, Bf16>(w, x, 0, j, s);
    case 4: return fewBlock4bit<4, C, Bf16>(w, x, 0, j, s);
    case 3: return fewBlock4bit<3, C, Bf16>(w, x, 0, j, s);
    case 2: return fewBlock4bit<2, C, Bf16>(w, x, 0, j, s);
    default: return fewBlock4bit<1, C, Bf16>(w, x, 0, j, s);
  }
}

// Output columns [j0, j1) of x·Wᵀ for m ≤ kFewRows rows: all rows against one row of W at a time, or two when the
// rows are few (at least two independent sums then hide the multiply-add latency behind the lookups).
template <bool Bf16>
__attribute__((target("avx2,fma"))) void fewRows4bit(const QuantMatrix& w, const float* x, int64_t m, int64_t j0,
                                                     int64_t j1, float* out) {
  float s[kFewRows * 2];
  for (int64_t j = j0; j < j1;) {
    const int64_t cols = m <= 4 && j + 2 <= j1 ? 2 : 1;
    if (cols == 2) fewColumns4bit<2, Bf16>(w, x, m, j, s);
    else fewColumns4bit<1, Bf16>(w, x, m, j, s);
    for (int64_t r = 0; r < m; r++)
      for (int64_t c = 0; c < cols; c++) out[r * w.n + j + c] = s[r * cols + c];
    j += cols;
  }
}
#endif

// Panels of `extent` rows (or columns) of W: a multiple of `unit` wide, about kPanelElems each, at least kMinPanels.
int64_t panelWidth(int64_t extent, int64_t depth, int64_t unit) {
  const int64_t byCache = kPanelElems / std::max<int64_t>(depth, 1);
  const int64_t byCount = (extent + kMinPanels - 1) / kMinPanels;
  const int64_t w = (std::min(byCache, byCount) + unit - 1) / unit * unit;
  return std::min(std::max(w, unit), std::max<int64_t>(extent, 1));
}

}  // namespace

void quantMatmulKernel(const float* x, int64_t rows, const QuantMatrix& w, bool transpose, HalfKind compute,
                       float* out) {
  const int64_t outCols = transpose ? w.k : w.n, depth = transpose ? w.n : w.k;
  if (rows == 0 || outCols == 0) return;
  if (rows > INT_MAX || outCols > INT_MAX || depth > INT_MAX) {
    throw std::length_error("quantMatmul: a dimension exceeds BLAS's 32-bit integers");
  }
  if (depth == 0) return std::fill(out, out + rows * outCols, 0.0f);
  std::vector<float> rounded;
  if (compute != HalfKind::none) {  // the input in the compute dtype, as bitsandbytes casts it
    rounded.assign(x, x + rows * depth);
    roundToHalf(rounded.data(), rows * depth, compute);
    x = rounded.data();
  }
#ifdef PEFT_HAVE_AVX2_PATH
  // Decoding (a few rows, x·Wᵀ, 4-bit rows of whole blocks, float32 or bfloat16 compute): W read in place.
  if (kHasAvx2 && rows <= kFewRows && !transpose && w.packed && w.blocksize % 16 == 0 && depth % w.blocksize == 0 &&
      compute != HalfKind::f16) {
    const std::vector<float> paired = pairedRows(x, rows, depth);
    // Column pieces per thread once W is big enough (256 Ki weights: the lookups, not the bytes, bound this product) for
    // a second thread to pay for its wake-up.
    const int T = activeThreads();
    const int64_t pieces = T > 1 && outCols * depth >= (int64_t(1) << 18) ? std::min<int64_t>(T, (outCols + 3) / 4) : 1;
    const int64_t width = ((outCols + pieces - 1) / pieces + 3) / 4 * 4;
    parallelFor(pieces, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; t++) {
        const int64_t j0 = std::min(outCols, t * width), j1 = std::min(outCols, j0 + width);
        if (compute == HalfKind::bf16) fewRows4bit<true>(w, paired.data(), rows, j0, j1, out);
        else fewRows4bit<false>(w, paired.data(), rows, j0, j1, out);
      }
    });
    return;
  }
#endif
  // x·Wᵀ: panels of whole rows of W. x·W: panels of columns of W, whole blocks of 64 where rows hold whole blocks.
  const int64_t width = panelWidth(outCols, depth, transpose ? 64 : 16);
  const int64_t panels = (outCols + width - 1) / width;
  const double panelFlops = 2.0 * double(rows) * double(depth) * double(width);
  SingleThreadedBlas single;
  parallelFor(panels, std::max<int64_t>(1, int64_t(kMinTaskFlops / panelFlops)), [&](int64_t p0, int64_t p1) {
    std::vector<float> panel(size_t(width * depth));
    for (int64_t p = p0; p < p1; p++) {
      const int64_t c0 = p * width, cw = std::min(width, outCols - c0);
      if (transpose) {  // W[:, c0:c0+cw] as [n, cw]
        for (int64_t r = 0; r < w.n; r++) dequantRange(w, r * w.k + c0, cw, panel.data() + r * cw);
      } else {  // W[c0:c0+cw, :] as [cw, k]
        dequantRange(w, c0 * w.k, cw * w.k, panel.data());
      }
      if (compute != HalfKind::none) roundToHalf(panel.data(), cw * depth, compute);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, transpose ? CblasNoTrans : CblasTrans, int(rows), int(cw), int(depth),
                  1.0f, x, int(depth), panel.data(), transpose ? int(cw) : int(depth), 0.0f, out + c0, int(outCols));
    }
  });
}

// dQuantizeNF4 / dQuantizeFP4 of csrc/kernels.cu (strict comparisons: NaN, from a zero block, gives code 0).
uint8_t quantizeNF4(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

uint8_t quantizeFP4(float x) {
  const uint8_t sign = x < 0 ? 0b1000 : 0;
  const float a = std::fabs(x);
  if (a > 0.29166667f) {
    if (a > 0.583333f) return (a > 0.8333333f ? 0b0011 : 0b0010) + sign;
    return (a > 0.4166667f ? 0b0101 : 0b0100) + sign;
  }
  if (a > 0.0859375f) return (a > 0.20833333f ? 0b0111 : 0b0110) + sign;
  return (a > 0.00260417f ? 0b0001 : 0b0000) + sign;
}

void quantize4bitKernel(const float* x, int64_t n, bool nf4, int64_t blocksize, uint8_t* packed, float* absmax) {
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  parallelFor(blocks, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t start = b * blocksize, end = std::min(n, start + blocksize);
      float m = 0;
      for (int64_t i = start; i < end; i++) m = std::max(m, std::fabs(x[i]));
      absmax[b] = m;
      const float scale = 1.0f / m;  // a zero block: Infinity, then NaN codes, as the CUDA kernel
      for (int64_t i = start; i < end; i += 2) {
        const float lo = i + 1 < n ? x[i + 1] * scale : 0.0f * scale;  // an odd tail is padded with 0.0
        packed[i >> 1] = uint8_t((nf4 ? quantizeNF4(x[i] * scale) : quantizeFP4(x[i] * scale)) << 4) |
                         (nf4 ? quantizeNF4(lo) : quantizeFP4(lo));
      }
    }
  });
}

void int8ProductKernel(const int8_t* a, int64_t rows, const int8_t* b, int64_t n, int64_t k, int32_t* acc) {
  parallelFor(n, std::max<int64_t>(1, 65536 / std::max<int64_t>(rows * k, 1)), [&](int64_t j0, int64_t j1) {
    for (int64_t i = 0; i < rows; i++) {
      const int8_t* ai = a + i * k;
      for (int64_t j = j0; j < j1; j++) {
        const int8_t* bj = b + j * k;
        int32_t s = 0;
        for (int64_t c = 0; c < k; c++) s += int32_t(ai[c]) * int32_t(bj[c]);
        acc[i * n + j] = s;
      }
    }
  });
}

}  // namespace peft
