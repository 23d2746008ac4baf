/**
 * LoRA initialisers that read the base weight and leave a residual in it (peft's pissa_init and olora_init): the
 * adapter starts as the weight's principal part, so that residual + scaling·B·A is the original weight and a fresh
 * adapter changes nothing. All math in Float64 on W as [out, in].
 */
import { ConfigError } from "../../../errors.js";
import { qrLeadingF64, svdF64, svdLowRankF64 } from "../../../tensor/linalg.js";
import { defaultGenerator, noGrad, tensor, type Tensor } from "../../../tensor/index.js";

/** A and B as row-major Float64 ([r, in] and [out, r]) and the residual weight [out, in] they leave. */
export interface BaseWeightFactors {
  a: Float64Array;
  b: Float64Array;
  residual: Float64Array;
}

/** The number of subspace iterations of "pissa_niter_<n>", or null for exact "pissa" (and other inits). */
export function pissaNiter(init: unknown): number | null {
  const m = typeof init === "string" ? /^pissa_niter_(\d+)$/.exec(init) : null;
  return m ? Number(m[1]) : null;
}

/** Whether an init_lora_weights value decomposes the base weight (and so rewrites it). */
export function initUsesBaseWeight(init: unknown): boolean {
  return init === "pissa" || init === "olora" || pissaNiter(init) !== null;
}

/** W − scaling·B·A, all row-major. */
function residualOf(w: ArrayLike<number>, a: Float64Array, b: Float64Array, out: number, inF: number, r: number, scaling: number): Float64Array {
  const res = Float64Array.from(w);
  for (let i = 0; i < out; i++) {
    for (let l = 0; l < r; l++) {
      const bil = scaling * b[i * r + l]!;
      if (bil === 0) continue;
      for (let j = 0; j < inF; j++) res[i * inF + j]! -= bil * a[l * inF + j]!;
    }
  }
  return res;
}

/**
 * PiSSA: W [out, in] = U·S·Vᵀ; with S_r = S[:r] / scaling, B = U_r·√S_r and A = √S_r·V_rᵀ, so scaling·B·A is
 * W's best rank-r part. `niter` null takes the exact SVD; a number takes torch.svd_lowrank with that many
 * subspace iterations (its Gaussian start comes from peft-ts' generator, not torch's).
 */
export function pissaFactors(w: ArrayLike<number>, out: number, inF: number, r: number, scaling: number, niter: number | null): BaseWeightFactors {
  let u: Float64Array, s: Float64Array, vt: Float64Array, k: number;
  if (niter === null) {
    const d = svdF64(w, out, inF);
    ({ u, s, vh: vt, k } = d);
  } else {
    const d = svdLowRankF64(w, out, inF, r, niter, (rows, cols) => Float64Array.from(defaultGenerator.normal([rows, cols]).dataSync()));
    ({ u, s } = d);
    k = r;
    vt = new Float64Array(r * inF);
    for (let j = 0; j < inF; j++) for (let l = 0; l < r; l++) vt[l * inF + j] = d.v[j * r + l]!;
  }
  const a = new Float64Array(r * inF), b = new Float64Array(out * r);
  for (let l = 0; l < r; l++) {
    const root = Math.sqrt(s[l]! / scaling);
    for (let j = 0; j < inF; j++) a[l * inF + j] = root * vt[l * inF + j]!;
    for (let i = 0; i < out; i++) b[i * r + l] = root * u[i * k + l]!;
  }
  return { a, b, residual: residualOf(w, a, b, out, inF, r, scaling) };
}

/** OLoRA: W [out, in] = Q·R; B = Q[:, :r], A = R[:r] (not rescaled: peft subtracts scaling·B·A from W). */
export function oloraFactors(w: ArrayLike<number>, out: number, inF: number, r: number, scaling: number): BaseWeightFactors {
  const { q, r: R } = qrLeadingF64(w, out, inF, r);
  return { a: R, b: q, residual: residualOf(w, R, q, out, inF, r, scaling) };
}

/** What a base-weight initialiser needs from the layer it runs on. */
export interface BaseWeightHost {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly fanInFanOut: boolean;
  baseWeightOutIn(): Tensor;
  setBaseWeightOutIn(w: Tensor): void;
}

/**
 * Run PiSSA / OLoRA on a layer: write A [r, in] and B [out, r] and replace the base weight by the residual.
 * Refuses what peft 0.15.2 cannot do correctly: a rank above min(out, in), OLoRA on a transposed (Conv1D)
 * weight (peft decomposes the stored [in, out] weight there, and the adapter no longer reproduces the layer).
 */
export function initFromBaseWeight(host: BaseWeightHost, a: Tensor, b: Tensor, init: string, r: number, scaling: number, key: string): void {
  const { outFeatures: out, inFeatures: inF } = host;
  if (r > Math.min(out, inF)) {
    throw new ConfigError(`init_lora_weights "${init}" on ${key}: r = ${r} exceeds min(out, in) = ${Math.min(out, inF)} of its [${out}, ${inF}] weight, so its decomposition has fewer than r parts; lower r (or rank_pattern for this module)`);
  }
  if (init === "olora" && host.fanInFanOut) {
    throw new ConfigError(`init_lora_weights "olora" on ${key}: the layer stores its weight transposed (fan_in_fan_out, GPT-2's Conv1D), where peft 0.15.2 decomposes the stored [in, out] weight and the adapter does not reproduce the layer; use "pissa" or target Linear layers`);
  }
  noGrad(() => {
    const w = host.baseWeightOutIn().dataSync();
    const f = init === "olora" ? oloraFactors(w, out, inF, r, scaling) : pissaFactors(w, out, inF, r, scaling, pissaNiter(init));
    for (const [param, values, shape] of [[a, f.a, [r, inF]], [b, f.b, [out, r]]] as const) {
      const t = tensor(Float32Array.from(values), [...shape]);
      param.copy_(t);
      t.dispose();
    }
    const residual = tensor(Float32Array.from(f.residual), [out, inF]);
    host.setBaseWeightOutIn(residual);
    residual.dispose();
  });
}
