/**
 * The native backend: the same kernels as the js backend, in C++ with OpenMP threads and OpenBLAS GEMM
 * (build/Release/peft_ts_native.node, built by `npm install`; sources beside this file).
 *
 * Storages are the js backend's CpuStorage (plain typed arrays from the same kind of pool), so tensors and
 * tests can hand them to either backend. Shapes, strides and offsets travel to the addon packed in one reused
 * Float64Array rather than as JS arrays. The addon covers float32 compute and the int32 cases the tensor layer
 * uses (copies with conversion, fill, arange, random, gather/scatterAdd of int32 tensors); anything rarer (an int32
 * operand to a float kernel) goes to the js kernels on the same storages, so every call keeps the reference's
 * semantics.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
import { JsBackend } from "../js/js-backend.js";
import { int8LinearJs } from "../js/quant-kernels.js";
import type { QuantType4, QuantizedInt8, QuantizedMatrix } from "../quant.js";
import { PooledBackend } from "../pool.js";
import { envChoice, envInteger } from "../env.js";

type Data = StorageData;
type Nullable = Data | null;

/** The addon's exports (src/backend/native/addon.cc). */
interface Addon {
  copy(x: Data, meta: Float64Array, out: Data): void;
  convertHalf(src: Data, srcOffset: number, dst: Data, n: number, kind: number): void;
  fill(out: Data, value: number): void;
  arange(out: Data, start: number, step: number): void;
  random(out: Data, kind: number, a: number, b: number, seed: number, counter: number): void;
  unary(op: number, x: Data, meta: Float64Array, out: Data): void;
  unaryGrad(op: number, x: Data, dy: Data, meta: Float64Array, out: Data): void;
  binary(op: number, a: Data, b: Data, meta: Float64Array, out: Data): void;
  where(cond: Data, a: Data, b: Data, meta: Float64Array, out: Data): void;
  reduce(op: number, x: Data, meta: Float64Array, out: Data): void;
  argmax(x: Data, outer: number, n: number, inner: number, out: Data): void;
  gemm(a: Data, b: Data, out: Data, meta: Float64Array, alpha: number, bias: Nullable): void;
  softmax(x: Data, rows: number, cols: number, log: boolean, out: Data): void;
  softmaxGrad(y: Data, dy: Data, rows: number, cols: number, log: boolean, out: Data): void;
  layerNorm(
    x: Data,
    w: Nullable,
    b: Nullable,
    rows: number,
    cols: number,
    eps: number,
    out: Data,
    mean: Data,
    rstd: Data,
  ): void;
  layerNormGrad(
    x: Data,
    w: Nullable,
    mean: Data,
    rstd: Data,
    dy: Data,
    rows: number,
    cols: number,
    dx: Data,
    dw: Nullable,
    db: Nullable,
  ): void;
  rmsNorm(x: Data, w: Nullable, rows: number, cols: number, eps: number, out: Data, rstd: Data): void;
  rmsNormGrad(x: Data, w: Nullable, rstd: Data, dy: Data, rows: number, cols: number, dx: Data, dw: Nullable): void;
  gather(src: Data, outer: number, n: number, inner: number, ids: Data, out: Data): void;
  scatterAdd(src: Data, outer: number, n: number, inner: number, ids: Data, out: Data): void;
  crossEntropy(
    logits: Data,
    targets: Data,
    rows: number,
    cols: number,
    ignoreIndex: number,
    loss: Data,
    lse: Data,
  ): void;
  crossEntropyGrad(
    logits: Data,
    targets: Data,
    lse: Data,
    dLoss: Data,
    rows: number,
    cols: number,
    ignoreIndex: number,
    out: Data,
  ): void;
  adamw(
    p: Data,
    g: Data,
    m: Data,
    v: Data,
    beta1: number,
    beta2: number,
    eps: number,
    stepSize: number,
    bc2Sqrt: number,
    decay: number,
  ): void;
  assign(src: Data, dst: Data, meta: Float64Array, accumulate: boolean): void;
  dropout(x: Data, meta: Float64Array, out: Data, keep: number, scale: number, seed: number, counter: number): void;
  maskedSoftmax(x: Data, mask: Nullable, meta: Float64Array, out: Data): void;
  rotary(x: Data, cos: Data, sin: Data, out: Data, meta: Float64Array, transpose: boolean): void;
  quantMatmul(
    x: Data,
    rows: number,
    transpose: boolean,
    out: Data,
    n: number,
    k: number,
    packedOrInt8: Uint8Array | Int8Array,
    absmaxOrScb: Float32Array | null,
    code: Float32Array | null,
    blocksize: number,
    nestedCodes: Uint8Array | null,
    nestedAbsmax: Float32Array | null,
    nestedCode: Float32Array | null,
    nestedBlocksize: number,
    offset: number,
    compute: number,
  ): void;
  int8Product(a: Int8Array, rows: number, b: Int8Array, n: number, k: number, acc: Int32Array): void;
  quantize4bit(values: Float32Array, nf4: boolean, blocksize: number, packed: Uint8Array, absmax: Float32Array): void;
  threads(): number;
  threadStats(): ThreadStats;
  setThreads(n: number): void;
  threadLimit(): number;
  setAdaptiveThreads(on: boolean): void;
  readonly unaryOps: readonly string[];
  readonly unaryGradOps: readonly string[];
  readonly binaryOps: readonly string[];
  readonly reduceOps: readonly string[];
  readonly randomKinds: readonly string[];
  readonly blas: string;
}

