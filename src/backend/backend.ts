/**
 * The Backend interface: the only place where tensor values are touched.
 *
 * The tensor layer (src/tensor) owns shapes, strides, autograd and memory scopes; a backend owns storages and
 * the kernels that read and write them. Kernels never allocate their outputs: the caller passes a storage of
 * the right size (taken from the backend's pool), and every kernel overwrites all of its output unless its doc
 * says it accumulates. Outputs are always contiguous (row-major); inputs are strided views, so transposes,
 * slices and broadcasts (stride 0) reach kernels without copies.
 *
 * Nothing here is Node-specific, and kernels return nothing, so a future asynchronous (WebGPU) backend can
 * queue work and only synchronise in `read`.
 */

import type { QuantType4, QuantizedInt8, QuantizedMatrix } from "./quant.js";

/**
 * Element types a storage can hold: float32 for compute, int32 for token ids, labels and indices; bfloat16 and
 * float16 (raw bits in a Uint16Array) for frozen weights kept in half precision; uint8 for packed quantised bytes.
 * Kernels compute in float32: `copy` converts between every pair of dtypes, and ops read other dtypes through it.
 */
export type DType = "float32" | "int32" | "bfloat16" | "float16" | "uint8";

/** The typed arrays storages keep their elements in (16-bit floats as their bit patterns). */
export type StorageData = Float32Array | Int32Array | Uint16Array | Uint8Array;

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { float32: 4, int32: 4, bfloat16: 2, float16: 2, uint8: 1 };

/** Whether a dtype is one of the 16-bit float formats. */
export function isHalf(dtype: DType): dtype is "bfloat16" | "float16" {
  return dtype === "bfloat16" || dtype === "float16";
}

/** A flat buffer of elements owned by a backend. CPU backends keep the values in `data`. */
export interface Storage {
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** The elements (CPU backends; 16-bit floats as bits); kernels of other backends may keep them elsewhere. */
  readonly data: StorageData;
}

/** A strided window on a storage: element (i0, i1, …) lives at offset + Σ ik·strides[k]. */
export interface View {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/** Element-wise functions of one argument. */
export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "abs"
  | "square"
  | "reciprocal"
  | "tanh"
  | "sigmoid"
  | "relu"
  | "gelu"
  | "gelu_tanh"
  | "silu"
  | "sin"
  | "cos";

/** Unary ops whose derivative a kernel computes directly: out = dy · f'(x). */
export type UnaryGradOp = "tanh" | "sigmoid" | "relu" | "gelu" | "gelu_tanh" | "silu";

/** Element-wise functions of two arguments; comparisons write 1 or 0. */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "pow" | "max" | "min" | "eq" | "ne" | "lt" | "le" | "gt" | "ge";

/** Reductions over a set of axes. */
export type ReduceOp = "sum" | "max" | "min";

/**
 * One (batched) matrix product out[b] = alpha·A[b]·B[b] (+ bias, broadcast over rows) (+ out[b] when accumulate),
 * A[b] is m×k, B[b] is k×n.
 * A matrix is addressed BLAS-style: element (i, j) of A at aOffset + batchOffset + (transA ? j·lda + i : i·lda + j).
 * Batch index b walks `batchShape` row-major; its offset in A is Σ bk·aBatchStrides[k] (0 strides broadcast).
 * The output is contiguous [...batchShape, m, n] unless outOffset/ldc/outBatchStrides say otherwise: element (i, j)
 * of item b at outOffset + Σ bk·outBatchStrides[k] + i·ldc + j (items must not overlap; other elements are untouched).
 * a and b are float32, or bfloat16/float16 (frozen half weights): their values are widened to float32 and the
 * products accumulate in float32. out and bias are float32.
 */
export interface GemmSpec {
  readonly a: Storage;
  readonly aOffset: number;
  readonly transA: boolean;
  readonly lda: number;
  readonly aBatchStrides: readonly number[];
  readonly b: Storage;
  readonly bOffset: number;
  readonly transB: boolean;
  readonly ldb: number;
  readonly bBatchStrides: readonly number[];
  readonly batchShape: readonly number[];
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** The output (contiguous [...batchShape, m, n] by default). */
  readonly out: Storage;
  /** Add into `out` instead of overwriting it. */
  readonly accumulate: boolean;
  /** Multiplies the product (default 1). */
  readonly alpha?: number;
  /** A row of n values added to every output row (at biasOffset, default 0), or null. */
  readonly bias?: Storage | null;
  readonly biasOffset?: number;
  /** Output addressing (defaults: 0, n, contiguous strides of [...batchShape, m, n]). */
  readonly outOffset?: number;
  readonly ldc?: number;
  readonly outBatchStrides?: readonly number[];
}

/** Contiguous batch strides of an output [...batchShape, m, n]. */
export function contiguousOutStrides(batchShape: readonly number[], m: number, n: number): number[] {
  const s = new Array<number>(batchShape.length);
  let acc = m * n;
  for (let d = batchShape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= batchShape[d]!;
  }
  return s;
}

/** Hyper-parameters of one fused AdamW update (PyTorch semantics). */
export interface AdamWStep {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** 1-based step number, for bias correction. */
  readonly step: number;
}

/** The kernels every backend provides. */
export interface Backend {
  readonly name: string;

