/** Shape ops: views where the layout allows (no copy), copies otherwise; gather/concat along an axis. */
import { backend } from "../../backend/index.js";
import { record } from "../autograd.js";
import type { View } from "../../backend/backend.js";
import { isHalf } from "../../backend/backend.js";
import { isGradEnabled } from "../engine.js";
import { contiguousStrides, fmtShape, normAxis, numel, viewStrides } from "../shape.js";
import { empty, emptyStrided, type Tensor, zeros } from "../tensor.js";
import { sumTo, toInt } from "./elementwise.js";

/**
 * A contiguous tensor with t's values starting at element 0 of its storage (what kernels taking a bare storage
 * read): t itself when it already is, unless `forceCopy`. A contiguous view at an offset (e.g. a narrow of a
 * [1, 1, n] tensor) is copied.
 */
export function contiguous(t: Tensor, forceCopy = false): Tensor {
  if (!forceCopy && t.isContiguous() && t.offset === 0) return t;
  const out = empty(t.shape, t.dtype);
  backend().copy(t, out.storage);
  return record("contiguous", out, [t], (dy) => [dy]);
}

function resolveShape(shape: readonly number[], size: number, from: readonly number[]): number[] {
  const inferred = shape.indexOf(-1);
  const known = numel(shape.filter((d) => d !== -1));
  const out = [...shape];
  if (inferred >= 0) out[inferred] = known === 0 ? 0 : size / known;
  if (numel(out) !== size || !out.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`cannot reshape a tensor of shape ${fmtShape(from)} (${size} elements) to ${fmtShape(shape)}`);
  }
  return out;
}

/**
 * The same values with another shape (one axis may be -1): a view whenever the layout allows (always for a
 * contiguous tensor; for a strided one when each group of axes that is contiguous in memory is only split or
 * merged, as PyTorch's view does), a copy otherwise.
 */
export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape(shape, t.size, t.shape);
  // A contiguous view at an offset reshapes as a view too.
  let src = t;
  let strides = t.isContiguous() ? contiguousStrides(target) : viewStrides(t.shape, t.strides, target);
  if (!strides) {
    src = contiguous(t);
    strides = contiguousStrides(target);
  }
  const out = src.view_(target, strides, src.offset);
  return record("reshape", out, [src], (dy) => [reshape(dy, src.shape)]);
}

/** Reorder axes (a view). */
export function permute(t: Tensor, axes: readonly number[]): Tensor {
  if (axes.length !== t.rank || new Set(axes.map((a) => normAxis(a, t.rank))).size !== t.rank) {
    throw new Error(
      `permute: ${fmtShape(axes)} is not a permutation of the ${t.rank} axes of a tensor of shape ${fmtShape(t.shape)}`,
    );
  }
  const ax = axes.map((a) => normAxis(a, t.rank));
  const out = t.view_(
    ax.map((a) => t.shape[a]!),
    ax.map((a) => t.strides[a]!),
    t.offset,
  );
  const inverse = new Array<number>(ax.length);
  ax.forEach((a, i) => {
    inverse[a] = i;
  });
  return record("permute", out, [t], (dy) => [permute(dy, inverse)]);
}

/** Swap two axes (a view). */
export function transpose(t: Tensor, a = -2, b = -1): Tensor {
  const axes = [...Array(t.rank).keys()];
  const i = normAxis(a, t.rank),
    j = normAxis(b, t.rank);
  [axes[i], axes[j]] = [axes[j]!, axes[i]!];
  return permute(t, axes);
}

/** Insert an axis of length 1. */
export function unsqueeze(t: Tensor, axis: number): Tensor {
  const a = normAxis(axis, t.rank + 1);
  const shape = [...t.shape];
  shape.splice(a, 0, 1);
  return reshape(t, shape);
}

/** Remove an axis of length 1 (or every such axis when none is given). */
export function squeeze(t: Tensor, axis?: number): Tensor {
  if (axis === undefined)
    return reshape(
      t,
      t.shape.filter((d) => d !== 1),
    );
  const a = normAxis(axis, t.rank);
  if (t.shape[a] !== 1) throw new Error(`squeeze: axis ${axis} has length ${t.shape[a]}, not 1`);
  return reshape(
    t,
    t.shape.filter((_, i) => i !== a),
  );
}

