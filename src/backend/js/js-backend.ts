/** The portable backend: every kernel in plain TypeScript. It is the reference the native kernels are tested against. */
import type {
  AdamWStep,
  Backend,
  BinaryOp,
  DType,
  GemmSpec,
  ReduceOp,
  Storage,
  StorageData,
  UnaryGradOp,
  UnaryOp,
  View,
} from "../backend.js";
import { contiguousOutStrides, isHalf } from "../backend.js";
import { fromBfloat16Bits, fromFloat16Bits, toBfloat16Bits, toFloat16Bits } from "../half.js";
import { innerAxis, numel, rowOffsets, erf } from "./strided.js";
import { normalAt, uniformAt } from "./random.js";
import { CpuStorage, PooledBackend } from "../pool.js";
import { quantize4bitJs, type QuantType4, type QuantizedInt8, type QuantizedMatrix } from "../quant.js";
import { int8LinearJs, quantMatmulJs } from "./quant-kernels.js";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

function unaryFn(op: UnaryOp): (x: number) => number {
  switch (op) {
    case "neg":
      return (x) => -x;
    case "exp":
      return Math.exp;
    case "log":
      return Math.log;
    case "sqrt":
      return Math.sqrt;
    case "rsqrt":
      return (x) => 1 / Math.sqrt(x);
    case "abs":
      return Math.abs;
    case "square":
      return (x) => x * x;
    case "reciprocal":
      return (x) => 1 / x;
    case "tanh":
      return Math.tanh;
    case "sigmoid":
      return (x) => 1 / (1 + Math.exp(-x));
    case "relu":
      // biome-ignore lint/complexity/useMathMinMax: NaN gives 0 here, as in the native kernel; Math.max would give NaN
      return (x) => (x > 0 ? x : 0);
    case "gelu":
      return (x) => 0.5 * x * (1 + erf(x * INV_SQRT_2));
    case "gelu_tanh":
      return (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
    case "silu":
      return (x) => x / (1 + Math.exp(-x));
    case "sin":
      return Math.sin;
    case "cos":
      return Math.cos;
  }
}

function unaryDerivative(op: UnaryGradOp): (x: number) => number {
  switch (op) {
    case "tanh":
      return (x) => {
        const t = Math.tanh(x);
        return 1 - t * t;
      };
    case "sigmoid":
      return (x) => {
        const s = 1 / (1 + Math.exp(-x));
        return s * (1 - s);
      };
    case "relu":
      return (x) => (x > 0 ? 1 : 0);
    case "gelu":
      return (x) => 0.5 * (1 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case "gelu_tanh":
      return (x) => {
        const inner = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
        const t = Math.tanh(inner);
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
      };
    case "silu":
      return (x) => {
        const s = 1 / (1 + Math.exp(-x));
        return s * (1 + x * (1 - s));
      };
  }
}

function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case "add":
      return (a, b) => a + b;
    case "sub":
      return (a, b) => a - b;
    case "mul":
      return (a, b) => a * b;
    case "div":
      return (a, b) => a / b;
    case "pow":
      return Math.pow;
    case "max":
      return (a, b) => (a >= b || Number.isNaN(a) ? a : b);
    case "min":
      return (a, b) => (a <= b || Number.isNaN(a) ? a : b);
    case "eq":
      return (a, b) => (a === b ? 1 : 0);
    case "ne":
      return (a, b) => (a !== b ? 1 : 0);
    case "lt":
      return (a, b) => (a < b ? 1 : 0);
    case "le":
      return (a, b) => (a <= b ? 1 : 0);
    case "gt":
      return (a, b) => (a > b ? 1 : 0);
    case "ge":
      return (a, b) => (a >= b ? 1 : 0);
  }
}

/** Calls fn(outIndex, offsetInEachView) for every element of views that share one shape, in row-major order. */
function forEachElement(views: readonly View[], fn: (i: number, offsets: readonly number[]) => void): void {
  const [len] = innerAxis(views[0]!);
  const rows = views.map(rowOffsets);
  const inner = views.map((v) => innerAxis(v)[1]);
  const offs = new Array<number>(views.length).fill(0);
  let i = 0;
  for (let r = 0; r < rows[0]!.length; r++) {
    for (let j = 0; j < len; j++, i++) {
      for (let v = 0; v < views.length; v++) offs[v] = rows[v]![r]! + j * inner[v]!;
      fn(i, offs);
    }
  }
}

