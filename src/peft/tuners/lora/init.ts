/**
 * LoRA initialisers that read the base weight and rewrite it. PiSSA and OLoRA (peft's pissa_init, olora_init) leave
 * a residual: the adapter starts as the weight's principal part, so that residual + scaling·B·A is the original
 * weight and a fresh adapter changes nothing; their math is in Float64 on W as [out, in]. LoftQ (peft's loftq_init)
 * replaces W by its quantised-dequantised copy Q and starts B·A as the low-rank part of W − Q, in float32 as peft.
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
  return init === "pissa" || init === "olora" || init === "loftq" || pissaNiter(init) !== null;
}

/** LoftQ's quantisation bits and alternating iterations. */
export interface LoftqSettings {
  bits: number;
  iter: number;
}

/** The keys loftq_config may hold (peft's LoftQConfig) and their defaults when a key is absent. */
const LOFTQ_DEFAULTS = { loftq_bits: 4, loftq_iter: 1 } as const;

/**
 * LoftQ's settings from a LoRA config's loftq_config, checked as peft 0.15.2 does (it checks bits and iterations only
 * when the layer is initialised; here the config is refused up front). Keys other than peft's are refused.
 */
export function loftqSettings(loftqConfig: Record<string, unknown>): LoftqSettings {
  if (Object.keys(loftqConfig).length === 0) {
    throw new ConfigError(
      "`loftq_config` must be specified when `init_lora_weights` is 'loftq': give it e.g. " +
        '{"loftq_bits": 4, "loftq_iter": 1}',
    );
  }
  const unknown = Object.keys(loftqConfig).filter((k) => !(k in LOFTQ_DEFAULTS));
  if (unknown.length > 0)
    throw new ConfigError(
      `loftq_config has unknown key(s) ${unknown.join(", ")}; LoftQ takes only loftq_bits and loftq_iter`,
    );
  const bits = loftqConfig["loftq_bits"] ?? LOFTQ_DEFAULTS.loftq_bits,
    iter = loftqConfig["loftq_iter"] ?? LOFTQ_DEFAULTS.loftq_iter;
  if (bits !== 2 && bits !== 4 && bits !== 8)
    throw new ConfigError(
      `loftq_config.loftq_bits is ${JSON.stringify(bits)}: LoftQ only supports 2, 4 or 8 bits quantization`,
    );
  if (!Number.isInteger(iter) || (iter as number) <= 0)
    throw new ConfigError(
      `loftq_config.loftq_iter is ${JSON.stringify(iter)}: the number of iterations must be an integer greater than 0`,
    );
  return { bits, iter: iter as number };
}

/** Φ⁻¹(p), the standard normal quantile, for 0 < p < 1 (Wichura's AS 241, PPND16: relative error about 1e-16). */
export function normalQuantile(p: number): number {
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const t = 0.180625 - q * q;
    return (q * poly(AS241_A, t)) / poly(AS241_B, t);
  }
  let t = Math.sqrt(-Math.log(q < 0 ? p : 1 - p));
  let x: number;
  if (t <= 5) {
    t -= 1.6;
    x = poly(AS241_C, t) / poly(AS241_D, t);
  } else {
    t -= 5;
    x = poly(AS241_E, t) / poly(AS241_F, t);
  }
  return q < 0 ? -x : x;
}

/** c[0] + c[1]·t + … (Horner). */
function poly(c: readonly number[], t: number): number {
  let v = 0;
  for (let i = c.length - 1; i >= 0; i--) v = v * t + c[i]!;
  return v;
}

// AS 241's coefficients (Wichura 1988), lowest power first, with the published digits (beyond double precision).
// biome-ignore-start lint/correctness/noPrecisionLoss: the published table, digit for digit
const AS241_A = [
  3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125, 45921.953931549871457,
  67265.770927008700853, 33430.575583588128105, 2509.0809287301226727,
];
const AS241_B = [
  1, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077, 21213.794301586595867, 39307.89580009271061,
  28729.085735721942674, 5226.495278852545925,
];
const AS241_C = [
  1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504, 1.27045825245236838258,
  0.24178072517745061177, 0.0227238449892691845833, 7.7454501427834140764e-4,
];
const AS241_D = [
  1, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455, 0.14810397642748007459,
  0.0151986665636164571966, 5.475938084995344946e-4, 1.05075007164441684324e-9,
];
const AS241_E = [
  6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123, 0.026532189526576123093,
  0.0012426609473880784386, 2.71155556874348757815e-5, 2.01033439929228813265e-7,
];
const AS241_F = [
  1, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525, 7.868691311456132591e-4,
  1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15,
];
// biome-ignore-end lint/correctness/noPrecisionLoss: the published table, digit for digit