/** Broadcast to a larger shape (a view with stride 0 on expanded axes; -1 keeps an axis). */
export function expand(t: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - t.rank;
  if (lead < 0) throw new Error(`expand: cannot expand ${fmtShape(t.shape)} to fewer axes ${fmtShape(shape)}`);
  const outShape = shape.map((d, i) => (d === -1 ? t.shape[i - lead]! : d));
  const strides = outShape.map((d, i) => {
    if (i < lead) return 0;
    const src = t.shape[i - lead]!;
    if (src === d) return t.strides[i - lead]!;
    if (src === 1) return 0;
    throw new Error(`expand: cannot expand ${fmtShape(t.shape)} to ${fmtShape(shape)}`);
  });
  const out = t.view_(outShape, strides, t.offset);
  return record("expand", out, [t], (dy) => [sumTo(dy, t.shape)]);
}

/** Elements start … start+length−1 along an axis (a view). */
export function narrow(t: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis(axis, t.rank);
  const n = t.shape[a]!;
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start + length > n) {
    throw new Error(`narrow: [${start}, ${start + length}) is outside axis ${axis} of length ${n}`);
  }
  const shape = [...t.shape];
  shape[a] = length;
  const out = t.view_(shape, t.strides, t.offset + start * t.strides[a]!);
  // The tape accumulates the gradient of a slice straight into a slice of the input's gradient (see autograd.ts);
  // this backward (zeros with dy written into the slice) is for other callers.
  return record(
    "narrow",
    out,
    [t],
    (dy) => {
      const g = zeros(t.shape);
      backend().assign(dy, sliceView(g, a, start, length), false);
      return [g];
    },
    { axis: a, start },
  );
}

/** The view of elements start … start+length−1 along an axis of t (no tensor, no autograd). */
export function sliceView(t: Tensor, axis: number, start: number, length: number): View {
  const shape = [...t.shape];
  shape[axis] = length;
  return { storage: t.storage, shape, strides: t.strides, offset: t.offset + start * t.strides[axis]! };
}

/** One index along an axis, removing that axis (a view). */
export function select(t: Tensor, axis: number, index: number): Tensor {
  return squeeze(narrow(t, axis, index, 1), axis);
}

function asOuterMidInner(shape: readonly number[], axis: number): [number, number, number] {
  return [numel(shape.slice(0, axis)), shape[axis]!, numel(shape.slice(axis + 1))];
}

/** out has t's shape with axis length n; out[…, ids[j], …] += t[…, j, …]. The adjoint of indexSelect. */
function scatterAlong(t: Tensor, axis: number, ids: Tensor, n: number): Tensor {
  const src = contiguous(t);
  const shape = [...t.shape];
  shape[axis] = n;
  const out = zeros(shape);
  const [outer, , inner] = asOuterMidInner(shape, axis);
  backend().scatterAdd(src.storage, outer, n, inner, ids.storage, out.storage);
  return out;
}

/**
 * Pick entries along an axis by int32 ids (ids is 1-D); the output axis has ids.length entries. A bfloat16/float16
 * table (a frozen half embedding) gives float32 rows, the compute dtype.
 */
export function indexSelect(t: Tensor, axis: number, ids: Tensor): Tensor {
  const a = normAxis(axis, t.rank);
  const idx = contiguous(toInt(ids));
  if (idx.rank !== 1) throw new Error(`indexSelect: ids must be 1-D, got ${fmtShape(idx.shape)}`);
  const src = contiguous(t);
  const [outer, n, inner] = asOuterMidInner(src.shape, a);
  const shape = [...src.shape];
  shape[a] = idx.size;
  const out = empty(shape, isHalf(t.dtype) ? "float32" : t.dtype);
  backend().gather(src.storage, outer, n, inner, idx.storage, out.storage);
  return record("indexSelect", out, [src], (dy) => [scatterAlong(dy, a, idx, n)]);
}

/** Join tensors along an existing axis. */
export function cat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new Error("cat: needs at least one tensor");
  const first = tensors[0]!;
  const a = normAxis(axis, first.rank);
  for (const t of tensors) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`cat: shapes ${tensors.map((x) => fmtShape(x.shape)).join(", ")} differ outside axis ${axis}`);
    }
  }
  const total = tensors.reduce((s, t) => s + t.shape[a]!, 0);
  const shape = [...first.shape];
  shape[a] = total;
  const out = empty(shape, first.dtype);
  let start = 0;
  const starts: number[] = [];
  for (const t of tensors) {
    starts.push(start);
    const len = t.shape[a]!;
    if (len > 0 && t.size > 0) backend().assign(t, sliceView(out, a, start, len), false);
    start += len;
  }
  return record("cat", out, tensors, (dy) => tensors.map((t, i) => narrow(dy, a, starts[i]!, t.shape[a]!)));
}