  /** A storage of `size` elements; its contents are unspecified (pooled buffers are reused). */
  alloc(dtype: DType, size: number): Storage;
  /** Give a storage back to the pool; it must not be used afterwards. */
  release(storage: Storage): void;
  /** Drop the pooled free buffers, e.g. after loading a model, whose one-off sizes a training step never reuses. */
  trimPool(): void;
  /** Bytes currently held by the pool, ready for reuse. */
  pooledBytes(): number;
  /**
   * Keep at most `bytes` of free buffers in the pool (default PEFT_TS_POOL_MB, else 2 GiB): a long-running server,
   * which frees buffers of ever new sizes, bounds its memory so.
   */
  setPoolLimit(bytes: number): void;
  /** Copy values from the host into a storage (rounded to nearest even for 16-bit floats). */
  write(storage: Storage, values: ArrayLike<number>, offset?: number): void;
  /** The elements of a storage (a copy; 16-bit floats as their bits). */
  read(storage: Storage): StorageData;

  /**
   * out = contiguous copy of the view, converting between dtypes when they differ: to 16-bit floats rounded to
   * nearest even, to integers truncated toward zero (uint8 keeps the low 8 bits); same-dtype copies keep the bits.
   */
  copy(x: View, out: Storage): void;
  /** Every element of out = value. */
  fill(out: Storage, value: number): void;
  /** out[i] = start + i·step. */
  arange(out: Storage, start: number, step: number): void;
  /**
   * Counter-based random numbers (reproducible on every backend): element i depends only on (seed, counter + i).
   * "uniform": a + (b − a)·u with u in [0, 1); "normal": a + b·z with z ~ N(0, 1); "bernoulli": (u < a ? b : 0).
   */
  random(
    out: Storage,
    kind: "uniform" | "normal" | "bernoulli",
    a: number,
    b: number,
    seed: number,
    counter: number,
  ): void;

  /** out = f(x), element-wise, out contiguous in x's shape. */
  unary(op: UnaryOp, x: View, out: Storage): void;
  /** out = dy · f'(x); x and dy have the same shape. */
  unaryGrad(op: UnaryGradOp, x: View, dy: View, out: Storage): void;
  /** out = a ∘ b; a and b are already broadcast to out's shape (stride 0 on broadcast axes). */
  binary(op: BinaryOp, a: View, b: View, out: Storage): void;
  /** out = cond ≠ 0 ? a : b; all three already broadcast to out's shape. */
  where(cond: View, a: View, b: View, out: Storage): void;
  /** out = reduction of x over the axes where keep[axis] is false; out is x's shape with those axes set to 1. */
  reduce(op: ReduceOp, x: View, keep: readonly boolean[], out: Storage): void;
  /** out (int32, [outer, inner]) = index of the maximum along the middle axis of contiguous [outer, n, inner]. */
  argmax(x: Storage, outer: number, n: number, inner: number, out: Storage): void;

  /** Matrix products through BLAS where available. */
  gemm(spec: GemmSpec): void;

  /** Row-wise softmax (or log-softmax) of a contiguous [rows, cols] matrix. */
  softmax(x: Storage, rows: number, cols: number, log: boolean, out: Storage): void;
  /** Gradient of softmax (log=false) or log-softmax (log=true) given its output y and the output gradient dy. */
  softmaxGrad(y: Storage, dy: Storage, rows: number, cols: number, log: boolean, out: Storage): void;