/** The package root: the nearest directory above this module with a package.json (works from src/ and dist/src/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

/** Path of the compiled addon. */
export function addonPath(): string {
  return join(packageRoot(), "build", "Release", "peft_ts_native.node");
}

let addon: Addon | null = null;

function loadAddon(): Addon {
  if (addon) return addon;
  const path = addonPath();
  if (!existsSync(path)) throw new Error(`the addon ${path} is not built (npm install runs node-gyp; see its output)`);
  let loaded: Addon;
  try {
    loaded = createRequire(import.meta.url)(path) as Addon;
  } catch (err) {
    throw new Error(`the addon ${path} failed to load: ${(err as Error).message}`);
  }
  applyThreadEnvironment(loaded);
  addon = loaded;
  return loaded;
}

/**
 * PEFT_TS_THREADS (1 to 4 × the machine's cores: more threads than that only wait for cores) and
 * PEFT_TS_ADAPTIVE_THREADS ("0" or "1"); an EnvironmentError for anything else.
 */
export function applyThreadEnvironment(a: Addon): void {
  const n = envInteger("PEFT_TS_THREADS", 1, a.threadLimit(), "the thread count (at most 4 per core of this machine)");
  const adaptive = envChoice("PEFT_TS_ADAPTIVE_THREADS", ["0", "1"], "the adaptive thread count switch");
  if (n !== undefined) a.setThreads(n);
  a.setAdaptiveThreads(adaptive !== "0");
}

/** Load the native backend; throws an Error saying why when the addon is missing or does not load. */
export function loadNativeBackend(): Backend {
  return new NativeBackend(loadAddon());
}

/** Threads the native kernels use (PEFT_TS_THREADS, else OMP_NUM_THREADS, else the number of cores). */
export function threads(): number {
  return loadAddon().threads();
}

/** How the adaptive thread count (see common.h) behaved: parallel regions, how many started a thread late (> 1 ms,
 * a core held by another process), regions run on one thread because of that, mean and max lateness. */
export interface ThreadStats {
  parallel: number;
  late: number;
  serial: number;
  lateMeanMs: number;
  lateMaxMs: number;
}

/** The adaptive thread count's counters since the addon loaded. */
export function threadStats(): ThreadStats {
  return loadAddon().threadStats();
}

/** Change the number of threads of the native kernels (1 to threadLimit()); results do not depend on it. */
export function setThreads(n: number): void {
  loadAddon().setThreads(n);
}

/** Turn the adaptive thread count (one thread while other processes hold the cores) on or off. */
export function setAdaptiveThreads(on: boolean): void {
  loadAddon().setAdaptiveThreads(on);
}

/** The most threads setThreads and PEFT_TS_THREADS accept: 4 × the machine's cores. */
export function threadLimit(): number {
  return loadAddon().threadLimit();
}