/**
 * torch.linspace(start, end, n) in float32 as torch 1.13's CPU kernel computes it (AVX2 build, matched bit for bit):
 * each 8-wide vector starts at start + step·i₀ (or end − step·(n−1−i₀) past the half), rounded once, and adds step·j;
 * the last n mod 16 go one by one. Another vector width moves a few table entries by an ulp (~1e-7).
 */
function linspaceF32(start: number, end: number, n: number): number[] {
  const f = Math.fround,
    s = f(start),
    e = f(end),
    step = f((e - s) / (n - 1));
  const scalarFrom = n - (n % 16);
  return Array.from({ length: n }, (_, i) => {
    const i0 = i < scalarFrom ? i - (i % 8) : i;
    const base = f(i0 < Math.floor(n / 2) ? s + step * i0 : e - step * (n - 1 - i0));
    return f(base + f(step * (i - i0)));
  });
}

/**
 * peft's NFQuantizer "normal" table for `bits` (asymmetric, offset 0.9677083): the normal quantiles at 2^(b−1)
 * points from the offset to ½ and their negatives at 2^(b−1) − 1 points, with 0, sorted and divided by the largest.
 */
export function normalFloatTable(bits: number): Float32Array {
  const half = 2 ** bits / 2,
    offset = 0.9677083;
  const positive = linspaceF32(offset, 0.5, half + 1)
    .slice(0, -1)
    .map(normalQuantile);
  const negative = linspaceF32(offset, 0.5, half)
    .slice(0, -1)
    .map((p) => -normalQuantile(p));
  const values = Float32Array.from([...positive, 0, ...negative]).sort();
  const max = values[values.length - 1]!;
  return values.map((v) => v / max);
}

/**
 * Quantise then dequantise W in blocks of 64 consecutive values (row-major), as NFQuantizer's quantize_block and
 * dequantize_block: each value divided by its block's largest |value| maps to the nearest table entry (the first on
 * a tie, as torch.argmin). A block of zeros stays zero (peft's 0/0 picks entry 0, times 0).
 */
export function nfQuantizeDequantize(w: Float32Array, table: Float32Array): Float32Array {
  const f = Math.fround,
    out = new Float32Array(w.length);
  for (let start = 0; start < w.length; start += LOFTQ_BLOCK) {
    let max = 0;
    for (let i = start; i < start + LOFTQ_BLOCK; i++) max = Math.max(max, Math.abs(w[i]!));
    if (max === 0) continue;
    for (let i = start; i < start + LOFTQ_BLOCK; i++) {
      const normed = f(w[i]! / max);
      let best = 0,
        bestDiff = Infinity;
      for (let k = 0; k < table.length; k++) {
        const diff = Math.abs(f(normed - table[k]!));
        if (diff < bestDiff) [best, bestDiff] = [k, diff];
      }
      out[i] = table[best]! * max;
    }
  }
  return out;
}

/** NFQuantizer's block size. */
const LOFTQ_BLOCK = 64;

/** LoftQ's factors: A [r, in], B [out, r] (row-major) and the dequantised weight that replaces W. */
export interface LoftqFactors {
  a: Float32Array;
  b: Float32Array;
  dequantized: Float32Array;
}

/**
 * LoftQ (peft's loftq_init on its NFQuantizer path): `iter` times, Q = dequant(quant(W − B·A)) and B·A = the rank-r
 * SVD part of W − Q, with B = U_r·√S_r and A = √S_r·V_rᵀ (B·A starts at 0). The LoRA scaling plays no part: peft
 * sets B·A, not scaling·B·A, to the error's low-rank part. Values are float32 between steps, as in torch.
 */
export function loftqFactors(
  w: ArrayLike<number>,
  out: number,
  inF: number,
  r: number,
  { bits, iter }: LoftqSettings,
): LoftqFactors {
  const weight = Float32Array.from(w),
    table = normalFloatTable(bits);
  const a = new Float32Array(r * inF),
    b = new Float32Array(out * r);
  let residual: Float32Array = weight,
    dequantized: Float32Array = weight;
  for (let step = 0; step < iter; step++) {
    dequantized = nfQuantizeDequantize(residual, table);
    const { u, s, vh, k } = svdF64(
      weight.map((v, i) => v - dequantized[i]!),
      out,
      inF,
    );
    for (let l = 0; l < r; l++) {
      const root = Math.sqrt(s[l]!);
      for (let j = 0; j < inF; j++) a[l * inF + j] = root * vh[l * inF + j]!;
      for (let i = 0; i < out; i++) b[i * r + l] = root * u[i * k + l]!;
    }
    residual = Float32Array.from(residualOf(weight, Float64Array.from(a), Float64Array.from(b), out, inF, r, 1));
  }
  return { a, b, dequantized };
}

