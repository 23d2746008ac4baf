/**
 * The math of LoRA's add_weighted_adapter (peft 0.15.2), per layer, on plain arrays. Every LoRA layer kind is
 * handled alike: an adapter's factors are A [r, n] and B [m, r] with ΔW = B·A·scaling in [m, n] orientation —
 * [out, in] for Linear and GPT-2's Conv1D (peft transposes Conv1D's delta back before its SVD), [dim, vocab] for
 * embeddings (lora_embedding_A / lora_embedding_B). Sums are accumulated in Float64 and stored as float32.
 *
 * - linear: A = Σ √(wᵢ·sᵢ)·Aᵢ and B = Σ √(wᵢ·sᵢ)·Bᵢ (the product is NOT Σ wᵢ·ΔWᵢ; needs equal ranks).
 * - cat: A = [w₁·s₁·A₁; w₂·s₂·A₂; …] stacked by rows, B = [B₁, B₂, …] by columns, zero-padded to the new rank:
 *   B·A = Σ wᵢ·sᵢ·Bᵢ·Aᵢ exactly.
 * - svd: the rank-k truncated SVD of M = Σ wᵢ·sᵢ·ΔWᵢ = Σ wᵢ·sᵢ²·Bᵢ·Aᵢ (peft weights the already-scaled delta by
 *   weight·scaling again), B = U·diag(S), A = Vh; with a clamp, both are clipped to [−q, q] where q is
 *   torch.quantile(clamp) of all the signed entries of U·diag(S) and Vh, as peft does. Singular vectors' signs
 *   are implementation-defined, so clamped values (not the unclamped B·A) can differ from torch's.
 */
import { quantile, svdOfProduct, orthonormalComplementVector } from "../../../tensor/linalg.js";

/** One source adapter in one layer. */
export interface LoraPart {
  /** A [r, n], row-major. */
  a: ArrayLike<number>;
  /** B [m, r], row-major. */
  b: ArrayLike<number>;
  r: number;
  weight: number;
  scaling: number;
}

/** The new adapter's factors in one layer: A [rank, n], B [m, rank], row-major. */
export interface CombinedFactors {
  a: Float32Array;
  b: Float32Array;
}

/** linear: A = Σ √(w·s)·Aᵢ, B = Σ √(w·s)·Bᵢ (all ranks equal; w·s ≥ 0, checked by the caller). */
export function combineLinear(parts: readonly LoraPart[], m: number, n: number): CombinedFactors {
  const r = parts[0]!.r;
  const a = new Float64Array(r * n), b = new Float64Array(m * r);
  for (const p of parts) {
    if (p.r !== r) throw new Error(`linear combination needs equal ranks, got ${r} and ${p.r}`);
    const f = Math.sqrt(p.weight * p.scaling);
    for (let i = 0; i < a.length; i++) a[i]! += f * p.a[i]!;
    for (let i = 0; i < b.length; i++) b[i]! += f * p.b[i]!;
  }
  return { a: Float32Array.from(a), b: Float32Array.from(b) };
}

/** cat: the A's stacked (weight·scaling folded in), the B's side by side, zero-padded to `rank`. */
export function combineCat(parts: readonly LoraPart[], m: number, n: number, rank: number): CombinedFactors {
  const total = parts.reduce((s, p) => s + p.r, 0);
  if (total > rank) throw new Error(`cat combination needs rank ≥ ${total} (the sum of the ranks), got ${rank}`);
  const a = new Float32Array(rank * n), b = new Float32Array(m * rank);
  let row = 0;
  for (const p of parts) {
    const f = p.weight * p.scaling;
    for (let i = 0; i < p.r * n; i++) a[row * n + i] = p.a[i]! * f;
    for (let i = 0; i < m; i++) for (let l = 0; l < p.r; l++) b[i * rank + row + l] = p.b[i * p.r + l]!;
    row += p.r;
  }
  return { a, b };
}

/**
 * svd: rank-`rank` truncated SVD of Σ wᵢ·sᵢ²·Bᵢ·Aᵢ (computed from the factors, without forming the m×n matrix
 * when its rank bound Σrᵢ is below min(m, n)), optionally clamped. Beyond the available singular triplets the
 * singular values are 0: B gets zero columns, A further orthonormal rows (what torch's full_matrices=True
 * leaves there), and zero rows past n.
 */
export function combineSvd(parts: readonly LoraPart[], m: number, n: number, rank: number, clamp: number | null): CombinedFactors {
  const total = parts.reduce((s, p) => s + p.r, 0);
  const bcat = new Float64Array(m * total), acat = new Float64Array(total * n);
  let off = 0;
  for (const p of parts) {
    const f = p.weight * p.scaling * p.scaling;
    for (let i = 0; i < m; i++) for (let l = 0; l < p.r; l++) bcat[i * total + off + l] = f * p.b[i * p.r + l]!;
    for (let i = 0; i < p.r * n; i++) acat[off * n + i] = p.a[i]!;
    off += p.r;
  }
  const d = svdOfProduct(bcat, acat, m, total, n);
  const us = new Float64Array(m * rank), vh = new Float64Array(rank * n);
  const kept = Math.min(rank, d.k);
  for (let i = 0; i < m; i++) for (let t = 0; t < kept; t++) us[i * rank + t] = d.u[i * d.k + t]! * d.s[t]!;
  const rows: Float64Array[] = [];
  for (let t = 0; t < d.k; t++) rows.push(d.vh.subarray(t * n, (t + 1) * n));
  for (let t = 0; t < rank; t++) {
    if (t >= d.k && rows.length < n) rows.push(orthonormalComplementVector(rows, n));
    if (t < rows.length) vh.set(rows[t]!, t * n);
  }
  if (clamp !== null) {
    const all = new Float64Array(us.length + vh.length);
    all.set(us);
    all.set(vh, us.length);
    const hi = quantile(all, clamp), lo = -hi;
    // torch.clamp(x, lo, hi) = min(max(x, lo), hi), also when lo > hi.
    for (const arr of [us, vh]) for (let i = 0; i < arr.length; i++) arr[i] = Math.min(Math.max(arr[i]!, lo), hi);
  }
  return { a: Float32Array.from(vh), b: Float32Array.from(us) };
}