/** Which BLAS the addon was built with (OpenBLAS's configuration string, or "Accelerate"). */
export function blasInfo(): string {
  return loadAddon().blas;
}

function indexOf(names: readonly string[]): Map<string, number> {
  return new Map(names.map((n, i) => [n, i]));
}

function opIndex(map: Map<string, number>, op: string, what: string): number {
  const i = map.get(op);
  if (i === undefined) throw new Error(`native backend: unknown ${what} "${op}"`);
  return i;
}

const isF32 = (s: Storage): boolean => s.dtype === "float32";
/** Whether a view reads its elements row-major without gaps from its offset on. */
function isDense(v: View): boolean {
  let expected = 1;
  for (let d = v.shape.length - 1; d >= 0; d--) {
    if (v.shape[d] !== 1 && v.strides[d] !== expected) return false;
    expected *= v.shape[d]!;
  }
  return true;
}

/** The addon's code for a half operand's element type (absent: float32). */
const HALF_KIND: Partial<Record<DType, number>> = { bfloat16: 1, float16: 2 };
/** The dtypes the addon's generic kernels (copy, fill, arange, random, gather, assign) take. */
const isWord = (s: Storage): boolean => s.dtype === "float32" || s.dtype === "int32";

/** The Backend implemented by the addon. */
export class NativeBackend extends PooledBackend implements Backend {
  readonly name = "native";
  /** Kernels for dtype combinations the addon does not specialise (int32 operands of float kernels). */
  private readonly js = new JsBackend();
  private readonly unaryOps: Map<string, number>;
  private readonly unaryGradOps: Map<string, number>;
  private readonly binaryOps: Map<string, number>;
  private readonly reduceOps: Map<string, number>;
  private readonly randomKinds: Map<string, number>;
  /** Scratch for packed view descriptions, grown on demand. */
  private meta = new Float64Array(64);

  constructor(private readonly addon: Addon) {
    super();
    this.unaryOps = indexOf(addon.unaryOps);
    this.unaryGradOps = indexOf(addon.unaryGradOps);
    this.binaryOps = indexOf(addon.binaryOps);
    this.reduceOps = indexOf(addon.reduceOps);
    this.randomKinds = indexOf(addon.randomKinds);
  }

  write(storage: Storage, values: ArrayLike<number>, offset = 0): void {
    this.js.write(storage, values, offset);
  }
  read(storage: Storage): StorageData {
    return storage.data.slice();
  }

  /** Packs views that share views[0]'s shape as [nd, shape…, then per view: offset, strides…], then `extra`. */
  private pack(views: readonly View[], extra?: readonly boolean[]): Float64Array {
    const shape = views[0]!.shape,
      nd = shape.length;
    const len = 1 + nd + views.length * (1 + nd) + (extra ? nd : 0);
    if (this.meta.length < len) this.meta = new Float64Array(Math.max(len, 2 * this.meta.length));
    const m = this.meta;
    m[0] = nd;
    for (let d = 0; d < nd; d++) m[1 + d] = shape[d]!;
    let k = 1 + nd;
    for (const v of views) {
      m[k++] = v.offset;
      for (let d = 0; d < nd; d++) m[k++] = v.strides[d]!;
    }
    if (extra) for (let d = 0; d < nd; d++) m[k++] = extra[d] ? 1 : 0;
    return m;
  }

  copy(x: View, out: Storage): void {
    const kind = HALF_KIND[x.storage.dtype] ?? HALF_KIND[out.dtype];
    if (kind && (isF32(x.storage) || isF32(out)) && isDense(x)) {
      return this.addon.convertHalf(
        x.storage.data,
        x.offset,
        out.data,
        x.shape.reduce((a, b) => a * b, 1),
        kind,
      );
    }
    if (!isWord(x.storage) || !isWord(out)) return this.js.copy(x, out);
    this.addon.copy(x.storage.data, this.pack([x]), out.data);
  }

  fill(out: Storage, value: number): void {
    if (!isWord(out)) return this.js.fill(out, value);
    this.addon.fill(out.data, value);
  }

