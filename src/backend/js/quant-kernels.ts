/** The js backend's quantised products: the reference the native kernels are tested against. */
import { roundToHalfInPlace } from "../half.js";
import {
  MM_DEQUANT,
  dequantizeInt8Rows,
  dequantizeRows,
  panelRows,
  quantizeInt8Rows,
  type QuantizedInt8,
  type QuantizedMatrix,
} from "../quant.js";

const f = Math.fround;

/**
 * out = x·Wᵀ ([rows, k] → [rows, n]) or, transposed, x·W ([rows, n] → [rows, k]), one dequantised panel of W at a
 * time; with a 4-bit compute dtype, x and the panel are rounded to it first (bitsandbytes' casts).
 */
export function quantMatmulJs(
  input: Float32Array,
  rows: number,
  w: QuantizedMatrix,
  transpose: boolean,
  out: Float32Array,
): void {
  const { n, k } = w;
  const compute = w.format === "4bit" ? (w.compute ?? "float32") : "float32";
  let x = input;
  if (compute !== "float32") {
    x = input.slice(0, rows * (transpose ? n : k));
    roundToHalfInPlace(x, compute);
  }
  const step = panelRows(k);
  const panel = new Float32Array(step * k);
  if (transpose) out.fill(0, 0, rows * k);
  for (let r0 = 0; r0 < n; r0 += step) {
    const r1 = Math.min(n, r0 + step);
    dequantizeRows(w, r0, r1, panel);
    if (compute !== "float32") roundToHalfInPlace(panel, compute);
    for (let i = 0; i < rows; i++) {
      if (!transpose) {
        for (let j = r0; j < r1; j++) {
          let acc = 0;
          for (let c = 0, p = (j - r0) * k, xi = i * k; c < k; c++) acc += x[xi + c]! * panel[p + c]!;
          out[i * n + j] = acc;
        }
        continue;
      }
      for (let j = r0; j < r1; j++) {
        const g = x[i * n + j]!;
        if (g === 0) continue;
        for (let c = 0, p = (j - r0) * k, o = i * k; c < k; c++) out[o + c] = f(out[o + c]! + g * panel[p + c]!);
      }
    }
  }
}

/** acc [rows, n] = a [rows, k]·bᵀ (b [n, k]), exact in int32. */
export type Int8Product = (a: Int8Array, rows: number, b: Int8Array, n: number, k: number, acc: Int32Array) => void;

/** The js int8 product. */
export const int8ProductJs: Int8Product = (a, rows, b, n, k, acc) => {
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0, ai = i * k, bj = j * k; c < k; c++) s += a[ai + c]! * b[bj + c]!;
      acc[i * n + j] = s;
    }
  }
};

/** LLM.int8's product (Backend.int8Linear), in bitsandbytes' order of float32 operations; `product` does the int8 part. */
export function int8LinearJs(
  x: Float32Array,
  rows: number,
  w: QuantizedInt8,
  threshold: number,
  bias: Float32Array | null,
  out: Float32Array,
  product: Int8Product = int8ProductJs,
): void {
  const { rows: n, cols: k } = w;
  const a = quantizeInt8Rows(x.subarray(0, rows * k), rows, k, threshold);
  const acc = new Int32Array(rows * n);
  product(a.data, rows, w.data, n, k, acc);
  const outliers = a.outlierCols;
  const wOut = new Float32Array(n * outliers.length); // the dequantised weight columns of the outliers
  if (outliers.length > 0) {
    const row = new Float32Array(k);
    for (let j = 0; j < n; j++) {
      dequantizeInt8Rows(w, j, 1, row);
      outliers.forEach((c, t) => {
        wOut[j * outliers.length + t] = row[c]!;
      });
    }
  }
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < n; j++) {
      let y = f(f(f(f(acc[i * n + j]!) * MM_DEQUANT) * a.scb[i]!) * w.scb[j]!);
      if (bias) y = f(y + bias[j]!);
      if (outliers.length > 0) {
        let extra = 0;
        outliers.forEach((c, t) => {
          extra += x[i * k + c]! * wOut[j * outliers.length + t]!;
        });
        y = f(y + f(extra));
      }
      out[i * n + j] = y;
    }
  }
}