/** Element value → what a storage of `dtype` holds (16-bit floats: bits rounded to nearest even; others as typed arrays store). */
function encoder(dtype: DType): (v: number) => number {
  if (dtype === "bfloat16") return toBfloat16Bits;
  if (dtype === "float16") return toFloat16Bits;
  return (v) => v;
}

/** Stored element → its value (16-bit floats decoded). */
function decoder(dtype: DType): (e: number) => number {
  if (dtype === "bfloat16") return fromBfloat16Bits;
  if (dtype === "float16") return fromFloat16Bits;
  return (e) => e;
}

/** A storage's elements as numbers: the data itself, or 16-bit floats decoded into a new array. */
function floatValues(s: Storage): ArrayLike<number> {
  if (!isHalf(s.dtype)) return s.data;
  const dec = decoder(s.dtype),
    out = new Float32Array(s.size);
  for (let i = 0; i < s.size; i++) out[i] = dec(s.data[i]!);
  return out;
}

function checkIndex(id: number, n: number, what: string): void {
  if (!(id >= 0 && id < n)) throw new RangeError(`${what} ${id} is out of range [0, ${n})`);
}

/** The pure-TypeScript backend. */
/** The values of a float32 storage (quantised products take no other). */
function floats(s: Storage, kernel: string): Float32Array {
  if (!(s.data instanceof Float32Array)) throw new Error(`${kernel}: expected a float32 storage, got ${s.dtype}`);
  return s.data;
}

export class JsBackend extends PooledBackend implements Backend {
  readonly name = "js";

  write(storage: Storage, values: ArrayLike<number>, offset = 0): void {
    const d = storage.data;
    if (!isHalf(storage.dtype)) return d.set(values, offset);
    const enc = encoder(storage.dtype);
    for (let i = 0; i < values.length; i++) d[offset + i] = enc(values[i]!);
  }
  read(storage: Storage): StorageData {
    return storage.data.slice();
  }

  copy(x: View, out: Storage): void {
    const src = x.storage.data,
      dst = out.data;
    if (x.storage.dtype === out.dtype) {
      forEachElement([x], (i, [o]) => {
        dst[i] = src[o!]!;
      });
      return;
    }
    // Integer typed arrays truncate toward zero on assignment (Uint8Array then keeps the low 8 bits).
    const dec = decoder(x.storage.dtype),
      enc = encoder(out.dtype);
    forEachElement([x], (i, [o]) => {
      dst[i] = enc(dec(src[o!]!));
    });
  }

  fill(out: Storage, value: number): void {
    out.data.fill(encoder(out.dtype)(value));
  }

  arange(out: Storage, start: number, step: number): void {
    const enc = encoder(out.dtype);
    for (let i = 0; i < out.size; i++) out.data[i] = enc(start + i * step);
  }

  random(
    out: Storage,
    kind: "uniform" | "normal" | "bernoulli",
    a: number,
    b: number,
    seed: number,
    counter: number,
  ): void {
    const d = out.data,
      enc = encoder(out.dtype);
    for (let i = 0; i < out.size; i++) {
      if (kind === "normal") d[i] = enc(a + b * normalAt(seed, counter + i));
      else {
        const u = uniformAt(seed, counter + i);
        d[i] = enc(kind === "uniform" ? a + (b - a) * u : u < a ? b : 0);
      }
    }
  }

  unary(op: UnaryOp, x: View, out: Storage): void {
    const f = unaryFn(op),
      src = x.storage.data,
      dst = out.data;
    forEachElement([x], (i, [o]) => {
      dst[i] = f(src[o!]!);
    });
  }

  unaryGrad(op: UnaryGradOp, x: View, dy: View, out: Storage): void {
    const f = unaryDerivative(op),
      xs = x.storage.data,
      gs = dy.storage.data,
      dst = out.data;
    forEachElement([x, dy], (i, [ox, og]) => {
      dst[i] = gs[og!]! * f(xs[ox!]!);
    });
  }

