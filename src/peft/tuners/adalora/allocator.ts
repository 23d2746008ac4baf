/**
 * AdaLoRA's RankAllocator (peft 0.15.2), on plain float32 arrays:
 *
 * - sensitivity of every adapter entry I = |w ⊙ ∇w|, smoothed Ī ← β₁·Ī + (1 − β₁)·I, with uncertainty
 *   Ū ← β₂·Ū + (1 − β₂)·|I − Ī|; an entry's score is Ī·Ū;
 * - a triplet's (row i of A, E_i, column i of B) score is s(E_i) + mean over row i of s(A) + mean over column i
 *   of s(B);
 * - the budget (total kept rank) is init_bgt for step ≤ tinit, target_bgt = target_r · #layers after
 *   total_step − tfinal, and in between ⌊(init_bgt − target_bgt)·(1 − (step − tinit)/(total_step − tfinal − tinit))³
 *   + target_bgt⌋, applied every deltaT steps;
 * - masking zeroes E of every triplet whose score is ≤ the (init_bgt − budget)-th smallest score.
 */
import { noGrad, tensor, type Tensor } from "../../../tensor/index.js";
import type { AdaLoraConfig } from "./config.js";
import type { AdaLoraLinear } from "./layer.js";

/** An adapted layer as the allocator sees it: its module path and the layer. */
export type NamedLayer = readonly [string, AdaLoraLinear];

/** Which triplets each layer keeps, keyed "<module path>.lora_E.<adapter>" (peft's in-memory rank_pattern). */
export type RankPattern = Record<string, boolean[]>;

/** The budget and whether to mask at a step (peft's budget_schedule). */
export function budgetSchedule(
  step: number,
  c: Pick<AdaLoraConfig, "tinit" | "tfinal" | "total_step" | "deltaT">,
  initBudget: number,
  targetBudget: number,
): { budget: number; mask: boolean } {
  const totalStep = c.total_step!;
  if (step <= c.tinit) return { budget: initBudget, mask: false };
  if (step > totalStep - c.tfinal) return { budget: targetBudget, mask: true };
  const mulCoeff = 1 - (step - c.tinit) / (totalStep - c.tfinal - c.tinit);
  return {
    budget: Math.trunc((initBudget - targetBudget) * mulCoeff ** 3 + targetBudget),
    mask: step % c.deltaT === 0,
  };
}

/** Importance state of one parameter (same layout as the parameter). */
interface Importance {
  ipt: Float32Array;
  expAvgIpt: Float32Array;
  expAvgUnc: Float32Array;
}

/** Budget and rank allocation for the trainable AdaLoRA adapter. */
export class RankAllocator {
  readonly beta1: number;
  readonly beta2: number;
  /** Total rank when allocation starts (sum of the layers' ranks then). */
  initBudget = 0;
  /** Total rank at the end: target_r per adapted layer. */
  targetBudget = 0;
  /** Sensitivity state per parameter name ("<path>.lora_A.<adapter>", …). */
  private state = new Map<string, Importance>();

  constructor(
    readonly config: AdaLoraConfig,
    readonly adapterName: string,
    layers: readonly NamedLayer[],
  ) {
    const { beta1, beta2 } = config;
    if (!(beta1 > 0 && beta1 < 1)) throw new Error(`AdaLoRA's beta1 must be in (0, 1), got ${beta1}`);
    if (!(beta2 > 0 && beta2 < 1)) throw new Error(`AdaLoRA's beta2 must be in (0, 1), got ${beta2}`);
    this.beta1 = beta1;
    this.beta2 = beta2;
    const mine = layers.filter(([, l]) => l.hasAdapter(adapterName));
    this.initBudget = mine.reduce((s, [, l]) => s + l.r.get(adapterName)!, 0);
    this.targetBudget = config.target_r * mine.length;
  }

  /** Forget the sensitivity state (peft's reset_ipt, done when the final ranks are fixed). */
  resetIpt(): void {
    this.state.clear();
  }

  /** The smoothed sensitivity and uncertainty of a parameter, for inspection (null before the first update). */
  importance(paramName: string): { ipt: Float32Array; expAvgIpt: Float32Array; expAvgUnc: Float32Array } | null {
    return this.state.get(paramName) ?? null;
  }

  /** The budget and mask flag at a step. */
  budgetSchedule(step: number): { budget: number; mask: boolean } {
    return budgetSchedule(step, this.config, this.initBudget, this.targetBudget);
  }

