/** Strided-index helpers shared by the pure-TypeScript kernels. */
import type { View } from "../backend.js";

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Storage offsets of the first element of every innermost row of `view` (all axes but the last, row-major),
 * so that kernels can run their inner loop as `base + j * innerStride`.
 */
export function rowOffsets(view: View): Int32Array {
  const { shape, strides, offset } = view;
  const nd = shape.length;
  const rows = nd === 0 ? 1 : numel(shape) / Math.max(shape[nd - 1]!, 1);
  const out = new Int32Array(nd === 0 || shape[nd - 1] === 0 ? (nd === 0 ? 1 : 0) : rows);
  if (out.length === 0) return out;
  const idx = new Array<number>(Math.max(nd - 1, 0)).fill(0);
  let off = offset;
  for (let r = 0; r < out.length; r++) {
    out[r] = off;
    for (let ax = nd - 2; ax >= 0; ax--) {
      idx[ax]!++;
      off += strides[ax]!;
      if (idx[ax]! < shape[ax]!) break;
      off -= idx[ax]! * strides[ax]!;
      idx[ax] = 0;
    }
  }
  return out;
}

/** Length and stride of the innermost axis of a view (1 and 0 for a scalar). */
export function innerAxis(view: View): [length: number, stride: number] {
  const nd = view.shape.length;
  return nd === 0 ? [1, 0] : [view.shape[nd - 1]!, view.strides[nd - 1]!];
}

/**
 * Error function in double precision: Maclaurin series for |x| < 3 (≤ 60 terms; cancellation costs at most
 * ~4 of 16 digits there), the continued fraction of erfc beyond. Both far more accurate than float32 needs.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = x,
      total = x;
    const x2 = x * x;
    for (let n = 1; n < 60 && Math.abs(term) > 1e-17 * Math.abs(total); n++) {
      term *= -x2 / n;
      total += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * total;
  }
  let k = ax;
  for (let n = 60; n >= 1; n--) k = ax + n / 2 / k;
  const erfc = Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * k);
  return x < 0 ? erfc - 1 : 1 - erfc;
}
