/**
 * Fused scaled-dot-product attention with an explicit backward: softmax(q·kᵀ·scale + mask), dropout, ·v, as GEMMs
 * that read q, k, v through their strides (head-split views of projections, never copied), the scale folded into the
 * GEMMs, mask and softmax in one kernel written in place, the dropout mask regenerated from its seed in the backward
 * pass instead of stored, and the output written straight into [batch, length, heads, dim] order so that merging
 * heads is a view. Grouped-query attention (H = r·Hkv) indexes the shared key/value head per query head, never
 * copying keys or values. The values are those of the unfused ops (matmul, mul, add, softmax, dropout, matmul) up to
 * the rounding of the scale inside the GEMM.
 */
import { backend } from "../../backend/index.js";
import { record } from "../autograd.js";
import { broadcastShapes, fmtShape, sameShape } from "../shape.js";
import { empty, emptyStrided, type Tensor } from "../tensor.js";
import { defaultGenerator, type Generator } from "../random.js";
import { broadcastView, toFloat } from "./elementwise.js";
import { contiguous } from "./views.js";

/** Options of attention(). */
export interface AttentionOptions {
  /** Additive mask broadcastable to [B, H, Tq, Tk] (0 or a large negative number), or null. */
  mask?: Tensor | null;
  /** Multiplies q·kᵀ (default 1/√dim). */
  scale?: number;
  /** Dropout probability on the attention probabilities (only when training). */
  dropoutP?: number;
  training?: boolean;
  generator?: Generator;
}

/** How BLAS reads the last two axes of a view [rows, cols] with strides sr, sc; null when it cannot. */
function matSpec(rows: number, cols: number, sr: number, sc: number): { trans: boolean; ld: number } | null {
  if ((sc === 1 || cols === 1) && (rows === 1 || sr >= Math.max(cols, 1)))
    return { trans: false, ld: rows === 1 ? Math.max(cols, 1) : sr };
  if ((sr === 1 || rows === 1) && (cols === 1 || sc >= Math.max(rows, 1)))
    return { trans: true, ld: cols === 1 ? Math.max(rows, 1) : sc };
  return null;
}

/** t itself when BLAS can read its last two axes, else a contiguous copy (recorded, so gradients still flow). */
function readable(t: Tensor): Tensor {
  const r = t.rank;
  return matSpec(t.shape[r - 2]!, t.shape[r - 1]!, t.strides[r - 2]!, t.strides[r - 1]!) ? t : contiguous(t, true);
}

interface Mat {
  t: Tensor;
  /** Read transposed: op(M) = Mᵀ with M the stored [rows, cols] matrix of the last two axes. */
  transposed: boolean;
  /** Batch strides for the batch axes of the GEMM and an extra offset. */
  batch: number[];
  offset?: number;
}

/** One batched GEMM over [B, Hkv, rep] (or [B, Hkv]) items. */
function gemm(
  A: Mat,
  B: Mat,
  batchShape: number[],
  m: number,
  n: number,
  k: number,
  out: Tensor,
  outBatch: number[],
  ldc: number,
  alpha: number,
  accumulate: boolean,
): void {
  const spec = (x: Mat, rows: number, cols: number) => {
    const r = x.t.rank;
    // op(M) is rows × cols; the stored matrix of the view is its transpose when `transposed`.
    const [sr, sc] = x.transposed
      ? [x.t.strides[r - 1]!, x.t.strides[r - 2]!]
      : [x.t.strides[r - 2]!, x.t.strides[r - 1]!];
    const s = matSpec(rows, cols, sr, sc);
    if (!s) throw new Error("internal: attention operand not readable by BLAS");
    return s;
  };
  const a = spec(A, m, k),
    b = spec(B, k, n);
  backend().gemm({
    a: A.t.storage,
    aOffset: A.t.offset + (A.offset ?? 0),
    transA: a.trans,
    lda: a.ld,
    aBatchStrides: A.batch,
    b: B.t.storage,
    bOffset: B.t.offset + (B.offset ?? 0),
    transB: b.trans,
    ldb: b.ld,
    bBatchStrides: B.batch,
    batchShape,
    m,
    n,
    k,
    out: out.storage,
    accumulate,
    alpha,
    outOffset: out.offset,
    ldc,
    outBatchStrides: outBatch,
  });
}

