/** Element-wise ops with NumPy broadcasting, and their gradients. */
import type { BinaryOp, DType, UnaryGradOp, UnaryOp, View } from "../../backend/backend.js";
import { backend } from "../../backend/index.js";
import { record } from "../autograd.js";
import { broadcastShapes, broadcastStrides, fmtShape, numel, sameShape } from "../shape.js";
import { empty, full, type Tensor } from "../tensor.js";
import { reshape } from "./views.js";
import { sum } from "./reduce.js";

/** A tensor or a plain number (broadcast as a scalar). */
export type Operand = Tensor | number;

function scalar(v: number): Tensor {
  return full([], v);
}

/** A float32 version of t (t itself when it already is float32). */
export function toFloat(t: Tensor): Tensor {
  if (t.dtype === "float32") return t;
  const out = empty(t.shape, "float32");
  backend().copy(t, out.storage);
  return out;
}

/** A contiguous copy of t in another dtype (rounded to nearest even into 16-bit floats), without autograd; t when it already is. */
export function toDtype(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  const out = empty(t.shape, dtype);
  backend().copy(t, out.storage);
  return out;
}

/** An int32 version of t, truncating toward zero. */
export function toInt(t: Tensor): Tensor {
  if (t.dtype === "int32") return t;
  const out = empty(t.shape, "int32");
  backend().copy(t, out.storage);
  return out;
}

/** A view of t read with the broadcast shape `target`. */
export function broadcastView(t: Tensor, target: readonly number[]): View {
  return { storage: t.storage, shape: target, strides: broadcastStrides(t.shape, t.strides, target), offset: t.offset };
}

/** Sum a broadcast gradient back down to `shape` (the adjoint of broadcasting). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return reshape(sum(g, axes, true), shape);
}

function binary(op: BinaryOp, a: Operand, b: Operand): Tensor {
  const ta = typeof a === "number" ? scalar(a) : toFloat(a);
  const tb = typeof b === "number" ? scalar(b) : toFloat(b);
  const shape = broadcastShapes(ta.shape, tb.shape);
  const out = empty(shape);
  backend().binary(op, broadcastView(ta, shape), broadcastView(tb, shape), out.storage);
  return out;
}

/** a + b */
export function add(a: Operand, b: Operand): Tensor {
  const out = binary("add", a, b);
  return record("add", out, operands(a, b), (dy) =>
    grads(
      a,
      b,
      () => sumTo(dy, shapeOf(a)),
      () => sumTo(dy, shapeOf(b)),
    ),
  );
}

/** a − b */
export function sub(a: Operand, b: Operand): Tensor {
  const out = binary("sub", a, b);
  return record("sub", out, operands(a, b), (dy) =>
    grads(
      a,
      b,
      () => sumTo(dy, shapeOf(a)),
      () => sumTo(neg(dy), shapeOf(b)),
    ),
  );
}

/** a · b (element-wise) */
export function mul(a: Operand, b: Operand): Tensor {
  const out = binary("mul", a, b);
  return record("mul", out, operands(a, b), (dy) =>
    grads(
      a,
      b,
      () => sumTo(mul(dy, b), shapeOf(a)),
      () => sumTo(mul(dy, a), shapeOf(b)),
    ),
  );
}

/** a / b */
export function div(a: Operand, b: Operand): Tensor {
  const out = binary("div", a, b);
  return record("div", out, operands(a, b), (dy) =>
    grads(
      a,
      b,
      () => sumTo(div(dy, b), shapeOf(a)),
      () => sumTo(neg(div(mul(dy, out), b)), shapeOf(b)),
    ),
  );
}

/** a ** b */
export function pow(a: Operand, b: Operand): Tensor {
  const out = binary("pow", a, b);
  return record("pow", out, operands(a, b), (dy) =>
    grads(
      a,
      b,
      () => sumTo(mul(dy, mul(b, pow(a, typeof b === "number" ? b - 1 : sub(b, 1)))), shapeOf(a)),
      () => sumTo(mul(dy, mul(out, typeof a === "number" ? Math.log(a) : log(a))), shapeOf(b)),
    ),
  );
}