  arange(out: Storage, start: number, step: number): void {
    if (!isWord(out)) return this.js.arange(out, start, step);
    this.addon.arange(out.data, start, step);
  }

  random(
    out: Storage,
    kind: "uniform" | "normal" | "bernoulli",
    a: number,
    b: number,
    seed: number,
    counter: number,
  ): void {
    if (!isWord(out)) return this.js.random(out, kind, a, b, seed, counter);
    this.addon.random(out.data, opIndex(this.randomKinds, kind, "random kind"), a, b, seed, counter);
  }

  unary(op: UnaryOp, x: View, out: Storage): void {
    if (!isF32(x.storage) || !isF32(out)) return this.js.unary(op, x, out);
    this.addon.unary(opIndex(this.unaryOps, op, "unary op"), x.storage.data, this.pack([x]), out.data);
  }

  unaryGrad(op: UnaryGradOp, x: View, dy: View, out: Storage): void {
    if (!isF32(x.storage) || !isF32(dy.storage) || !isF32(out)) return this.js.unaryGrad(op, x, dy, out);
    this.addon.unaryGrad(
      opIndex(this.unaryGradOps, op, "unaryGrad op"),
      x.storage.data,
      dy.storage.data,
      this.pack([x, dy]),
      out.data,
    );
  }

  binary(op: BinaryOp, a: View, b: View, out: Storage): void {
    if (!isF32(a.storage) || !isF32(b.storage) || !isF32(out)) return this.js.binary(op, a, b, out);
    this.addon.binary(
      opIndex(this.binaryOps, op, "binary op"),
      a.storage.data,
      b.storage.data,
      this.pack([a, b]),
      out.data,
    );
  }

  where(cond: View, a: View, b: View, out: Storage): void {
    if (!isF32(a.storage) || !isF32(b.storage) || !isF32(out)) return this.js.where(cond, a, b, out);
    this.addon.where(cond.storage.data, a.storage.data, b.storage.data, this.pack([cond, a, b]), out.data);
  }

  reduce(op: ReduceOp, x: View, keep: readonly boolean[], out: Storage): void {
    if (!isF32(x.storage) || !isF32(out)) return this.js.reduce(op, x, keep, out);
    this.addon.reduce(opIndex(this.reduceOps, op, "reduce op"), x.storage.data, this.pack([x], keep), out.data);
  }

  argmax(x: Storage, outer: number, n: number, inner: number, out: Storage): void {
    if (!isF32(x) || out.dtype !== "int32") return this.js.argmax(x, outer, n, inner, out);
    this.addon.argmax(x.data, outer, n, inner, out.data);
  }

  gemm(g: GemmSpec): void {
    const operand = (s: Storage) => isF32(s) || isHalf(s.dtype);
    if (!operand(g.a) || !operand(g.b) || !isF32(g.out) || (g.bias && !isF32(g.bias))) return this.js.gemm(g);
    const nb = g.batchShape.length,
      len = 16 + 4 * nb;
    if (this.meta.length < len) this.meta = new Float64Array(Math.max(len, 2 * this.meta.length));
    const m = this.meta;
    m[0] = g.aOffset;
    m[1] = g.transA ? 1 : 0;
    m[2] = g.lda;
    m[3] = g.bOffset;
    m[4] = g.transB ? 1 : 0;
    m[5] = g.ldb;
    m[6] = g.m;
    m[7] = g.n;
    m[8] = g.k;
    m[9] = g.accumulate ? 1 : 0;
    m[10] = g.outOffset ?? 0;
    m[11] = g.ldc ?? g.n;
    m[12] = g.biasOffset ?? 0;
    m[13] = nb;
    const outStrides = g.outBatchStrides ?? contiguousOutStrides(g.batchShape, g.m, g.n);
    for (let d = 0; d < nb; d++) {
      m[14 + d] = g.batchShape[d]!;
      m[14 + nb + d] = g.aBatchStrides[d]!;
      m[14 + 2 * nb + d] = g.bBatchStrides[d]!;
      m[14 + 3 * nb + d] = outStrides[d]!;
    }
    m[14 + 4 * nb] = HALF_KIND[g.a.dtype] ?? 0;
    m[15 + 4 * nb] = HALF_KIND[g.b.dtype] ?? 0;
    this.addon.gemm(g.a.data, g.b.data, g.out.data, m, g.alpha ?? 1, g.bias?.data ?? null);
  }