  private params(layers: readonly NamedLayer[]): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, l] of layers) {
      if (!l.hasAdapter(this.adapterName)) continue;
      out.push([`${path}.lora_A.${this.adapterName}`, l.A(this.adapterName)]);
      out.push([`${path}.lora_B.${this.adapterName}`, l.B(this.adapterName)]);
      out.push([`${path}.lora_E.${this.adapterName}`, l.E(this.adapterName)]);
    }
    return out;
  }

  /** Update sensitivity and uncertainty from the current weights and gradients (peft's update_ipt). */
  updateIpt(layers: readonly NamedLayer[]): void {
    const { beta1: b1, beta2: b2 } = this;
    for (const [name, p] of this.params(layers)) {
      let st = this.state.get(name);
      if (!st || st.ipt.length !== p.size) {
        st = {
          ipt: new Float32Array(p.size),
          expAvgIpt: new Float32Array(p.size),
          expAvgUnc: new Float32Array(p.size),
        };
        this.state.set(name, st);
      }
      if (p.size === 0) continue;
      if (!p.grad)
        throw new Error(
          `AdaLoRA's rank allocation needs the gradient of ${name}, but it has none: call ` +
            `updateAndAllocate after loss.backward() and before zeroGrad()`,
        );
      const w = p.dataSync(),
        g = p.grad.dataSync();
      for (let i = 0; i < w.length; i++) {
        const ipt = Math.fround(Math.abs(Math.fround(w[i]! * g[i]!)));
        st.ipt[i] = ipt;
        const avg = Math.fround(Math.fround(b1 * st.expAvgIpt[i]!) + Math.fround((1 - b1) * ipt));
        st.expAvgIpt[i] = avg;
        st.expAvgUnc[i] = Math.fround(
          Math.fround(b2 * st.expAvgUnc[i]!) + Math.fround((1 - b2) * Math.abs(Math.fround(ipt - avg))),
        );
      }
    }
  }

  /** Each layer's triplet scores, keyed "<path>.lora_E.<adapter>" (peft's triplet_ipt). */
  tripletScores(layers: readonly NamedLayer[]): Map<string, Float32Array> {
    const a = this.adapterName;
    const out = new Map<string, Float32Array>();
    const score = (name: string, size: number): Float32Array => {
      const st = this.state.get(name);
      const s = new Float32Array(size);
      if (st) for (let i = 0; i < size; i++) s[i] = Math.fround(st.expAvgIpt[i]! * st.expAvgUnc[i]!);
      return s;
    };
    for (const [path, l] of layers) {
      if (!l.hasAdapter(a)) continue;
      const r = l.r.get(a)!,
        n = l.inFeatures,
        m = l.outFeatures;
      const sA = score(`${path}.lora_A.${a}`, r * n),
        sB = score(`${path}.lora_B.${a}`, m * r),
        sE = score(`${path}.lora_E.${a}`, r);
      const triplet = new Float32Array(r);
      for (let i = 0; i < r; i++) {
        let rowA = 0,
          colB = 0;
        for (let j = 0; j < n; j++) rowA += sA[i * n + j]!;
        for (let j = 0; j < m; j++) colB += sB[j * r + i]!;
        triplet[i] = Math.fround(sE[i]! + Math.fround(Math.fround(rowA / n) + Math.fround(colB / m)));
      }
      out.set(`${path}.lora_E.${a}`, triplet);
    }
    return out;
  }

  /**
   * Zero E of every triplet scoring ≤ the (init_bgt − budget)-th smallest score (peft's mask_to_budget, which
   * masks ties too); returns the rank pattern (true = kept). With nothing to prune, everything is kept.
   */
  maskToBudget(layers: readonly NamedLayer[], budget: number): RankPattern {
    const scores = this.tripletScores(layers);
    const all = Float32Array.from([...scores.values()].flatMap((s) => [...s])).sort();
    const k = this.initBudget - budget;
    if (k > all.length)
      throw new Error(
        `AdaLoRA: cannot prune ${k} triplets, the adapter has only ${all.length} (was it resized ` +
          `after the allocator was set up?)`,
      );
    const threshold = k <= 0 ? -Infinity : all[k - 1]!;
    const pattern: RankPattern = {};
    for (const [path, l] of layers) {
      const key = `${path}.lora_E.${this.adapterName}`;
      const s = scores.get(key);
      if (!s) continue;
      pattern[key] = Array.from(s, (v) => !(v <= threshold));
      applyMask(l.E(this.adapterName), pattern[key]!);
    }
    return pattern;
  }

  /** One allocation step (peft's RankAllocator.update_and_allocate). */
  updateAndAllocate(
    layers: readonly NamedLayer[],
    globalStep: number,
    forceMask = false,
  ): { budget: number; rankPattern: RankPattern | null } {
    const c = this.config;
    if (globalStep < c.total_step! - c.tfinal) this.updateIpt(layers);
    const { budget, mask } = this.budgetSchedule(globalStep);
    return { budget, rankPattern: mask || forceMask ? this.maskToBudget(layers, budget) : null };
  }
}

/** Zero the entries of E [r, 1] whose keep flag is false. */
export function applyMask(e: Tensor, keep: readonly boolean[]): void {
  if (keep.length !== e.shape[0])
    throw new Error(`rank pattern has ${keep.length} entries but lora_E has ${e.shape[0]} rows`);
  if (keep.every((k) => k)) return;
  const values = Float32Array.from(e.dataSync());
  keep.forEach((k, i) => {
    if (!k) values[i] = 0;
  });
  noGrad(() => e.copy_(tensor(values, e.shape)));
}