/** Element-wise maximum (the gradient goes to a where a ≥ b). */
export function maximum(a: Operand, b: Operand): Tensor {
  const out = binary("max", a, b);
  return record("maximum", out, operands(a, b), (dy) => {
    const aWins = binary("ge", a, b);
    return grads(
      a,
      b,
      () => sumTo(mul(dy, aWins), shapeOf(a)),
      () => sumTo(mul(dy, sub(1, aWins)), shapeOf(b)),
    );
  });
}

/** Element-wise minimum (the gradient goes to a where a ≤ b). */
export function minimum(a: Operand, b: Operand): Tensor {
  const out = binary("min", a, b);
  return record("minimum", out, operands(a, b), (dy) => {
    const aWins = binary("le", a, b);
    return grads(
      a,
      b,
      () => sumTo(mul(dy, aWins), shapeOf(a)),
      () => sumTo(mul(dy, sub(1, aWins)), shapeOf(b)),
    );
  });
}

/** Comparisons: 1 where true, 0 where false (float32, no gradient). */
export const eq = (a: Operand, b: Operand): Tensor => binary("eq", a, b);
/** a ≠ b as 1/0. */
export const ne = (a: Operand, b: Operand): Tensor => binary("ne", a, b);
/** a < b as 1/0. */
export const lt = (a: Operand, b: Operand): Tensor => binary("lt", a, b);
/** a ≤ b as 1/0. */
export const le = (a: Operand, b: Operand): Tensor => binary("le", a, b);
/** a > b as 1/0. */
export const gt = (a: Operand, b: Operand): Tensor => binary("gt", a, b);
/** a ≥ b as 1/0. */
export const ge = (a: Operand, b: Operand): Tensor => binary("ge", a, b);

function operands(a: Operand, b: Operand): Tensor[] {
  return [a, b].filter((x): x is Tensor => typeof x !== "number");
}

function shapeOf(x: Operand): readonly number[] {
  return typeof x === "number" ? [] : x.shape;
}

/** Gradients for the tensor operands only (numbers get none), computed lazily for inputs that need them. */
function grads(a: Operand, b: Operand, ga: () => Tensor, gb: () => Tensor): (Tensor | null)[] {
  const out: (Tensor | null)[] = [];
  if (typeof a !== "number") out.push(a.requiresGrad ? ga() : null);
  if (typeof b !== "number") out.push(b.requiresGrad ? gb() : null);
  return out;
}

function unaryRaw(op: UnaryOp, x: Tensor): Tensor {
  const t = toFloat(x);
  const out = empty(t.shape);
  backend().unary(op, t, out.storage);
  return out;
}

function unaryWithKernelGrad(op: UnaryOp & UnaryGradOp, x: Tensor): Tensor {
  const out = unaryRaw(op, x);
  return record(op, out, [x], (dy) => {
    const g = empty(x.shape);
    backend().unaryGrad(op, x, dy, g.storage);
    return [g];
  });
}

/** −x */
export function neg(x: Tensor): Tensor {
  return record("neg", unaryRaw("neg", x), [x], (dy) => [neg(dy)]);
}

/** eˣ */
export function exp(x: Tensor): Tensor {
  const out = unaryRaw("exp", x);
  return record("exp", out, [x], (dy) => [mul(dy, out)]);
}

/** Natural logarithm. */
export function log(x: Tensor): Tensor {
  return record("log", unaryRaw("log", x), [x], (dy) => [div(dy, x)]);
}

/** √x */
export function sqrt(x: Tensor): Tensor {
  const out = unaryRaw("sqrt", x);
  return record("sqrt", out, [x], (dy) => [div(mul(dy, 0.5), out)]);
}

/** 1/√x */
export function rsqrt(x: Tensor): Tensor {
  const out = unaryRaw("rsqrt", x);
  return record("rsqrt", out, [x], (dy) => [mul(dy, mul(pow(out, 3), -0.5))]);
}

