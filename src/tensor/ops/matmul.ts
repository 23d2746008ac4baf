/** Matrix products. Transposed views reach BLAS as transpose flags, never as copies. */
import { isHalf } from "../../backend/backend.js";
import { backend } from "../../backend/index.js";
import { record } from "../autograd.js";
import { broadcastShapes, fmtShape, numel } from "../shape.js";
import { empty, type Tensor } from "../tensor.js";
import { sumTo, toDtype, toFloat } from "./elementwise.js";
import { autocastDtype, type AutocastDType } from "../engine.js";
import { sum } from "./reduce.js";
import { contiguous, reshape, transpose } from "./views.js";

interface GemmOperand {
  t: Tensor;
  trans: boolean;
  ld: number;
}

/** How BLAS can read the last two axes of t ([rows, cols]) without a copy; copies when it cannot. */
function gemmOperand(t: Tensor): GemmOperand {
  const r = t.rank;
  const rows = t.shape[r - 2]!,
    cols = t.shape[r - 1]!;
  const sr = t.strides[r - 2]!,
    sc = t.strides[r - 1]!;
  // An empty matrix is never read; any layout will do (copying it would not change its strides).
  if (rows === 0 || cols === 0) return { t, trans: false, ld: Math.max(cols, 1) };
  if ((sc === 1 || cols === 1) && (rows === 1 || sr >= Math.max(cols, 1)))
    return { t, trans: false, ld: rows === 1 ? Math.max(cols, 1) : sr };
  if ((sr === 1 || rows === 1) && (cols === 1 || sc >= Math.max(rows, 1)))
    return { t, trans: true, ld: cols === 1 ? Math.max(rows, 1) : sc };
  return gemmOperand(contiguous(t, true));
}

/**
 * An operand as the product reads it: a bfloat16/float16 tensor as it is (frozen half weights; the kernel widens them
 * to float32 block by block and accumulates in float32); under autocast, float32 rounded to the autocast format
 * (`half`, captured when the product was recorded, so that its backward products round the same way); else float32.
 */
function gemmInput(t: Tensor, half: AutocastDType | null): Tensor {
  if (isHalf(t.dtype)) return t;
  return half ? toDtype(t, half) : toFloat(t);
}

/** A float32 version of t, or t itself when it is a half tensor (products read those directly). */
function toFloatOrHalf(t: Tensor): Tensor {
  return isHalf(t.dtype) ? t : toFloat(t);
}

/** a·b with both operands read as gemmInput reads them under `half`. */
function product(a: Tensor, b: Tensor, half: AutocastDType | null): Tensor {
  return rawMatmul(gemmInput(a, half), gemmInput(b, half));
}

function rawMatmul(a: Tensor, b: Tensor): Tensor {
  const m = a.shape[a.rank - 2]!,
    k = a.shape[a.rank - 1]!,
    n = b.shape[b.rank - 1]!;
  if (b.shape[b.rank - 2] !== k) {
    throw new Error(
      `matmul: inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)} (${k} vs ${b.shape[b.rank - 2]})`,
    );
  }
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = empty([...batchShape, m, n]);
  if (k === 0) {
    backend().fill(out.storage, 0); // a sum over nothing
    return out;
  }
  const A = gemmOperand(a),
    B = gemmOperand(b);
  const batchStrides = (t: Tensor) => {
    const lead = batchShape.length - (t.rank - 2);
    return batchShape.map((_, i) => (i < lead || t.shape[i - lead] === 1 ? 0 : t.strides[i - lead]!));
  };
  if (numel(out.shape) > 0) {
    backend().gemm({
      a: A.t.storage,
      aOffset: A.t.offset,
      transA: A.trans,
      lda: A.ld,
      aBatchStrides: batchStrides(A.t),
      b: B.t.storage,
      bOffset: B.t.offset,
      transB: B.trans,
      ldb: B.ld,
      bBatchStrides: batchStrides(B.t),
      batchShape,
      m,
      n,
      k,
      out: out.storage,
      accumulate: false,
    });
  }
  return out;
}

/** Matrix product of the last two axes, broadcasting leading (batch) axes. Both operands need rank ≥ 2. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank < 2 || b.rank < 2)
    throw new Error(`matmul needs rank ≥ 2 operands, got ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`);
  const half = autocastDtype();
  const fa = toFloatOrHalf(a),
    fb = toFloatOrHalf(b);
  const out = product(fa, fb, half);
  return record("matmul", out, [fa, fb], (dy) => [
    fa.requiresGrad ? sumTo(product(dy, transpose(fb), half), fa.shape) : null,
    fb.requiresGrad ? sumTo(product(transpose(fa), dy, half), fb.shape) : null,
  ]);
}

/**
 * y = x·W + b for x [..., k], W [k, n] (any strided view: a transposed Linear weight reaches BLAS as a flag) and an
 * optional bias [n], as one GEMM: the bias is written into the output and the product added to it. Leading axes of x
 * are flattened into one matrix, so the weight gradient is a single GEMM over all tokens. Gradients go only to the
 * operands that require them (a frozen weight costs no weight-gradient product).
 */
export function addmm(x: Tensor, w: Tensor, bias?: Tensor | null): Tensor {
  if (w.rank !== 2) throw new Error(`addmm: the weight must be 2-D, got ${fmtShape(w.shape)}`);
  const k = w.shape[0]!,
    n = w.shape[1]!;
  if (x.shape[x.rank - 1] !== k) {
    throw new Error(
      `linear: input has ${x.shape[x.rank - 1]} features but the weight expects ${k} (weight as ` +
        `[in, out]: ${fmtShape(w.shape)})`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== n))
    throw new Error(`linear: bias of shape ${fmtShape(bias.shape)} does not match ${n} outputs`);
  const lead = x.shape.slice(0, -1);
  const half = autocastDtype();
  const fx = toFloat(reshape(x, [-1, k])),
    fw = toFloatOrHalf(w);
  const gx = gemmInput(fx, half),
    gw = gemmInput(fw, half);
  const fb = bias ? contiguous(toFloat(bias)) : null;
  const m = fx.shape[0]!;
  const out = empty([m, n]);
  if (m > 0 && n > 0) {
    const A = gemmOperand(gx),
      B = gemmOperand(gw);
    backend().gemm({
      a: A.t.storage,
      aOffset: A.t.offset,
      transA: A.trans,
      lda: A.ld,
      aBatchStrides: [],
      b: B.t.storage,
      bOffset: B.t.offset,
      transB: B.trans,
      ldb: B.ld,
      bBatchStrides: [],
      batchShape: [],
      m,
      n,
      k,
      out: out.storage,
      accumulate: false,
      bias: fb?.storage ?? null,
    });
  }
  const y = record("addmm", out, fb ? [fx, fw, fb] : [fx, fw], (dy) => {
    const grads: (Tensor | null)[] = [
      fx.requiresGrad ? product(dy, transpose(gw), half) : null,
      fw.requiresGrad ? product(transpose(gx), dy, half) : null,
    ];
    if (fb) grads.push(fb.requiresGrad ? sum(dy, 0) : null);
    return grads;
  });
  return reshape(y, [...lead, n]);
}

/**
 * y = x·Wᵀ + b with W of shape [out, in] (PyTorch's Linear layout): one GEMM with the bias fused (see addmm).
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const inF = weight.shape[1]!;
  if (x.shape[x.rank - 1] !== inF) {
    throw new Error(
      `linear: input has ${x.shape[x.rank - 1]} features but the weight ${fmtShape(weight.shape)} expects ${inF}`,
    );
  }
  return addmm(x, transpose(weight), bias);
}
