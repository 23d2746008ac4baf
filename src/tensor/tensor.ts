/** The Tensor class and the functions that create tensors from values. */
import type { DType, StorageData, View } from "../backend/backend.js";
import { isHalf } from "../backend/backend.js";
import { backend } from "../backend/index.js";
import { Buffer, track, keep } from "./engine.js";
import { contiguousStrides, fmtShape, numel } from "./shape.js";
import type { GradFn } from "./autograd.js";
import { runBackward } from "./autograd.js";

/** Nested arrays of numbers, as accepted by `tensor()`. */
export type NestedArray = number | readonly NestedArray[];

/**
 * An n-dimensional array of float32 or int32 values (or bfloat16/float16/uint8 storage) with an optional autograd history.
 * Tensors are views (shape, strides, offset) on a shared, reference-counted buffer.
 */
export class Tensor implements View {
  /** Gradient accumulated by `backward()` (leaf tensors with requiresGrad only). */
  grad: Tensor | null = null;
  /** The operation that produced this tensor, when it was recorded for autograd. */
  gradFn: GradFn | null = null;
  private disposed = false;

  /** Internal: use the creation functions (tensor, zeros, …) or ops instead. */
  constructor(
    private readonly buffer: Buffer,
    readonly shape: readonly number[],
    readonly strides: readonly number[],
    readonly offset: number,
    private requiresGradFlag = false,
  ) {
    buffer.retain();
    track(this);
  }

  /** The storage this tensor views (throws if disposed). */
  get storage() {
    if (this.disposed) {
      throw new Error(
        "this tensor was disposed: it was created inside a tidy() scope that has ended (return it " +
          "from the scope or keep() it) or dispose() was called",
      );
    }
    return this.buffer.storage;
  }

  /** Element type. */
  get dtype(): DType {
    return this.buffer.storage.dtype;
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Whether gradients flow to (leaf) or through (non-leaf) this tensor. */
  get requiresGrad(): boolean {
    return this.requiresGradFlag;
  }

  set requiresGrad(value: boolean) {
    if (value && this.dtype !== "float32")
      throw new Error(`only float32 tensors can require gradients (this one is ${this.dtype})`);
    if (this.gradFn && !value) throw new Error("requiresGrad cannot be turned off on a non-leaf tensor; use detach()");
    this.requiresGradFlag = value;
  }

  /** Set requiresGrad in place and return this (PyTorch's requires_grad_). */
  requiresGrad_(value = true): this {
    this.requiresGrad = value;
    return this;
  }

  /** True for tensors that no recorded operation produced. */
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /** Whether dispose() was called (directly or by a scope). */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Give this tensor's reference to its storage back; the storage is pooled when no view uses it anymore. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.gradFn = null;
    this.buffer.releaseRef();
    this.grad?.dispose();
    this.grad = null;
  }

  /** Whether the elements are laid out row-major without gaps. */
  isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i]!;
    }
    return true;
  }

  /** Internal: the reference-counted buffer (an identity for caches that grow in place; never reused). */
  get bufferRef(): object {
    return this.buffer;
  }

  /** A tensor on the same buffer with another shape/strides/offset (no autograd; ops record it themselves). */
  view_(shape: readonly number[], strides: readonly number[], offset: number): Tensor {
    void this.storage; // throws if disposed
    return new Tensor(this.buffer, shape, strides, offset);
  }

  /** Same values, no autograd history, shares storage (PyTorch's detach). */
  detach(): Tensor {
    return this.view_(this.shape, this.strides, this.offset);
  }

  /** The values as a new contiguous typed array: float32 for float dtypes (16-bit floats decoded), int32 otherwise. */
  dataSync(): Float32Array | Int32Array {
    const valueDtype = this.dtype === "float32" || isHalf(this.dtype) ? "float32" : "int32";
    return this.readAs(valueDtype) as Float32Array | Int32Array;
  }

  /** The elements as stored, as a new contiguous typed array (16-bit floats as their bits, uint8 as bytes). */
  rawSync(): StorageData {
    return this.readAs(this.dtype);
  }

  private readAs(dtype: DType): StorageData {
    const b = this.buffer.backend;
    if (dtype === this.dtype && this.isContiguous() && this.offset === 0 && this.size === this.storage.size)
      return b.read(this.storage);
    const out = b.alloc(dtype, this.size);
    try {
      b.copy(this, out);
      return b.read(out);
    } finally {
      b.release(out);
    }
  }

  /** The values (as dataSync gives them), asynchronously (the form a GPU backend needs). */
  async data(): Promise<Float32Array | Int32Array> {
    return this.dataSync();
  }

  /** The values as nested arrays. */
  toArray(): NestedArray {
    const flat = Array.from(this.dataSync());
    if (this.rank === 0) return flat[0]!;
    const build = (axis: number, start: number): NestedArray[] => {
      const step = numel(this.shape.slice(axis + 1));
      const out: NestedArray[] = [];
      for (let i = 0; i < this.shape[axis]!; i++) {
        out.push(axis === this.rank - 1 ? flat[start + i]! : build(axis + 1, start + i * step));
      }
      return out;
    };
    return build(0, 0);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item() needs a tensor with one element, got shape ${fmtShape(this.shape)}`);
    return this.dataSync()[0]!;
  }

  /**
   * Back-propagate from this tensor: accumulate d(this)/d(leaf) into the `.grad` of every leaf that requires
   * gradients. `grad` defaults to 1 for a one-element tensor.
   */
  backward(grad?: Tensor): void {
    runBackward(this, grad);
  }

  /** Overwrite this (contiguous) tensor's values in place from another tensor of the same shape, without autograd. */
  copy_(src: Tensor): this {
    if (numel(src.shape) !== this.size) {
      throw new Error(
        `copy_: source shape ${fmtShape(src.shape)} does not match destination shape ${fmtShape(this.shape)}`,
      );
    }
    if (!this.isContiguous() || this.offset !== 0 || this.size !== this.storage.size) {
      throw new Error("copy_ needs a destination that owns its whole storage contiguously (call contiguous() first)");
    }
    this.buffer.backend.copy(src, this.storage);
    return this;
  }

  /** Description for logs. */
  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ", requiresGrad" : ""})`;
  }
}

