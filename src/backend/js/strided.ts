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

/** Error function (W. J. Cody's rational approximations; |error| < 1e-15 relative, far below float32 needs). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 0.5) {
    const t = x * x;
    const num = (((0.185777706184603153 * t + 3.16112374387056560) * t + 113.864154151050156) * t + 377.485237685302021) * t + 3209.37758913846947;
    const den = (((t + 23.6012909523441209) * t + 244.024637934444173) * t + 1282.61652607737228) * t + 2844.23683343917062;
    return (x * num) / den;
  }
  return x < 0 ? erfcPositive(ax) - 1 : 1 - erfcPositive(ax);
}

function erfcPositive(x: number): number {
  if (x < 4) {
    const num = (((((((5.64188496988670089e-1 * x + 8.88314979438837594) * x + 66.1191906371416295) * x + 298.635138197400131) * x
      + 881.952221241769090) * x + 1712.04761263407058) * x + 2051.07837782607147) * x + 1230.33935479799725) * x + 2.15311535474403846e-8;
    const den = (((((((x + 15.7449261107098347) * x + 117.693950891312499) * x + 537.181101862009858) * x + 1621.38957456669019) * x
      + 3290.79923573345963) * x + 4362.61909014324716) * x + 3439.36767414372164) * x + 1230.33935480374942;
    return Math.exp(-x * x) * (num / den);
  }
  const z = 1 / (x * x);
  const num = ((((1.63153871373020978e-2 * z + 3.05326634961232344e-1) * z + 3.60344899949804439e-1) * z + 1.25781726111229246e-1) * z
    + 1.60837851487422766e-2) * z + 6.58749161529837803e-4;
  const den = ((((z + 2.56852019228982242) * z + 1.87295284992346725) * z + 5.27905102951428412e-1) * z + 6.05183413124413191e-2) * z
    + 2.33520497626869185e-3;
  return (Math.exp(-x * x) / x) * (0.564189583547756287 - (z * num) / den);
}
