// Products with frozen quantised weights (bitsandbytes' NF4/FP4 and LLM.int8 layouts; src/backend/quant.ts is the
// reference). W [n, k] is dequantised one panel of rows at a time into a buffer of about 256 KiB (it stays in cache)
// and multiplied there by BLAS, so the whole float32 matrix never exists. Dequantisation is the reference's float32
// arithmetic (no FMA contraction: -ffp-contract=off), so a panel holds exactly the values the js backend computes.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"

namespace peft {

namespace {

constexpr float kInv127 = 7.874015718698502e-3f;  // int8_vectorwise_dequant's 1/127

float absmaxOfBlock(const QuantMatrix& w, int64_t b) {
  if (w.absmax) return w.absmax[b];
  return w.nestedCode[w.nestedCodes[b]] * w.nestedAbsmax[b / w.nestedBlocksize] + w.offset;
}

// Values [start, start + count) of a 4-bit matrix: code[nibble]·absmax, value 2j in the high nibble of byte j.
void dequant4bit(const QuantMatrix& w, int64_t start, int64_t count, float* out) {
  int64_t block = -1;
  float absmax = 0;
  for (int64_t i = start; i < start + count; i++) {
    if (i / w.blocksize != block) absmax = absmaxOfBlock(w, block = i / w.blocksize);
    const uint8_t byte = w.packed[i >> 1];
    *out++ = w.code[(i & 1) == 0 ? byte >> 4 : byte & 0x0f] * absmax;
  }
}

}  // namespace

int64_t quantPanelRows(int64_t k) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(k, 1)); }

void dequantRowsKernel(const QuantMatrix& w, int64_t r0, int64_t r1, float* out) {
  parallelFor(r1 - r0, std::max<int64_t>(1, 16384 / std::max<int64_t>(w.k, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = r0 + b; r < r0 + e; r++) {
      float* row = out + (r - r0) * w.k;
      if (w.packed) {
        dequant4bit(w, r * w.k, w.k, row);
        continue;
      }
      const int8_t* q = w.int8 + r * w.k;
      const float s = w.scb[r];
      for (int64_t c = 0; c < w.k; c++) row[c] = (float(q[c]) * s) * kInv127;
    }
  });
}

void quantMatmulKernel(const float* x, int64_t rows, const QuantMatrix& w, bool transpose, float* out) {
  const int64_t step = quantPanelRows(w.k);
  std::vector<float> panel(size_t(std::min(step, std::max<int64_t>(w.n, 1)) * w.k));
  if (transpose && w.n == 0) std::fill(out, out + rows * w.k, 0.0f);
  for (int64_t r0 = 0; r0 < w.n; r0 += step) {
    const int64_t r1 = std::min(w.n, r0 + step);
    dequantRowsKernel(w, r0, r1, panel.data());
    Gemm g{};
    g.alpha = 1;
    if (!transpose) {  // out[:, r0:r1] = x · panelᵀ
      g.a = x, g.lda = w.k, g.m = rows, g.k = w.k;
      g.b = panel.data(), g.transB = true, g.ldb = w.k, g.n = r1 - r0;
      g.out = out, g.outOffset = r0, g.ldc = w.n;
    } else {  // out (+)= x[:, r0:r1] · panel
      g.a = x, g.aOffset = r0, g.lda = w.n, g.m = rows, g.k = r1 - r0;
      g.b = panel.data(), g.ldb = w.k, g.n = w.k;
      g.out = out, g.ldc = w.k, g.accumulate = r0 > 0;
    }
    gemmKernel(g);
  }
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
