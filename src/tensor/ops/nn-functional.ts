/** Neural-network functions with fused kernels: softmax, norms, embedding, cross-entropy, dropout, attention, rotary. */
import { backend } from "../../backend/index.js";
import { record } from "../autograd.js";
import { broadcastShapes, fmtShape, normAxis, sameShape } from "../shape.js";
import { empty, emptyLike, type Tensor } from "../tensor.js";
import { isGradEnabled } from "../engine.js";
import { attention } from "./attention.js";
import { defaultGenerator, type Generator } from "../random.js";
import { add, broadcastView, mul, neg, toFloat, toInt, where } from "./elementwise.js";
import { matmul } from "./matmul.js";
import { cat, contiguous, indexSelect, narrow, reshape, transpose } from "./views.js";
import { sum } from "./reduce.js";

function lastAxisRows(x: Tensor): [rows: number, cols: number] {
  const cols = x.shape[x.rank - 1]!;
  return [cols === 0 ? 0 : x.size / cols, cols];
}

function softmaxImpl(x: Tensor, axis: number, log: boolean): Tensor {
  const a = normAxis(axis, x.rank);
  if (a !== x.rank - 1) return transpose(softmaxImpl(transpose(x, a, -1), -1, log), a, -1);
  const src = contiguous(x);
  const [rows, cols] = lastAxisRows(src);
  const out = empty(src.shape);
  backend().softmax(src.storage, rows, cols, log, out.storage);
  return record(log ? "logSoftmax" : "softmax", out, [src], (dy) => {
    const g = contiguous(dy);
    const dx = empty(src.shape);
    backend().softmaxGrad(out.storage, g.storage, rows, cols, log, dx.storage);
    return [dx];
  });
}

/** Softmax along an axis (last by default). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl(x, axis, false);
}

/** log(softmax(x)) along an axis, computed stably. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl(x, axis, true);
}

/** Layer normalisation over the last axis with optional affine weight and bias. */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const src = contiguous(x);
  const [rows, cols] = lastAxisRows(src);
  checkNormParam(weight, cols, "layerNorm weight");
  checkNormParam(bias, cols, "layerNorm bias");
  const out = empty(src.shape),
    meanT = empty([rows]),
    rstdT = empty([rows]);
  const w = weight && contiguous(toFloat(weight)),
    b = bias && contiguous(toFloat(bias));
  backend().layerNorm(
    src.storage,
    w?.storage ?? null,
    b?.storage ?? null,
    rows,
    cols,
    eps,
    out.storage,
    meanT.storage,
    rstdT.storage,
  );
  const inputs = [src, ...(w ? [w] : []), ...(b ? [b] : [])];
  return record("layerNorm", out, inputs, (dy) => {
    const g = contiguous(dy);
    const dx = empty(src.shape);
    const dw = w?.requiresGrad ? empty([cols]) : null;
    const db = b?.requiresGrad ? empty([cols]) : null;
    backend().layerNormGrad(
      src.storage,
      w?.storage ?? null,
      meanT.storage,
      rstdT.storage,
      g.storage,
      rows,
      cols,
      dx.storage,
      dw?.storage ?? null,
      db?.storage ?? null,
    );
    return [dx, ...(w ? [dw] : []), ...(b ? [db] : [])];
  });
}

/** RMS normalisation over the last axis: x / √(mean(x²) + eps) · weight (LLaMA's and T5's norm). */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const src = contiguous(x);
  const [rows, cols] = lastAxisRows(src);
  checkNormParam(weight, cols, "rmsNorm weight");
  const w = weight && contiguous(toFloat(weight));
  const out = empty(src.shape),
    rstdT = empty([rows]);
  backend().rmsNorm(src.storage, w?.storage ?? null, rows, cols, eps, out.storage, rstdT.storage);
  return record("rmsNorm", out, w ? [src, w] : [src], (dy) => {
    const g = contiguous(dy);
    const dx = empty(src.shape);
    const dw = w?.requiresGrad ? empty([cols]) : null;
    backend().rmsNormGrad(
      src.storage,
      w?.storage ?? null,
      rstdT.storage,
      g.storage,
      rows,
      cols,
      dx.storage,
      dw?.storage ?? null,
    );
    return w ? [dx, dw] : [dx];
  });
}

function checkNormParam(p: Tensor | null, cols: number, what: string): void {
  if (p && (p.rank !== 1 || p.shape[0] !== cols))
    throw new Error(`${what} has shape ${fmtShape(p.shape)}, expected [${cols}]`);
}

/** Rows of `table` ([vocab, dim]) picked by integer ids of any shape; output is [...ids.shape, dim]. */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  const flat = reshape(toInt(ids), [-1]);
  const rows = indexSelect(table, 0, flat);
  return reshape(rows, [...ids.shape, table.shape[1]!]);
}

/** Options of crossEntropy. */
export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (HF's -100). */
  ignoreIndex?: number;
  /** "mean" over non-ignored targets (default), "sum", or "none" (per row). */
  reduction?: "mean" | "sum" | "none";
}