/** What appendAlong knows about a buffer it grows: the axis and how many positions along it are written. */
const growable = new WeakMap<object, { axis: number; used: number; capacity: number }>();

/**
 * cat([past, x], axis) for caches that grow by appending (KV caches in generation): when past is the latest result
 * of appendAlong on its buffer and the buffer has room, x is written after it in place and the result is a longer
 * view of the same buffer; otherwise a buffer with room to grow (twice the length) is allocated and both copied in.
 * Views handed out earlier keep their values (only positions beyond them are written). Inputs that need gradients
 * go through cat.
 */
export function appendAlong(past: Tensor, x: Tensor, axis: number): Tensor {
  const a = normAxis(axis, past.rank);
  if (
    (isGradEnabled() && (past.requiresGrad || x.requiresGrad)) ||
    past.dtype !== x.dtype ||
    past.rank !== x.rank ||
    past.shape.some((d, i) => i !== a && d !== x.shape[i])
  ) {
    return cat([past, x], a);
  }
  const tp = past.shape[a]!,
    total = tp + x.shape[a]!;
  const info = growable.get(past.bufferRef);
  if (info && info.axis === a && info.used === tp && total <= info.capacity && past.offset === 0) {
    const full = [...past.shape];
    full[a] = info.capacity;
    const cs = contiguousStrides(full);
    if (cs.every((s, i) => past.shape[i] === 1 || s === past.strides[i])) {
      if (x.size > 0) backend().assign(x, sliceView(past, a, tp, x.shape[a]!), false);
      info.used = total;
      const shape = [...past.shape];
      shape[a] = total;
      return past.view_(shape, past.strides, 0);
    }
  }
  const capacity = Math.max(2 * total, total + 16);
  const full = [...past.shape];
  full[a] = capacity;
  const shape = [...past.shape];
  shape[a] = total;
  const out = emptyStrided(shape, contiguousStrides(full), numel(full), past.dtype);
  if (past.size > 0) backend().assign(past, sliceView(out, a, 0, tp), false);
  if (x.size > 0) backend().assign(x, sliceView(out, a, tp, x.shape[a]!), false);
  growable.set(out.bufferRef, { axis: a, used: total, capacity });
  return out;
}

/**
 * The first `used` positions along `axis` of `buffer` (contiguous, at offset 0) as a view that appendAlong grows in
 * place, up to the buffer's length along that axis: a cache whose owner keeps one buffer across many steps.
 */
export function growableView(buffer: Tensor, axis: number, used: number): Tensor {
  const a = normAxis(axis, buffer.rank);
  if (!buffer.isContiguous() || buffer.offset !== 0) {
    throw new Error("growableView: the buffer must be contiguous and start at element 0 of its storage");
  }
  growable.set(buffer.bufferRef, { axis: a, used, capacity: buffer.shape[a]! });
  return narrow(buffer, a, 0, used);
}

/** Overwrite the values of the view dst with those of src (same shape), in place and without autograd. */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.shape.length !== src.shape.length || dst.shape.some((d, i) => d !== src.shape[i])) {
    throw new Error(`copyInto: shapes ${fmtShape(src.shape)} and ${fmtShape(dst.shape)} differ`);
  }
  if (dst.dtype !== src.dtype) throw new Error(`copyInto: dtypes ${src.dtype} and ${dst.dtype} differ`);
  if (src.size > 0) backend().assign(src, dst, false);
}

/** Split along an axis into pieces of the given sizes (views). */
export function split(t: Tensor, sizes: readonly number[], axis = 0): Tensor[] {
  const a = normAxis(axis, t.rank);
  if (sizes.reduce((s, x) => s + x, 0) !== t.shape[a]) {
    throw new Error(`split: sizes ${fmtShape(sizes)} do not add up to axis ${axis} of length ${t.shape[a]}`);
  }
  let start = 0;
  return sizes.map((len) => {
    const piece = narrow(t, a, start, len);
    start += len;
    return piece;
  });
}

/** Split into `n` equal pieces along an axis. */
export function chunk(t: Tensor, n: number, axis = 0): Tensor[] {
  const len = t.shape[normAxis(axis, t.rank)]!;
  if (len % n !== 0) throw new Error(`chunk: axis ${axis} of length ${len} does not split into ${n} equal pieces`);
  return split(t, new Array<number>(n).fill(len / n), axis);
}

/** Join tensors of one shape along a new axis. */
export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new Error("stack: needs at least one tensor");
  const a = normAxis(axis, tensors[0]!.rank + 1);
  return cat(
    tensors.map((t) => unsqueeze(t, a)),
    a,
  );
}