/** A new contiguous tensor with uninitialised values (kernels fill it). */
export function empty(shape: readonly number[], dtype: DType = "float32"): Tensor {
  const b = backend();
  return new Tensor(new Buffer(b.alloc(dtype, numel(shape)), b), [...shape], contiguousStrides(shape), 0);
}

/**
 * A new tensor of `shape` read with `strides` from a fresh buffer of `size` elements (uninitialised): outputs laid out
 * in another order than row-major (attention writes [batch, heads, length, dim] in [batch, length, heads, dim] order,
 * so that merging heads is a view).
 */
export function emptyStrided(
  shape: readonly number[],
  strides: readonly number[],
  size: number,
  dtype: DType = "float32",
): Tensor {
  const b = backend();
  return new Tensor(new Buffer(b.alloc(dtype, size), b), [...shape], [...strides], 0);
}

/**
 * A new uninitialised tensor shaped like t, laid out in the same axis order when t is dense (a permutation of a
 * row-major layout), row-major otherwise: an op whose output has its input's layout lets later reshapes stay views.
 */
export function emptyLike(
  t: { shape: readonly number[]; strides: readonly number[] },
  dtype: DType = "float32",
): Tensor {
  const nd = t.shape.length;
  const order = [...Array(nd).keys()].sort((a, b) => t.strides[b]! - t.strides[a]! || a - b);
  let acc = 1;
  for (let i = nd - 1; i >= 0; i--) {
    const ax = order[i]!;
    if (t.shape[ax] !== 1 && t.strides[ax] !== acc) return empty(t.shape, dtype);
    acc *= t.shape[ax]!;
  }
  const permShape = order.map((a) => t.shape[a]!);
  const ps = contiguousStrides(permShape);
  const strides = new Array<number>(nd);
  order.forEach((ax, i) => {
    strides[ax] = ps[i]!;
  });
  return emptyStrided(t.shape, strides, numel(t.shape), dtype);
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = (cur as readonly NestedArray[])[0] ?? 0;
  }
  return shape;
}

/**
 * A tensor from values: nested arrays (shape inferred) or a flat array/typed array with an explicit shape.
 * dtype defaults to int32 for an Int32Array, float32 otherwise; values for bfloat16/float16 are rounded to nearest even.
 */
export function tensor(
  data: NestedArray | Float32Array | Int32Array | readonly number[],
  shape?: readonly number[],
  dtype?: DType,
): Tensor {
  const flat: ArrayLike<number> = ArrayBuffer.isView(data)
    ? (data as Float32Array | Int32Array)
    : typeof data === "number"
      ? [data]
      : ((data as readonly NestedArray[]).flat(Infinity as 1) as number[]);
  const s = shape ?? (ArrayBuffer.isView(data) ? [data.length] : inferShape(data as NestedArray));
  if (numel(s) !== flat.length) throw new Error(`tensor(): ${flat.length} values do not fill shape ${fmtShape(s)}`);
  const t = empty(s, dtype ?? (data instanceof Int32Array ? "int32" : "float32"));
  backend().write(t.storage, flat);
  return t;
}

/** A tensor filled with one value. */
export function full(shape: readonly number[], value: number, dtype: DType = "float32"): Tensor {
  const t = empty(shape, dtype);
  backend().fill(t.storage, value);
  return t;
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return full(shape, 0, dtype);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return full(shape, 1, dtype);
}

/** [start, start + step, …] with n elements (int32 by default, like ids and positions). */
export function arange(n: number, start = 0, step = 1, dtype: DType = "int32"): Tensor {
  const t = empty([n], dtype);
  backend().arange(t.storage, start, step);
  return t;
}

/**
 * A leaf tensor that survives every scope (what nn.Parameter is in PyTorch): trainable when float32; a half or integer
 * tensor stays frozen (frozen half weights of a bf16 model are built this way, with no float32 copy).
 */
export function parameter(t: Tensor): Tensor {
  const p = t.isLeaf && !t.requiresGrad ? t : t.detach();
  p.requiresGrad = p.dtype === "float32";
  return keep(p);
}