/**
 * softmax(q·kᵀ·scale + mask)·v for q [B, H, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv] with H a multiple of Hkv.
 * Returns [B, H, Tq, Dv] laid out as [B, Tq, H, Dv] (transpose(1, 2) and a reshape merge the heads without a copy).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new Error(
      `attention expects q, k, v of rank 4, got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`,
    );
  }
  const [B, H, Tq, D] = q.shape as [number, number, number, number];
  const [, Hkv, Tk] = k.shape as [number, number, number, number];
  const Dv = v.shape[3]!;
  if (k.shape[0] !== B || v.shape[0] !== B || v.shape[1] !== Hkv || v.shape[2] !== Tk || k.shape[3] !== D) {
    throw new Error(
      `attention: q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)} and v ${fmtShape(v.shape)} do not fit together`,
    );
  }
  if (H % Hkv !== 0) throw new Error(`attention: ${H} query heads cannot share ${Hkv} key/value heads`);
  if ([q, k, v].some((t) => t.dtype !== "float32")) throw new Error("attention needs float32 q, k, v");
  if (opts.mask && !sameShape(broadcastShapes(opts.mask.shape, [B, H, Tq, Tk]), [B, H, Tq, Tk])) {
    throw new Error(
      `attention: a mask of shape ${fmtShape(opts.mask.shape)} does not broadcast to the scores ` +
        `[${[B, H, Tq, Tk].join(", ")}]`,
    );
  }
  const rep = H / Hkv;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const mask = opts.mask ? toFloat(opts.mask) : null;
  const fq = readable(q),
    fk = readable(k),
    fv = readable(v);
  const sq = fq.strides,
    sk = fk.strides,
    sv = fv.strides;
  const items = [B, Hkv, rep];
  const S = [H * Tq * Tk, rep * Tq * Tk, Tq * Tk]; // batch strides of the contiguous [B, H, Tq, Tk] scores
  const qBatch = [sq[0]!, rep * sq[1]!, sq[1]!],
    kBatch = [sk[0]!, sk[1]!, 0],
    vBatch = [sv[0]!, sv[1]!, 0];

  // Scores, then probabilities in place.
  const probs = empty([B, H, Tq, Tk]);
  if (probs.size > 0 && D > 0) {
    gemm(
      { t: fq, transposed: false, batch: qBatch },
      { t: fk, transposed: true, batch: kBatch },
      items,
      Tq,
      Tk,
      D,
      probs,
      S,
      Tk,
      scale,
      false,
    );
  } else if (probs.size > 0) {
    backend().fill(probs.storage, 0);
  }
  const scoreShape = [B, H, Tq, Tk];
  backend().maskedSoftmax(probs.storage, scoreShape, mask ? broadcastView(mask, scoreShape) : null, probs.storage);

  const p = opts.dropoutP ?? 0;
  const drop = (opts.training ?? false) && p > 0;
  if (p < 0 || p >= 1) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  const [seed, counter] = drop ? (opts.generator ?? defaultGenerator).next(probs.size) : [0, 0];
  const dropped = (src: Tensor): Tensor => {
    if (!drop) return src;
    const d = empty(src.shape);
    backend().dropout(src, 1 - p, 1 / (1 - p), seed, counter, d.storage);
    return d;
  };

  // out[b, t, h, :] = P[b, h] · v[b, h / rep].
  const out = emptyStrided([B, H, Tq, Dv], [Tq * H * Dv, Dv, H * Dv, 1], B * Tq * H * Dv);
  const outBatch = [Tq * H * Dv, rep * Dv, Dv];
  const pd = dropped(probs);
  if (out.size > 0 && Tk > 0) {
    gemm(
      { t: pd, transposed: false, batch: S },
      { t: fv, transposed: false, batch: vBatch },
      items,
      Tq,
      Dv,
      Tk,
      out,
      outBatch,
      H * Dv,
      1,
      false,
    );
  } else if (out.size > 0) {
    backend().fill(out.storage, 0);
  }
  if (pd !== probs) pd.dispose();

  return record("attention", out, [fq, fk, fv], (dyIn) => {
    const dy = readable(dyIn);
    const sd = dy.strides;
    const dyBatch = [sd[0]!, rep * sd[1]!, sd[1]!];
    const dq = fq.requiresGrad ? emptyStrided([B, H, Tq, D], [Tq * H * D, D, H * D, 1], B * Tq * H * D) : null;
    const dk = fk.requiresGrad ? emptyStrided([B, Hkv, Tk, D], [Tk * Hkv * D, D, Hkv * D, 1], B * Tk * Hkv * D) : null;
    const dv = fv.requiresGrad
      ? emptyStrided([B, Hkv, Tk, Dv], [Tk * Hkv * Dv, Dv, Hkv * Dv, 1], B * Tk * Hkv * Dv)
      : null;
    const zero = (t: Tensor | null) => t && t.size > 0 && backend().fill(t.storage, 0);
    if (probs.size === 0) {
      [dq, dk, dv].forEach(zero);
      return [dq, dk, dv];
    }
    // dV[b, g] = Σ_r P̃[b, g·rep + r]ᵀ · dO[b, g·rep + r]   (P̃ the dropped-out probabilities)
    if (dv) {
      const pdB = dropped(probs);
      for (let r = 0; r < rep; r++) {
        if (Tq === 0) break;
        gemm(
          { t: pdB, transposed: true, batch: [S[0]!, S[1]!], offset: r * Tq * Tk },
          { t: dy, transposed: false, batch: [dyBatch[0]!, dyBatch[1]!], offset: r * sd[1]! },
          [B, Hkv],
          Tk,
          Dv,
          Tq,
          dv,
          [Tk * Hkv * Dv, Dv],
          Hkv * Dv,
          1,
          r > 0,
        );
      }
      if (Tq === 0) zero(dv);
      if (pdB !== probs) pdB.dispose();
    }
    if (!dq && !dk) return [dq, dk, dv];
    // dS = softmaxGrad(P, dropout(dO · vᵀ)), in one buffer.
    const ds = empty([B, H, Tq, Tk]);
    if (Dv > 0) {
      gemm(
        { t: dy, transposed: false, batch: dyBatch },
        { t: fv, transposed: true, batch: vBatch },
        items,
        Tq,
        Tk,
        Dv,
        ds,
        S,
        Tk,
        1,
        false,
      );
    } else {
      backend().fill(ds.storage, 0);
    }
    if (drop) backend().dropout(ds, 1 - p, 1 / (1 - p), seed, counter, ds.storage);
    backend().softmaxGrad(probs.storage, ds.storage, B * H * Tq, Tk, false, ds.storage);
    // dQ[b, h] = scale · dS[b, h] · k[b, h / rep];  dK[b, g] = scale · Σ_r dS[b, g·rep + r]ᵀ · q[b, g·rep + r]
    if (dq) {
      if (Tk > 0) {
        gemm(
          { t: ds, transposed: false, batch: S },
          { t: fk, transposed: false, batch: kBatch },
          items,
          Tq,
          D,
          Tk,
          dq,
          [Tq * H * D, rep * D, D],
          H * D,
          scale,
          false,
        );
      } else {
        zero(dq);
      }
    }
    if (dk) {
      for (let r = 0; r < rep; r++) {
        if (Tq === 0) break;
        gemm(
          { t: ds, transposed: true, batch: [S[0]!, S[1]!], offset: r * Tq * Tk },
          { t: fq, transposed: false, batch: [qBatch[0]!, qBatch[1]!], offset: r * sq[1]! },
          [B, Hkv],
          Tk,
          D,
          Tq,
          dk,
          [Tk * Hkv * D, D],
          Hkv * D,
          scale,
          r > 0,
        );
      }
      if (Tq === 0) zero(dk);
    }
    ds.dispose();
    return [dq, dk, dv];
  });
}
