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
 * - ties, dare_linear, dare_ties, magnitude_prune (peft's merge_utils): like linear, A and B are each merged on
 *   their own with weights √(wᵢ·sᵢ), but through `mergeTaskTensors` (pruning, sign election, disjoint mean).
 * - their _svd variants: the dense deltas sᵢ·Bᵢ·Aᵢ are merged by `mergeTaskTensors` with weights wᵢ·sᵢ, then
 *   factored by a truncated SVD as in svd.
 *
 * DARE's masks are reproducible against peft with a TorchGenerator standing for torch's global generator: peft first
 * draws the new adapter's initial factors from it (`skipNewAdapterInitDraws`), then one torch.bernoulli per pruned
 * tensor, layer by layer, each over the tensor as peft holds it (`torchBernoulliMask`, combineSvd's `deltaTransposed`).
 */
import { quantile, svdF64, svdOfProduct, orthonormalComplementVector, type SvdF64 } from "../../../tensor/linalg.js";
import { defaultGenerator } from "../../../tensor/random.js";
import type { TorchGenerator } from "../../../tensor/torch-generator.js";
import { ConfigError } from "../../../errors.js";

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

/** How task tensors are merged (peft's merge_utils functions; "linear" is task_arithmetic). */
export type TaskMerge = "linear" | "ties" | "dare_linear" | "dare_ties" | "magnitude_prune";

/** How ties elects each entry's sign: by the sum of the values ("total") or by counting signs ("frequency"). */
export type MajoritySignMethod = "total" | "frequency";

/** DARE's mask source: `count` entries in row-major order, each 1 with probability `density` and 0 otherwise. */
export type BernoulliMaskSource = (count: number, density: number) => ArrayLike<number>;

/** DARE masks from peft-ts' own seeded generator (manualSeed): the default, unrelated to torch's masks. */
export const seededBernoulliMask: BernoulliMaskSource = (count, density) => {
  const t = defaultGenerator.bernoulli([count], density);
  try {
    return t.dataSync().slice();
  } finally {
    t.dispose();
  }
};

/**
 * DARE masks as peft draws them: torch.bernoulli(torch.full_like(t, density)) on a float32 tensor, so with density
 * rounded to float32 and one float draw per entry, in row-major order.
 */
export function torchBernoulliMask(generator: TorchGenerator): BernoulliMaskSource {
  return (count, density) => generator.bernoulliValues(new Float32Array(count).fill(density));
}

/** A mask source drawing in [n, m] row-major order for tensors kept as [m, n]. */
function transposedMask(mask: BernoulliMaskSource, m: number, n: number): BernoulliMaskSource {
  return (count, density) => {
    const drawn = mask(count, density);
    const out = new Float32Array(count);
    for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) out[i * n + j] = drawn[j * m + i]!;
    return out;
  };
}

/** What peft's update_layer draws when it creates the new adapter in one layer. */
export interface NewAdapterInit {
  /** An embedding (torch.randn factors) rather than a Linear / Conv1D (nn.Linear factors). */
  embedding: boolean;
  /** Entries of A [r, in] and of B [out, r]. */
  aSize: number;
  bSize: number;
  /** B's bias entries (lora_bias), else 0. */
  biasSize: number;
  initLoraWeights: boolean | string;
}

/** The init_lora_weights values whose draws `skipNewAdapterInitDraws` knows (the others rewrite the base weight). */
export function replaysInitDraws(init: boolean | string): boolean {
  return typeof init === "boolean" || init.toLowerCase() === "gaussian";
}

/**
 * Moves `generator` past the draws peft 0.15.2 takes from torch's global generator while add_weighted_adapter
 * creates the new adapter in one layer; the values themselves are overwritten by the combination. Linear: nn.Linear's
 * Kaiming-uniform init of A, then of B (and its bias), then reset_lora_parameters redraws A (uniform for true, normal
 * for "gaussian"). Embedding: torch.randn of A, then of B, then a truthy init redraws B from a normal.
 */
export function skipNewAdapterInitDraws(generator: TorchGenerator, layer: NewAdapterInit): void {
  const init = layer.initLoraWeights;
  if (layer.embedding) {
    generator.normalValues(layer.aSize);
    generator.normalValues(layer.bSize);
    if (init !== false) generator.normalValues(layer.bSize);
    return;
  }
  generator.uniformValues(layer.aSize);
  generator.uniformValues(layer.bSize);
  generator.uniformValues(layer.biasSize);
  if (init === true) generator.uniformValues(layer.aSize);
  else if (init !== false) generator.normalValues(layer.aSize);
}

/** The pruning and sign-election settings of mergeTaskTensors. */
export interface TaskMergeOptions {
  /** Fraction of entries kept by pruning, in [0, 1] (≥ 1 keeps all); needed by every merge but "linear". */
  density: number | null;
  majoritySignMethod: MajoritySignMethod;
  /** Where DARE's random masks come from. */
  mask: BernoulliMaskSource;
}

/** peft's magnitude_based_pruning: keep the ⌊density·size⌋ entries of largest |value|, zero the rest. */
export function magnitudePruned(t: Float64Array, density: number): Float64Array {
  const k = Math.trunc(density * t.length);
  const order = Array.from(t.keys()).sort((i, j) => Math.abs(t[j]!) - Math.abs(t[i]!));
  const out = new Float64Array(t.length);
  for (const i of order.slice(0, k)) out[i] = t[i]!;
  return out;
}

/**
 * peft's prune: "magnitude" keeps the largest entries, "random" multiplies by a Bernoulli(density) mask. peft
 * 0.15.2 does not rescale DARE's survivors by 1/density (its torch.div result is discarded), so neither does this.
 */
function pruned(
  t: Float64Array,
  density: number,
  method: "magnitude" | "random",
  mask: BernoulliMaskSource,
): Float64Array {
  if (density >= 1) return t;
  if (method === "magnitude") return magnitudePruned(t, density);
  const keep = mask(t.length, density);
  if (keep.length !== t.length)
    throw new Error(`the DARE mask source returned ${keep.length} values for a tensor of ${t.length}`);
  return t.map((x, i) => x * keep[i]!);
}

/**
 * peft's merge of task tensors (all the same size) with one weight each: optional pruning (magnitude for ties /
 * magnitude_prune, random for DARE), then either the weighted sum or, for the ties kinds, the disjoint merge —
 * per entry, the mean of the weighted values whose sign agrees with the elected majority sign.
 */
export function mergeTaskTensors(
  kind: TaskMerge,
  tensors: readonly Float64Array[],
  weights: readonly number[],
  opts: TaskMergeOptions,
): Float64Array {
  let ts = tensors;
  if (kind !== "linear") {
    const density = opts.density;
    if (density === null || !(density >= 0))
      throw new ConfigError(
        `combination type "${kind}" needs a density in [0, 1], got ${density}`,
        "pass density (the fraction of values kept), e.g. { density: 0.5 }",
      );
    const method = kind === "dare_linear" || kind === "dare_ties" ? "random" : "magnitude";
    ts = ts.map((t) => pruned(t, density, method, opts.mask));
  }
  const size = ts[0]!.length;
  const out = new Float64Array(size);
  if (kind !== "ties" && kind !== "dare_ties") {
    ts.forEach((t, k) => {
      for (let i = 0; i < size; i++) out[i]! += weights[k]! * t[i]!;
    });
    return out;
  }
  for (let i = 0; i < size; i++) {
    let elect = 0;
    for (const t of ts) elect += opts.majoritySignMethod === "total" ? t[i]! : Math.sign(t[i]!);
    const majority = elect >= 0 ? 1 : -1;
    let sum = 0,
      count = 0;
    ts.forEach((t, k) => {
      if (Math.sign(t[i]!) !== majority) return;
      sum += weights[k]! * t[i]!;
      count++;
    });
    out[i] = sum / Math.max(count, 1);
  }
  return out;
}

/**
 * linear, ties, dare_linear, dare_ties, magnitude_prune: A and B each merged by `kind` with weights √(wᵢ·sᵢ)
 * (all ranks equal; w·s ≥ 0, checked by the caller).
 */
export function combineFactorwise(
  kind: TaskMerge,
  parts: readonly LoraPart[],
  opts: TaskMergeOptions,
): CombinedFactors {
  const r = parts[0]!.r;
  for (const p of parts) if (p.r !== r) throw new Error(`"${kind}" combination needs equal ranks, got ${r} and ${p.r}`);
  const weights = parts.map((p) => Math.sqrt(p.weight * p.scaling));
  const a = mergeTaskTensors(
    kind,
    parts.map((p) => Float64Array.from(p.a)),
    weights,
    opts,
  );
  const b = mergeTaskTensors(
    kind,
    parts.map((p) => Float64Array.from(p.b)),
    weights,
    opts,
  );
  return { a: Float32Array.from(a), b: Float32Array.from(b) };
}

/** cat: the A's stacked (weight·scaling folded in), the B's side by side, zero-padded to `rank`. */
export function combineCat(parts: readonly LoraPart[], m: number, n: number, rank: number): CombinedFactors {
  const total = parts.reduce((s, p) => s + p.r, 0);
  if (total > rank) throw new Error(`cat combination needs rank ≥ ${total} (the sum of the ranks), got ${rank}`);
  const a = new Float32Array(rank * n),
    b = new Float32Array(m * rank);
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
 * svd (kind "linear") and the _svd variants: the rank-`rank` truncated SVD of the merged deltas, optionally clamped.
 * Plain svd decomposes Σ wᵢ·sᵢ²·Bᵢ·Aᵢ from the factors, without forming the m×n matrix when its rank bound Σrᵢ
 * is below min(m, n); the other kinds merge the dense deltas sᵢ·Bᵢ·Aᵢ with weights wᵢ·sᵢ first. `deltaTransposed`:
 * peft's get_delta_weight is [n, m] (Conv1D, embeddings), so DARE's masks are drawn in that order.
 */
export function combineSvd(
  kind: TaskMerge,
  parts: readonly LoraPart[],
  m: number,
  n: number,
  rank: number,
  clamp: number | null,
  opts: TaskMergeOptions,
  deltaTransposed: boolean,
): CombinedFactors {
  if (kind === "linear") return truncatedFactors(svdOfWeightedProduct(parts, m, n), m, n, rank, clamp);
  const deltas = parts.map((p) => {
    const d = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let l = 0; l < p.r; l++) {
        const bil = p.scaling * p.b[i * p.r + l]!;
        for (let j = 0; j < n; j++) d[i * n + j]! += bil * p.a[l * n + j]!;
      }
    return d;
  });
  const mergeOpts = deltaTransposed ? { ...opts, mask: transposedMask(opts.mask, m, n) } : opts;
  const merged = mergeTaskTensors(
    kind,
    deltas,
    parts.map((p) => p.weight * p.scaling),
    mergeOpts,
  );
  return truncatedFactors(svdF64(merged, m, n), m, n, rank, clamp);
}

/** The SVD of Σ wᵢ·sᵢ²·Bᵢ·Aᵢ from the stacked factors. */
function svdOfWeightedProduct(parts: readonly LoraPart[], m: number, n: number): SvdF64 {
  const total = parts.reduce((s, p) => s + p.r, 0);
  const bcat = new Float64Array(m * total),
    acat = new Float64Array(total * n);
  let off = 0;
  for (const p of parts) {
    const f = p.weight * p.scaling * p.scaling;
    for (let i = 0; i < m; i++) for (let l = 0; l < p.r; l++) bcat[i * total + off + l] = f * p.b[i * p.r + l]!;
    for (let i = 0; i < p.r * n; i++) acat[off * n + i] = p.a[i]!;
    off += p.r;
  }
  return svdOfProduct(bcat, acat, m, total, n);
}

/**
 * B = U·diag(S) and A = Vh truncated to `rank`, optionally clamped. Beyond the available singular triplets the
 * singular values are 0: B gets zero columns, A further orthonormal rows (what torch's full_matrices=True leaves
 * there), and zero rows past n.
 */
function truncatedFactors(d: SvdF64, m: number, n: number, rank: number, clamp: number | null): CombinedFactors {
  const us = new Float64Array(m * rank),
    vh = new Float64Array(rank * n);
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
    const hi = quantile(all, clamp),
      lo = -hi;
    // torch.clamp(x, lo, hi) = min(max(x, lo), hi), also when lo > hi.
    for (const arr of [us, vh]) for (let i = 0; i < arr.length; i++) arr[i] = Math.min(Math.max(arr[i]!, lo), hi);
  }
  return { a: Float32Array.from(vh), b: Float32Array.from(us) };
}