  binary(op: BinaryOp, a: View, b: View, out: Storage): void {
    const f = binaryFn(op),
      as = a.storage.data,
      bs = b.storage.data,
      dst = out.data;
    forEachElement([a, b], (i, [oa, ob]) => {
      dst[i] = f(as[oa!]!, bs[ob!]!);
    });
  }

  where(cond: View, a: View, b: View, out: Storage): void {
    const cs = cond.storage.data,
      as = a.storage.data,
      bs = b.storage.data,
      dst = out.data;
    forEachElement([cond, a, b], (i, [oc, oa, ob]) => {
      dst[i] = cs[oc!] !== 0 ? as[oa!]! : bs[ob!]!;
    });
  }

  reduce(op: ReduceOp, x: View, keep: readonly boolean[], out: Storage): void {
    const outShape = x.shape.map((d, ax) => (keep[ax] ? d : 1));
    const outStrides = new Array<number>(outShape.length);
    let s = 1;
    for (let ax = outShape.length - 1; ax >= 0; ax--) {
      outStrides[ax] = keep[ax] ? s : 0;
      s *= outShape[ax]!;
    }
    // Accumulate in double, as the native kernel does, so that long sums do not drift.
    const acc = new Float64Array(out.size).fill(op === "sum" ? 0 : op === "max" ? -Infinity : Infinity);
    const src = x.storage.data;
    const outView: View = {
      storage: new CpuStorage("float32", new Float32Array(0)),
      shape: x.shape,
      strides: outStrides,
      offset: 0,
    };
    forEachElement([x, outView], (_i, [ox, oo]) => {
      const v = src[ox!]!,
        cur = acc[oo!]!;
      if (op === "sum") acc[oo!] = cur + v;
      else if (op === "max") acc[oo!] = v > cur || Number.isNaN(v) ? v : cur;
      else acc[oo!] = v < cur || Number.isNaN(v) ? v : cur;
    });
    out.data.set(acc);
  }