/** Cross-entropy of logits [N, C] against int targets [N], fused (no [N, C] log-probabilities are kept). */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100,
    reduction = opts.reduction ?? "mean";
  if (logits.rank !== 2 || targets.rank !== 1 || targets.shape[0] !== logits.shape[0]) {
    throw new Error(
      `crossEntropy expects logits [N, C] and targets [N], got ${fmtShape(logits.shape)} and ` +
        `${fmtShape(targets.shape)}`,
    );
  }
  const src = contiguous(logits),
    tgt = contiguous(toInt(targets));
  const [rows, cols] = [src.shape[0]!, src.shape[1]!];
  const perRow = empty([rows]),
    lse = empty([rows]);
  backend().crossEntropy(src.storage, tgt.storage, rows, cols, ignoreIndex, perRow.storage, lse.storage);
  const lossRows = record("crossEntropy", perRow, [src], (dy) => {
    const g = contiguous(dy);
    const dx = empty(src.shape);
    backend().crossEntropyGrad(src.storage, tgt.storage, lse.storage, g.storage, rows, cols, ignoreIndex, dx.storage);
    return [dx];
  });
  if (reduction === "none") return lossRows;
  const total = sum(lossRows);
  if (reduction === "sum") return total;
  let counted = 0;
  for (const t of tgt.dataSync()) if (t !== ignoreIndex) counted++;
  return mul(total, 1 / counted);
}

/**
 * Zero each element with probability p and scale the rest by 1/(1−p) (identity when not training or p = 0). One
 * fused kernel; the mask is the generator's bernoulli stream (the same values as x · generator.bernoulli(…)) and is
 * regenerated from its seed for the backward pass rather than stored.
 */
export function dropout(x: Tensor, p: number, training: boolean, generator: Generator = defaultGenerator): Tensor {
  if (p < 0 || p >= 1) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  const fx = toFloat(x);
  const [seed, counter] = generator.next(fx.size);
  const keepP = 1 - p,
    scale = 1 / (1 - p);
  const out = empty(fx.shape);
  backend().dropout(fx, keepP, scale, seed, counter, out.storage);
  return record("dropout", out, [fx], (dy) => {
    const dx = empty(fx.shape);
    backend().dropout(dy, keepP, scale, seed, counter, dx.storage);
    return [dx];
  });
}

/**
 * softmax(q·kᵀ·scale + mask)·v for q [..., Lq, d], k/v [..., Lk, d]. `mask` is additive (0 or a large negative
 * number) and broadcasts against the [..., Lq, Lk] scores.
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: Tensor | null,
  scale?: number,
): Tensor {
  const d = q.shape[q.rank - 1]!;
  if (q.rank === 4 && k.rank === 4 && v.rank === 4 && !mask?.requiresGrad && q.shape[1] === k.shape[1]) {
    return attention(q, k, v, { mask: mask ?? null, scale: scale ?? 1 / Math.sqrt(d) });
  }
  let scores = mul(matmul(q, transpose(k)), scale ?? 1 / Math.sqrt(d));
  if (mask) scores = add(scores, mask);
  return matmul(softmax(scores), v);
}

/** The most negative float32, which HF uses to mask attention scores. */
export const MASK_VALUE = -3.4028234663852886e38;

/** Additive causal mask [q, k] (queries at the last q of k positions): 0 where allowed, MASK_VALUE above the diagonal. */
export function causalMask(q: number, k: number): Tensor {
  const values = new Float32Array(q * k);
  for (let i = 0; i < q; i++) for (let j = 0; j < k; j++) values[i * k + j] = j > i + (k - q) ? MASK_VALUE : 0;
  const t = empty([q, k]);
  backend().write(t.storage, values);
  return t;
}

/** An additive mask [batch, 1, 1, k] from a 0/1 padding mask [batch, k]: MASK_VALUE where the mask is 0. */
export function paddingMask(attentionMask: Tensor): Tensor {
  const m = reshape(attentionMask, [attentionMask.shape[0]!, 1, 1, attentionMask.shape[1]!]);
  return where(m, 0, MASK_VALUE);
}

/** [x1, x2] → [−x2, x1] on the last axis (HF's rotate_half). */
export function rotateHalf(x: Tensor): Tensor {
  const half = x.shape[x.rank - 1]! / 2;
  return cat([neg(narrow(x, -1, half, half)), narrow(x, -1, 0, half)], -1);
}

/**
 * Rotary position embedding: x·cos + rotateHalf(x)·sin (cos/sin broadcast against x). One kernel each way, with the
 * output laid out like x (so that the heads of a projection stay a view); the values are those of the unfused ops.
 */
export function applyRotary(x: Tensor, cosT: Tensor, sinT: Tensor): Tensor {
  const d = x.shape[x.rank - 1]!;
  const shape = broadcastShapes(x.shape, broadcastShapes(cosT.shape, sinT.shape));
  if (
    !sameShape(shape, x.shape) ||
    d % 2 !== 0 ||
    x.dtype !== "float32" ||
    (isGradEnabled() && (cosT.requiresGrad || sinT.requiresGrad))
  ) {
    return add(mul(x, cosT), mul(rotateHalf(x), sinT));
  }
  const c = toFloat(cosT),
    s = toFloat(sinT);
  const cv = broadcastView(c, shape),
    sv = broadcastView(s, shape);
  const out = emptyLike(x);
  backend().rotary(x, cv, sv, out, false);
  return record("rotary", out, [x], (dy) => {
    const dx = emptyLike(dy);
    backend().rotary(dy, cv, sv, dx, true);
    return [dx];
  });
}
