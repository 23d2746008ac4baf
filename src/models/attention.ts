/** Attention shared by the architectures: mask construction and multi-head / grouped-query attention. */
import {
  type Tensor,
  add,
  attention,
  div,
  dropout,
  matmul,
  mul,
  reshape,
  softmax,
  tanh,
  tensor,
  transpose,
  MASK_VALUE,
} from "../tensor/index.js";

/**
 * Additive attention mask [batch, 1, q, k] for q queries that are the last q of k positions: MASK_VALUE where
 * the key is padding (attentionMask 0) or, when causal, lies after the query (or, with a sliding window w,
 * w or more positions before it); 0 elsewhere. Null when nothing is masked.
 */
export function buildAttentionMask(
  attentionMask: Tensor | undefined,
  batch: number,
  q: number,
  k: number,
  causal: boolean,
  slidingWindow?: number | null,
): Tensor | null {
  const pad = attentionMask ? Array.from(attentionMask.dataSync()) : null;
  if (pad && pad.length !== batch * k) {
    throw new Error(
      `attentionMask has ${pad.length / batch} positions per row but the keys span ${k} (past + current tokens)`,
    );
  }
  const hasPadding = pad?.some((v) => v === 0) ?? false;
  const window = causal && slidingWindow && k > slidingWindow ? slidingWindow : null;
  if (!hasPadding && !window && (!causal || q === 1)) return null;
  const values = new Float32Array(batch * q * k);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < q; i++) {
      for (let j = 0; j < k; j++) {
        const pos = i + (k - q);
        const future = causal && (j > pos || (window !== null && j <= pos - window));
        const padded = pad !== null && pad[b * k + j] === 0;
        values[(b * q + i) * k + j] = future || padded ? MASK_VALUE : 0;
      }
    }
  }
  return tensor(values, [batch, 1, q, k]);
}

/** [batch, length, heads·headDim] → [batch, heads, length, headDim]. */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, t, c] = x.shape as [number, number, number];
  return transpose(reshape(x, [b, t, heads, c / heads]), 1, 2);
}

/** [batch, heads, length, headDim] → [batch, length, heads·headDim]. */
export function mergeHeads(x: Tensor): Tensor {
  const [b, h, t, d] = x.shape as [number, number, number, number];
  return reshape(transpose(x, 1, 2), [b, t, h * d]);
}

/** Options of attend(). */
export interface AttendOptions {
  /** Multiplies q·kᵀ (default 1/√headDim). */
  scale?: number;
  /** Dropout on the attention probabilities (train mode only). */
  dropoutP?: number;
  training?: boolean;
  /** An additive bias [1|batch, heads, q, k] added to the scores before the mask (T5's relative positions). */
  positionBias?: Tensor | null;
  /** Soft-capping of the scores before the mask: cap·tanh(scores / cap) (Gemma 2). */
  softcap?: number | null;
}

/**
 * softmax(softcap(q·kᵀ·scale) + mask)·v with q [B, H, Tq, D] and k, v [B, Hkv, Tk, D]. With grouped-query attention
 * (H = r·Hkv) the r query heads sharing a key/value head are stacked into one matrix, so keys and values are
 * never copied r times.
 */
export function attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null, opts: AttendOptions = {}): Tensor {
  // The fused op (one kernel for mask and softmax, no copies of heads, dropout mask regenerated in the backward pass)
  // unless a bias that needs gradients joins the scores.
  if (!opts.positionBias && !opts.softcap && !mask?.requiresGrad) {
    return attention(q, k, v, {
      mask,
      ...(opts.scale !== undefined ? { scale: opts.scale } : {}),
      dropoutP: opts.dropoutP ?? 0,
      training: opts.training ?? false,
    });
  }
  const [b, h, tq, d] = q.shape as [number, number, number, number];
  const hkv = k.shape[1]!,
    tk = k.shape[2]!;
  if (h % hkv !== 0) throw new Error(`attention: ${h} query heads cannot share ${hkv} key/value heads`);
  const rep = h / hkv;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const qg = rep === 1 ? q : reshape(q, [b, hkv, rep * tq, d]);
  let scores = matmul(qg, transpose(k));
  if (scale !== 1) scores = mul(scores, scale);
  if (opts.softcap) scores = mul(tanh(div(scores, opts.softcap)), opts.softcap);
  if (rep !== 1) scores = reshape(scores, [b, hkv, rep, tq, tk]);
  if (opts.positionBias)
    scores = add(
      scores,
      rep === 1 ? opts.positionBias : reshape(opts.positionBias, [opts.positionBias.shape[0]!, hkv, rep, tq, tk]),
    );
  if (mask) scores = add(scores, rep === 1 ? mask : reshape(mask, [mask.shape[0]!, 1, 1, tq, tk]));
  let probs = softmax(scores);
  if (opts.dropoutP) probs = dropout(probs, opts.dropoutP, opts.training ?? false);
  if (rep !== 1) probs = reshape(probs, [b, hkv, rep * tq, tk]);
  const out = matmul(probs, v);
  return rep === 1 ? out : reshape(out, [b, h, tq, d]);
}