  softmax(x: Storage, rows: number, cols: number, log: boolean, out: Storage): void {
    if (!isF32(x) || !isF32(out)) return this.js.softmax(x, rows, cols, log, out);
    this.addon.softmax(x.data, rows, cols, log, out.data);
  }

  softmaxGrad(y: Storage, dy: Storage, rows: number, cols: number, log: boolean, out: Storage): void {
    if (!isF32(y) || !isF32(dy) || !isF32(out)) return this.js.softmaxGrad(y, dy, rows, cols, log, out);
    this.addon.softmaxGrad(y.data, dy.data, rows, cols, log, out.data);
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
    if (![x, weight, bias, out, mean, rstd].every((s) => !s || isF32(s))) {
      return this.js.layerNorm(x, weight, bias, rows, cols, eps, out, mean, rstd);
    }
    this.addon.layerNorm(
      x.data,
      weight?.data ?? null,
      bias?.data ?? null,
      rows,
      cols,
      eps,
      out.data,
      mean.data,
      rstd.data,
    );
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
    if (![x, weight, mean, rstd, dy, dx, dWeight, dBias].every((s) => !s || isF32(s))) {
      return this.js.layerNormGrad(x, weight, mean, rstd, dy, rows, cols, dx, dWeight, dBias);
    }
    this.addon.layerNormGrad(
      x.data,
      weight?.data ?? null,
      mean.data,
      rstd.data,
      dy.data,
      rows,
      cols,
      dx.data,
      dWeight?.data ?? null,
      dBias?.data ?? null,
    );
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
    if (![x, weight, out, rstd].every((s) => !s || isF32(s)))
      return this.js.rmsNorm(x, weight, rows, cols, eps, out, rstd);
    this.addon.rmsNorm(x.data, weight?.data ?? null, rows, cols, eps, out.data, rstd.data);
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
    if (![x, weight, rstd, dy, dx, dWeight].every((s) => !s || isF32(s))) {
      return this.js.rmsNormGrad(x, weight, rstd, dy, rows, cols, dx, dWeight);
    }
    this.addon.rmsNormGrad(
      x.data,
      weight?.data ?? null,
      rstd.data,
      dy.data,
      rows,
      cols,
      dx.data,
      dWeight?.data ?? null,
    );
  }

  gather(src: Storage, outer: number, n: number, inner: number, ids: Storage, out: Storage): void {
    if (src.dtype !== out.dtype || !isWord(src) || ids.dtype !== "int32")
      return this.js.gather(src, outer, n, inner, ids, out);
    this.addon.gather(src.data, outer, n, inner, ids.data, out.data);
  }

  scatterAdd(src: Storage, outer: number, n: number, inner: number, ids: Storage, out: Storage): void {
    if (src.dtype !== out.dtype || !isWord(src) || ids.dtype !== "int32")
      return this.js.scatterAdd(src, outer, n, inner, ids, out);
    this.addon.scatterAdd(src.data, outer, n, inner, ids.data, out.data);
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
    if (!isF32(logits) || targets.dtype !== "int32" || !isF32(loss) || !isF32(lse)) {
      return this.js.crossEntropy(logits, targets, rows, cols, ignoreIndex, loss, lse);
    }
    this.addon.crossEntropy(logits.data, targets.data, rows, cols, ignoreIndex, loss.data, lse.data);
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
    if (!isF32(logits) || targets.dtype !== "int32" || !isF32(lse) || !isF32(dLoss) || !isF32(out)) {
      return this.js.crossEntropyGrad(logits, targets, lse, dLoss, rows, cols, ignoreIndex, out);
    }
    this.addon.crossEntropyGrad(logits.data, targets.data, lse.data, dLoss.data, rows, cols, ignoreIndex, out.data);
  }