  argmax(x: Storage, outer: number, n: number, inner: number, out: Storage): void {
    const d = x.data;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let best = 0,
          bestV = -Infinity;
        for (let j = 0; j < n; j++) {
          const v = d[(o * n + j) * inner + i]!;
          if (v > bestV) {
            bestV = v;
            best = j;
          }
        }
        out.data[o * inner + i] = best;
      }
    }
  }

  gemm(g: GemmSpec): void {
    const A = floatValues(g.a),
      B = floatValues(g.b),
      C = g.out.data;
    const batch = numel(g.batchShape);
    const nd = g.batchShape.length;
    const idx = new Array<number>(nd).fill(0);
    const row = new Float64Array(g.n);
    const alpha = g.alpha ?? 1,
      ldc = g.ldc ?? g.n;
    const outStrides = g.outBatchStrides ?? contiguousOutStrides(g.batchShape, g.m, g.n);
    const bias = g.bias?.data ?? null,
      bo0 = g.biasOffset ?? 0;
    for (let bi = 0; bi < batch; bi++) {
      let ao = g.aOffset,
        bo = g.bOffset,
        co = g.outOffset ?? 0;
      for (let ax = 0; ax < nd; ax++) {
        ao += idx[ax]! * g.aBatchStrides[ax]!;
        bo += idx[ax]! * g.bBatchStrides[ax]!;
        co += idx[ax]! * outStrides[ax]!;
      }
      for (let i = 0; i < g.m; i++) {
        row.fill(0);
        for (let p = 0; p < g.k; p++) {
          const av = A[ao + (g.transA ? p * g.lda + i : i * g.lda + p)]!;
          if (av === 0) continue;
          if (g.transB) for (let j = 0; j < g.n; j++) row[j]! += av * B[bo + j * g.ldb + p]!;
          else {
            const base = bo + p * g.ldb;
            for (let j = 0; j < g.n; j++) row[j]! += av * B[base + j]!;
          }
        }
        const c = co + i * ldc;
        for (let j = 0; j < g.n; j++) {
          let v = alpha === 1 ? row[j]! : alpha * row[j]!;
          if (bias) v += bias[bo0 + j]!;
          C[c + j] = g.accumulate ? C[c + j]! + v : v;
        }
      }
      for (let ax = nd - 1; ax >= 0; ax--) {
        if (++idx[ax]! < g.batchShape[ax]!) break;
        idx[ax] = 0;
      }
    }
  }

  softmax(x: Storage, rows: number, cols: number, log: boolean, out: Storage): void {
    const s = x.data,
      d = out.data;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let max = -Infinity;
      for (let j = 0; j < cols; j++) max = Math.max(max, s[o + j]!);
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(s[o + j]! - max);
      if (log) {
        const lse = max + Math.log(sum);
        for (let j = 0; j < cols; j++) d[o + j] = s[o + j]! - lse;
      } else for (let j = 0; j < cols; j++) d[o + j] = Math.exp(s[o + j]! - max) / sum;
    }
  }

  softmaxGrad(y: Storage, dy: Storage, rows: number, cols: number, log: boolean, out: Storage): void {
    const Y = y.data,
      G = dy.data,
      D = out.data;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let acc = 0;
      for (let j = 0; j < cols; j++) acc += log ? G[o + j]! : G[o + j]! * Y[o + j]!;
      for (let j = 0; j < cols; j++)
        D[o + j] = log ? G[o + j]! - Math.exp(Y[o + j]!) * acc : Y[o + j]! * (G[o + j]! - acc);
    }
  }

  layerNorm(
    x: Storage,
    weight: Storage | null,
    bias: Storage | null,
    rows: number,
    cols: number,
    eps: number,
    out: Storage,
    mean: Storage,
    rstd: Storage,
  ): void {
    const X = x.data,
      W = weight?.data,
      B = bias?.data,
      Y = out.data;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let mu = 0;
      for (let j = 0; j < cols; j++) mu += X[o + j]!;
      mu /= cols;
      let v = 0;
      for (let j = 0; j < cols; j++) {
        const c = X[o + j]! - mu;
        v += c * c;
      }
      const rs = 1 / Math.sqrt(v / cols + eps);
      mean.data[r] = mu;
      rstd.data[r] = rs;
      for (let j = 0; j < cols; j++) Y[o + j] = (X[o + j]! - mu) * rs * (W ? W[j]! : 1) + (B ? B[j]! : 0);
    }
  }

  layerNormGrad(
    x: Storage,
    weight: Storage | null,
    mean: Storage,
    rstd: Storage,
    dy: Storage,
    rows: number,
    cols: number,
    dx: Storage,
    dWeight: Storage | null,
    dBias: Storage | null,
  ): void {
    const X = x.data,
      W = weight?.data,
      G = dy.data,
      DX = dx.data;
    const dw = new Float64Array(cols),
      db = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols,
        mu = mean.data[r]!,
        rs = rstd.data[r]!;
      let sumG = 0,
        sumGX = 0;
      for (let j = 0; j < cols; j++) {
        const xhat = (X[o + j]! - mu) * rs;
        const g = G[o + j]! * (W ? W[j]! : 1);
        sumG += g;
        sumGX += g * xhat;
        dw[j]! += G[o + j]! * xhat;
        db[j]! += G[o + j]!;
      }
      for (let j = 0; j < cols; j++) {
        const xhat = (X[o + j]! - mu) * rs;
        const g = G[o + j]! * (W ? W[j]! : 1);
        DX[o + j] = rs * (g - sumG / cols - (xhat * sumGX) / cols);
      }
    }
    if (dWeight) dWeight.data.set(dw);
    if (dBias) dBias.data.set(db);
  }

  rmsNorm(
    x: Storage,
    weight: Storage | null,
    rows: number,
    cols: number,
    eps: number,
    out: Storage,
    rstd: Storage,
  ): void {
    const X = x.data,
      W = weight?.data,
      Y = out.data;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let ss = 0;
      for (let j = 0; j < cols; j++) ss += X[o + j]! * X[o + j]!;
      const rs = 1 / Math.sqrt(ss / cols + eps);
      rstd.data[r] = rs;
      for (let j = 0; j < cols; j++) Y[o + j] = X[o + j]! * rs * (W ? W[j]! : 1);
    }
  }

  rmsNormGrad(
    x: Storage,
    weight: Storage | null,
    rstd: Storage,
    dy: Storage,
    rows: number,
    cols: number,
    dx: Storage,
    dWeight: Storage | null,
  ): void {
    const X = x.data,
      W = weight?.data,
      G = dy.data,
      DX = dx.data;
    const dw = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols,
        rs = rstd.data[r]!;
      let dot = 0;
      for (let j = 0; j < cols; j++) {
        dot += G[o + j]! * (W ? W[j]! : 1) * X[o + j]!;
        dw[j]! += G[o + j]! * X[o + j]! * rs;
      }
      const c = (dot * rs * rs * rs) / cols;
      for (let j = 0; j < cols; j++) DX[o + j] = G[o + j]! * (W ? W[j]! : 1) * rs - X[o + j]! * c;
    }
    if (dWeight) dWeight.data.set(dw);
  }

  gather(src: Storage, outer: number, n: number, inner: number, ids: Storage, out: Storage): void {
    const S = src.data,
      I = ids.data,
      D = out.data,
      count = ids.size;
    const same = src.dtype === out.dtype,
      dec = decoder(src.dtype),
      enc = encoder(out.dtype);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < count; j++) {
        const id = I[j]!;
        checkIndex(id, n, "index");
        const so = (o * n + id) * inner,
          dOff = (o * count + j) * inner;
        if (same) D.set(S.subarray(so, so + inner), dOff);
        else for (let i = 0; i < inner; i++) D[dOff + i] = enc(dec(S[so + i]!));
      }
    }
  }

  scatterAdd(src: Storage, outer: number, n: number, inner: number, ids: Storage, out: Storage): void {
    const S = src.data,
      I = ids.data,
      D = out.data,
      count = ids.size;
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < count; j++) {
        const id = I[j]!;
        checkIndex(id, n, "index");
        const so = (o * count + j) * inner,
          dOff = (o * n + id) * inner;
        for (let i = 0; i < inner; i++) D[dOff + i]! += S[so + i]!;
      }
    }
  }

  crossEntropy(
    logits: Storage,
    targets: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
    loss: Storage,
    lse: Storage,
  ): void {
    const L = logits.data,
      T = targets.data;
    for (let r = 0; r < rows; r++) {
      const o = r * cols,
        t = T[r]!;
      let max = -Infinity;
      for (let j = 0; j < cols; j++) max = Math.max(max, L[o + j]!);
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(L[o + j]! - max);
      const l = max + Math.log(sum);
      lse.data[r] = l;
      if (t === ignoreIndex) {
        loss.data[r] = 0;
        continue;
      }
      checkIndex(t, cols, "target class");
      loss.data[r] = l - L[o + t]!;
    }
  }

  crossEntropyGrad(
    logits: Storage,
    targets: Storage,
    lse: Storage,
    dLoss: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
    out: Storage,
  ): void {
    const L = logits.data,
      T = targets.data,
      D = out.data;
    for (let r = 0; r < rows; r++) {
      const o = r * cols,
        t = T[r]!;
      if (t === ignoreIndex) {
        D.fill(0, o, o + cols);
        continue;
      }
      checkIndex(t, cols, "target class");
      const g = dLoss.data[r]!,
        l = lse.data[r]!;
      for (let j = 0; j < cols; j++) D[o + j] = Math.exp(L[o + j]! - l) * g;
      D[o + t]! -= g;
    }
  }

  assign(src: View, dst: View, accumulate: boolean): void {
    const s = src.storage.data,
      d = dst.storage.data;
    const so = rowOffsets(src),
      dOff = rowOffsets(dst);
    const [len, ss] = innerAxis(src),
      [, ds] = innerAxis(dst);
    for (let r = 0; r < so.length; r++) {
      for (let j = 0; j < len; j++) {
        const at = dOff[r]! + j * ds;
        d[at] = accumulate ? d[at]! + s[so[r]! + j * ss]! : s[so[r]! + j * ss]!;
      }
    }
  }

  dropout(x: View, keep: number, scale: number, seed: number, counter: number, out: Storage): void {
    const s = x.storage.data,
      d = out.data,
      m = Math.fround(scale);
    const offs = rowOffsets(x),
      [len, st] = innerAxis(x);
    let i = 0;
    for (let r = 0; r < offs.length; r++) {
      for (let j = 0; j < len; j++, i++) d[i] = s[offs[r]! + j * st]! * (uniformAt(seed, counter + i) < keep ? m : 0);
    }
  }

  maskedSoftmax(x: Storage, shape: readonly number[], mask: View | null, out: Storage): void {
    const cols = shape.length === 0 ? 1 : shape[shape.length - 1]!;
    const rows = cols === 0 ? 0 : numel(shape) / cols;
    const src = x.data,
      d = out.data,
      row = new Float64Array(cols);
    const mOff = mask ? rowOffsets(mask) : null,
      ms = mask ? innerAxis(mask)[1] : 0;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let max = -Infinity;
      for (let j = 0; j < cols; j++) {
        row[j] = mask ? Math.fround(src[o + j]! + mask.storage.data[mOff![r]! + j * ms]!) : src[o + j]!;
        max = Math.max(max, row[j]!);
      }
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(row[j]! - max);
      for (let j = 0; j < cols; j++) d[o + j] = Math.exp(row[j]! - max) / sum;
    }
  }

  rotary(x: View, cos: View, sin: View, out: View, transpose: boolean): void {
    const X = x.storage.data,
      C = cos.storage.data,
      S = sin.storage.data,
      O = out.storage.data;
    const xo = rowOffsets(x),
      co = rowOffsets(cos),
      so = rowOffsets(sin),
      oo = rowOffsets(out);
    const [D, sx] = innerAxis(x),
      sc = innerAxis(cos)[1],
      ss = innerAxis(sin)[1],
      sd = innerAxis(out)[1];
    const h = D / 2,
      f = Math.fround;
    for (let r = 0; r < xo.length; r++) {
      const xv = (j: number) => X[xo[r]! + j * sx]!,
        c = (j: number) => C[co[r]! + j * sc]!,
        s = (j: number) => S[so[r]! + j * ss]!;
      for (let j = 0; j < D; j++) {
        const xc = f(xv(j) * c(j));
        let v: number;
        if (!transpose) v = j < h ? xc + f(-xv(j + h) * s(j)) : xc + f(xv(j - h) * s(j));
        else v = j < h ? xc + f(xv(j + h) * s(j + h)) : xc - f(xv(j - h) * s(j - h));
        O[oo[r]! + j * sd] = v;
      }
    }
  }

  quantMatmul(x: Storage, rows: number, w: QuantizedMatrix, transpose: boolean, out: Storage): void {
    quantMatmulJs(floats(x, "quantMatmul"), rows, w, transpose, floats(out, "quantMatmul"));
  }

  int8Linear(x: Storage, rows: number, w: QuantizedInt8, threshold: number, bias: Storage | null, out: Storage): void {
    int8LinearJs(
      floats(x, "int8Linear"),
      rows,
      w,
      threshold,
      bias ? floats(bias, "int8Linear") : null,
      floats(out, "int8Linear"),
    );
  }

  quantize4bit(
    values: Float32Array,
    quantType: QuantType4,
    blocksize: number,
    packed: Uint8Array,
    absmax: Float32Array,
  ): void {
    quantize4bitJs(values, quantType, blocksize, packed, absmax);
  }

  adamw(param: Storage, grad: Storage, expAvg: Storage, expAvgSq: Storage, hp: AdamWStep): void {
    const P = param.data,
      G = grad.data,
      M = expAvg.data,
      V = expAvgSq.data;
    const bc1 = 1 - hp.beta1 ** hp.step,
      bc2 = 1 - hp.beta2 ** hp.step;
    const stepSize = hp.lr / bc1,
      bc2Sqrt = Math.sqrt(bc2),
      decay = 1 - hp.lr * hp.weightDecay;
    for (let i = 0; i < P.length; i++) {
      const g = G[i]!;
      P[i]! *= decay;
      M[i] = hp.beta1 * M[i]! + (1 - hp.beta1) * g;
      V[i] = hp.beta2 * V[i]! + (1 - hp.beta2) * g * g;
      P[i]! -= (stepSize * M[i]!) / (Math.sqrt(V[i]!) / bc2Sqrt + hp.eps);
    }
  }
}
