/** Reductions over axes: sum, mean, max/min, argmax. */
import type { ReduceOp } from "../../backend/backend.js";
import { backend } from "../../backend/index.js";
import { record } from "../autograd.js";
import { normAxis } from "../shape.js";
import { arange, empty, type Tensor } from "../tensor.js";
import { eq, mul, toFloat } from "./elementwise.js";
import { contiguous, expand, reshape, unsqueeze } from "./views.js";

function normAxes(t: Tensor, axes: number | readonly number[] | undefined): number[] {
  if (axes === undefined) return [...Array(t.rank).keys()];
  return [...new Set((typeof axes === "number" ? [axes] : axes).map((a) => normAxis(a, t.rank)))];
}

function reduceRaw(op: ReduceOp, t: Tensor, axes: readonly number[], keepdim: boolean): Tensor {
  const x = toFloat(t);
  const keep = x.shape.map((_, i) => !axes.includes(i));
  const kept = x.shape.map((d, i) => (keep[i] ? d : 1));
  const out = empty(kept);
  backend().reduce(op, x, keep, out.storage);
  return keepdim
    ? out
    : reshape(
        out,
        x.shape.filter((_, i) => keep[i]),
      );
}

/** Sum over the given axes (all by default). */
export function sum(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes(t, axes);
  const out = reduceRaw("sum", t, ax, keepdim);
  return record("sum", out, [t], (dy) => [expand(keepdim ? dy : restoreAxes(dy, ax, t.rank), t.shape)]);
}

/** Mean over the given axes (all by default). */
export function mean(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes(t, axes);
  const count = ax.reduce((n, a) => n * t.shape[a]!, 1);
  return mul(sum(t, ax, keepdim), 1 / count);
}

/** Maximum over one axis, with the index of the (first) maximum; the gradient flows to that index. */
export function max(t: Tensor, axis: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const a = normAxis(axis, t.rank);
  const x = contiguous(toFloat(t));
  const indices = argmax(x, a, true);
  const values = reduceRaw("max", x, [a], true);
  const onehot = eq(
    reshape(
      arange(x.shape[a]!, 0, 1, "float32"),
      x.shape.map((d, i) => (i === a ? d : 1)),
    ),
    indices,
  );
  const out = record("max", values, [t], (dy) => [mul(expand(dy, x.shape), onehot)]);
  return keepdim
    ? { values: out, indices }
    : {
        values: reshape(
          out,
          out.shape.filter((_, i) => i !== a),
        ),
        indices: reshape(
          indices,
          indices.shape.filter((_, i) => i !== a),
        ),
      };
}

/** Maximum over axes without indices (no gradient; for masks and numerics). */
export function amax(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  return reduceRaw("max", t, normAxes(t, axes), keepdim);
}

/** Minimum over axes without indices (no gradient). */
export function amin(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  return reduceRaw("min", t, normAxes(t, axes), keepdim);
}

/** Index of the first maximum along an axis (int32). */
export function argmax(t: Tensor, axis: number, keepdim = false): Tensor {
  const a = normAxis(axis, t.rank);
  const x = contiguous(toFloat(t));
  const outer = x.shape.slice(0, a).reduce((n, d) => n * d, 1);
  const inner = x.shape.slice(a + 1).reduce((n, d) => n * d, 1);
  const shape = x.shape.map((d, i) => (i === a ? 1 : d));
  const out = empty(shape, "int32");
  backend().argmax(x.storage, outer, x.shape[a]!, inner, out.storage);
  return keepdim
    ? out
    : reshape(
        out,
        shape.filter((_, i) => i !== a),
      );
}

function restoreAxes(t: Tensor, axes: readonly number[], rank: number): Tensor {
  let out = t;
  for (const a of [...axes].sort((x, y) => x - y)) if (a < rank) out = unsqueeze(out, a);
  return out;
}