  assign(src: View, dst: View, accumulate: boolean): void {
    if (src.storage.dtype !== dst.storage.dtype || !isWord(dst.storage) || (accumulate && !isF32(dst.storage)))
      return this.js.assign(src, dst, accumulate);
    this.addon.assign(src.storage.data, dst.storage.data, this.pack([dst, src]), accumulate);
  }

  dropout(x: View, keep: number, scale: number, seed: number, counter: number, out: Storage): void {
    if (!isF32(x.storage) || !isF32(out)) return this.js.dropout(x, keep, scale, seed, counter, out);
    this.addon.dropout(x.storage.data, this.pack([x]), out.data, keep, scale, seed, counter);
  }

  maskedSoftmax(x: Storage, shape: readonly number[], mask: View | null, out: Storage): void {
    if (!isF32(x) || !isF32(out) || (mask && !isF32(mask.storage))) return this.js.maskedSoftmax(x, shape, mask, out);
    const view = mask ?? { storage: x, shape, strides: shape.map(() => 0), offset: 0 };
    this.addon.maskedSoftmax(x.data, mask ? mask.storage.data : null, this.pack([view]), out.data);
  }

  rotary(x: View, cos: View, sin: View, out: View, transpose: boolean): void {
    if (![x, cos, sin, out].every((v) => isF32(v.storage))) return this.js.rotary(x, cos, sin, out, transpose);
    this.addon.rotary(
      x.storage.data,
      cos.storage.data,
      sin.storage.data,
      out.storage.data,
      this.pack([x, cos, sin, out]),
      transpose,
    );
  }

  quantMatmul(x: Storage, rows: number, w: QuantizedMatrix, transpose: boolean, out: Storage): void {
    if (!isF32(x) || !isF32(out)) return this.js.quantMatmul(x, rows, w, transpose, out);
    if (w.format === "int8") {
      return this.addon.quantMatmul(
        x.data,
        rows,
        transpose,
        out.data,
        w.n,
        w.k,
        w.w.data,
        w.w.scb,
        null,
        0,
        null,
        null,
        null,
        0,
        0,
        0,
      );
    }
    const q = w.q,
      nested = q.nested;
    this.addon.quantMatmul(
      x.data,
      rows,
      transpose,
      out.data,
      w.n,
      w.k,
      q.packed,
      q.absmax,
      q.code,
      q.blocksize,
      nested?.codes ?? null,
      nested?.absmax ?? null,
      nested?.code ?? null,
      nested?.blocksize ?? 0,
      nested?.offset ?? 0,
      HALF_KIND[w.compute ?? "float32"] ?? 0,
    );
  }

  int8Linear(x: Storage, rows: number, w: QuantizedInt8, threshold: number, bias: Storage | null, out: Storage): void {
    if (!isF32(x) || !isF32(out) || (bias && !isF32(bias))) return this.js.int8Linear(x, rows, w, threshold, bias, out);
    int8LinearJs(
      x.data as Float32Array,
      rows,
      w,
      threshold,
      (bias?.data as Float32Array | undefined) ?? null,
      out.data as Float32Array,
      (a, r, b, n, k, acc) => this.addon.int8Product(a, r, b, n, k, acc),
    );
  }

  quantize4bit(
    values: Float32Array,
    quantType: QuantType4,
    blocksize: number,
    packed: Uint8Array,
    absmax: Float32Array,
  ): void {
    this.addon.quantize4bit(values, quantType === "nf4", blocksize, packed, absmax);
  }

  adamw(param: Storage, grad: Storage, expAvg: Storage, expAvgSq: Storage, hp: AdamWStep): void {
    if (![param, grad, expAvg, expAvgSq].every(isF32)) return this.js.adamw(param, grad, expAvg, expAvgSq, hp);
    // The step's scalars exactly as the reference computes them (Math.pow and friends), so the kernel matches it.
    const bc1 = 1 - hp.beta1 ** hp.step,
      bc2 = 1 - hp.beta2 ** hp.step;
    this.addon.adamw(
      param.data,
      grad.data,
      expAvg.data,
      expAvgSq.data,
      hp.beta1,
      hp.beta2,
      hp.eps,
      hp.lr / bc1,
      Math.sqrt(bc2),
      1 - hp.lr * hp.weightDecay,
    );
  }
}