  /**
   * Layer norm over the last axis of contiguous [rows, cols]; weight/bias may be null.
   * Also writes the per-row mean and reciprocal standard deviation for the backward pass.
   */
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
  ): void;
  /** Gradients of layerNorm: dx always; dWeight and dBias (overwritten) when not null. */
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
  ): void;
  /** RMS norm over the last axis: out = x · rsqrt(mean(x²) + eps) · weight; writes rstd per row. */
  rmsNorm(
    x: Storage,
    weight: Storage | null,
    rows: number,
    cols: number,
    eps: number,
    out: Storage,
    rstd: Storage,
  ): void;
  /** Gradients of rmsNorm: dx always; dWeight (overwritten) when not null. */
  rmsNormGrad(
    x: Storage,
    weight: Storage | null,
    rstd: Storage,
    dy: Storage,
    rows: number,
    cols: number,
    dx: Storage,
    dWeight: Storage | null,
  ): void;

  /**
   * Gather along the middle axis: src is contiguous [outer, n, inner], ids (int32) has `count` entries in [0, n),
   * out is [outer, count, inner]. An id outside [0, n) is an error. src may hold another dtype than out (values are
   * converted as `copy` converts them: a bfloat16 embedding table gathers into float32 rows).
   */
  gather(src: Storage, outer: number, n: number, inner: number, ids: Storage, out: Storage): void;
  /** The adjoint of gather: out[:, ids[j], :] += src[:, j, :]; out ([outer, n, inner]) is accumulated into. */
  scatterAdd(src: Storage, outer: number, n: number, inner: number, ids: Storage, out: Storage): void;

  /**
   * Cross-entropy of contiguous logits [rows, cols] against int32 targets [rows]: loss[r] = logsumexp − logit[target],
   * 0 where target = ignoreIndex. lse[r] receives the log-sum-exp for the backward pass. Targets outside
   * [0, cols) other than ignoreIndex are an error.
   */
  crossEntropy(
    logits: Storage,
    targets: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
    loss: Storage,
    lse: Storage,
  ): void;
  /** dLogits[r] = (softmax(logits[r]) − onehot(target[r])) · dLoss[r], 0 for ignored rows. */
  crossEntropyGrad(
    logits: Storage,
    targets: Storage,
    lse: Storage,
    dLoss: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
    out: Storage,
  ): void;

  /**
   * dst = src, or dst += src when accumulate (float32 only); both views have the same shape. dst is a strided view
   * (a slice of a bigger tensor: cat, KV caches, gradients of slices) and must not overlap itself.
   */
  assign(src: View, dst: View, accumulate: boolean): void;
  /**
   * Dropout with the mask drawn from the counter-based stream: out[i] = x[i] · (u(seed, counter + i) < keep ? scale : 0),
   * i the row-major index in x's shape, u as in `random` ("bernoulli" with a = keep, b = scale gives the same mask).
   * Calling it again on the output gradient with the same seed and counter gives the input gradient.
   */
  dropout(x: View, keep: number, scale: number, seed: number, counter: number, out: Storage): void;
  /**
   * Softmax over the last axis of contiguous x, whose logical shape is `mask.shape` (or `shape`), after adding the
   * additive `mask` (a view of that shape; stride 0 broadcasts) when it is not null: the same values as binary add
   * followed by softmax. out may be x.
   */
  maskedSoftmax(x: Storage, shape: readonly number[], mask: View | null, out: Storage): void;
  /**
   * Rotary position embedding over the last axis (even length D, halves x₁ and x₂): out = x·cos + [−x₂, x₁]·sin, or,
   * when transpose, its adjoint out = x·cos + [x₂·sin₂, −x₁·sin₁] (the input gradient for output gradient x).
   * All four views have one shape; cos and sin may broadcast; out must not overlap itself.
   */
  rotary(x: View, cos: View, sin: View, out: View, transpose: boolean): void;

  /**
   * Products with a frozen quantised weight W [n, k], dequantised a panel of rows at a time (never as a whole matrix):
   * out [rows, n] = x [rows, k]·Wᵀ, or with transpose out [rows, k] = x [rows, n]·W (the input gradient).
   * x and out are contiguous float32.
   */
  quantMatmul(x: Storage, rows: number, w: QuantizedMatrix, transpose: boolean, out: Storage): void;
  /**
   * LLM.int8's product (bitsandbytes' MatMul8bitLt forward): x [rows, k] quantised row-wise to int8 except the columns
   * holding a value with |x| ≥ threshold (none when threshold is 0), an exact integer product with the int8 weight,
   * dequantised as ((acc·1/127²)·rowAbsmax)·SCB + bias, plus the outlier columns times the dequantised weight.
   */
  int8Linear(x: Storage, rows: number, w: QuantizedInt8, threshold: number, bias: Storage | null, out: Storage): void;
  /** bitsandbytes' 4-bit quantisation of `values` (quant.ts' Quantize4bitKernel): codes into packed, block absmax into absmax. */
  quantize4bit(
    values: Float32Array,
    quantType: QuantType4,
    blocksize: number,
    packed: Uint8Array,
    absmax: Float32Array,
  ): void;

  /** One AdamW update in place: param, expAvg, expAvgSq (all contiguous, same size as grad). */
  adamw(param: Storage, grad: Storage, expAvg: Storage, expAvgSq: Storage, hp: AdamWStep): void;
}