/** |x| (gradient sign(x), 0 at 0). */
export function abs(x: Tensor): Tensor {
  return record("abs", unaryRaw("abs", x), [x], (dy) => [mul(dy, sub(gt(x, 0), lt(x, 0)))]);
}

/** x² */
export function square(x: Tensor): Tensor {
  return record("square", unaryRaw("square", x), [x], (dy) => [mul(dy, mul(x, 2))]);
}

/** sin x */
export function sin(x: Tensor): Tensor {
  return record("sin", unaryRaw("sin", x), [x], (dy) => [mul(dy, unaryRaw("cos", x))]);
}

/** cos x */
export function cos(x: Tensor): Tensor {
  return record("cos", unaryRaw("cos", x), [x], (dy) => [neg(mul(dy, unaryRaw("sin", x)))]);
}

/** tanh x */
export const tanh = (x: Tensor): Tensor => unaryWithKernelGrad("tanh", x);
/** Logistic sigmoid. */
export const sigmoid = (x: Tensor): Tensor => unaryWithKernelGrad("sigmoid", x);
/** max(x, 0) */
export const relu = (x: Tensor): Tensor => unaryWithKernelGrad("relu", x);
/** Exact GELU, x·Φ(x) (PyTorch's default, HF "gelu"). */
export const gelu = (x: Tensor): Tensor => unaryWithKernelGrad("gelu", x);
/** Tanh-approximated GELU (HF "gelu_new" / "gelu_pytorch_tanh", GPT-2's activation). */
export const geluTanh = (x: Tensor): Tensor => unaryWithKernelGrad("gelu_tanh", x);
/** x·sigmoid(x) (LLaMA's SwiGLU activation). */
export const silu = (x: Tensor): Tensor => unaryWithKernelGrad("silu", x);

/** cond ≠ 0 ? a : b, broadcasting all three. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const ta = typeof a === "number" ? scalar(a) : toFloat(a);
  const tb = typeof b === "number" ? scalar(b) : toFloat(b);
  const c = toFloat(cond);
  const shape = broadcastShapes(c.shape, broadcastShapes(ta.shape, tb.shape));
  const out = empty(shape);
  backend().where(broadcastView(c, shape), broadcastView(ta, shape), broadcastView(tb, shape), out.storage);
  return record("where", out, operands(a, b), (dy) =>
    grads(
      a,
      b,
      () => sumTo(where(c, dy, 0), shapeOf(a)),
      () => sumTo(where(c, 0, dy), shapeOf(b)),
    ),
  );
}

/** x with `value` wherever mask ≠ 0 (mask broadcasts against x). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  return where(mask, value, x);
}

/** In place: target += src (same number of elements; no autograd). Used to accumulate gradients. */
export function addInPlace(target: Tensor, src: Tensor): void {
  assertOwnsStorage(target, "addInPlace");
  if (numel(src.shape) !== target.size)
    throw new Error(`addInPlace: cannot add ${fmtShape(src.shape)} into ${fmtShape(target.shape)}`);
  const v = sameShape(src.shape, target.shape) ? src : reshape(src, target.shape);
  backend().binary("add", target, v, target.storage);
  if (v !== src) v.dispose();
}

/** In place: target *= factor (no autograd). */
export function scaleInPlace(target: Tensor, factor: number): void {
  assertOwnsStorage(target, "scaleInPlace");
  const f = scalar(factor);
  backend().binary("mul", target, broadcastView(f, target.shape), target.storage);
  f.dispose();
}

function assertOwnsStorage(t: Tensor, what: string): void {
  if (!t.isContiguous() || t.offset !== 0 || t.size !== t.storage.size) {
    throw new Error(`${what} needs a tensor that owns its whole storage contiguously (not a view)`);
  }
}

/** Ones shaped like t. */
export function onesLike(t: Tensor): Tensor {
  return full(t.shape, 1);
}

/** Zeros shaped like t. */
export function zerosLike(t: Tensor): Tensor {
  return full(t.shape, 0, t.dtype);
}