/** W − scaling·B·A, all row-major. */
function residualOf(
  w: ArrayLike<number>,
  a: Float64Array,
  b: Float64Array,
  out: number,
  inF: number,
  r: number,
  scaling: number,
): Float64Array {
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
export function pissaFactors(
  w: ArrayLike<number>,
  out: number,
  inF: number,
  r: number,
  scaling: number,
  niter: number | null,
): BaseWeightFactors {
  let u: Float64Array, s: Float64Array, vt: Float64Array, k: number;
  if (niter === null) {
    const d = svdF64(w, out, inF);
    ({ u, s, vh: vt, k } = d);
  } else {
    const d = svdLowRankF64(w, out, inF, r, niter, (rows, cols) =>
      Float64Array.from(defaultGenerator.normal([rows, cols]).dataSync()),
    );
    ({ u, s } = d);
    k = r;
    vt = new Float64Array(r * inF);
    for (let j = 0; j < inF; j++) for (let l = 0; l < r; l++) vt[l * inF + j] = d.v[j * r + l]!;
  }
  const a = new Float64Array(r * inF),
    b = new Float64Array(out * r);
  for (let l = 0; l < r; l++) {
    const root = Math.sqrt(s[l]! / scaling);
    for (let j = 0; j < inF; j++) a[l * inF + j] = root * vt[l * inF + j]!;
    for (let i = 0; i < out; i++) b[i * r + l] = root * u[i * k + l]!;
  }
  return { a, b, residual: residualOf(w, a, b, out, inF, r, scaling) };
}

/** OLoRA: W [out, in] = Q·R; B = Q[:, :r], A = R[:r] (not rescaled: peft subtracts scaling·B·A from W). */
export function oloraFactors(
  w: ArrayLike<number>,
  out: number,
  inF: number,
  r: number,
  scaling: number,
): BaseWeightFactors {
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
 * Run PiSSA / OLoRA / LoftQ on a layer: write A [r, in] and B [out, r] and replace the base weight by the residual
 * (LoftQ: by the dequantised weight). Refuses what peft 0.15.2 cannot do correctly: a rank above min(out, in),
 * OLoRA or LoftQ on a transposed (Conv1D) weight (peft decomposes the stored [in, out] weight there, and the adapter
 * no longer fits the layer), LoftQ on a weight whose size is not a multiple of its block size 64.
 */
export function initFromBaseWeight(
  host: BaseWeightHost,
  a: Tensor,
  b: Tensor,
  init: string,
  r: number,
  scaling: number,
  key: string,
  loftq?: LoftqSettings,
): void {
  const { outFeatures: out, inFeatures: inF } = host;
  if (r > Math.min(out, inF)) {
    throw new ConfigError(
      `init_lora_weights "${init}" on ${key}: r = ${r} exceeds min(out, in) = ` +
        `${Math.min(out, inF)} of its [${out}, ${inF}] weight, so its decomposition has fewer than ` +
        `r parts; lower r (or rank_pattern for this module)`,
    );
  }
  if ((init === "olora" || init === "loftq") && host.fanInFanOut) {
    throw new ConfigError(
      `init_lora_weights "${init}" on ${key}: the layer stores its weight transposed ` +
        `(fan_in_fan_out, GPT-2's Conv1D), where peft 0.15.2 decomposes the stored [in, out] ` +
        `weight and the adapter does not fit the layer; ` +
        `${init === "olora" ? 'use "pissa" or ' : ""}target Linear layers`,
    );
  }
  if (init === "loftq" && (out * inF) % LOFTQ_BLOCK !== 0) {
    throw new ConfigError(
      `init_lora_weights "loftq" on ${key}: its [${out}, ${inF}] weight has ${out * inF} values, ` +
        `not a multiple of LoftQ's quantisation block size ${LOFTQ_BLOCK}; leave this module out ` +
        `of target_modules`,
    );
  }
  noGrad(() => {
    const w = host.baseWeightOutIn().dataSync();
    let next: { a: ArrayLike<number>; b: ArrayLike<number>; weight: ArrayLike<number> };
    if (init === "loftq") {
      const q = loftqFactors(w, out, inF, r, loftq ?? loftqSettings({}));
      next = { a: q.a, b: q.b, weight: q.dequantized };
    } else {
      const p =
        init === "olora"
          ? oloraFactors(w, out, inF, r, scaling)
          : pissaFactors(w, out, inF, r, scaling, pissaNiter(init));
      next = { a: p.a, b: p.b, weight: p.residual };
    }
    const writes: [ArrayLike<number>, number[], (t: Tensor) => void][] = [
      [next.a, [r, inF], (t) => a.copy_(t)],
      [next.b, [out, r], (t) => b.copy_(t)],
      [next.weight, [out, inF], (t) => host.setBaseWeightOutIn(t)],
    ];
    for (const [values, shape, write] of writes) {
      const t = tensor(Float32Array.from(values), shape);
      write(t);
      t.dispose();
    }
  });
}
