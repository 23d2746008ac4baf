/**
 * AdaLoRA's SVD-form layer (peft's SVDLinear) around a Linear or GPT-2's Conv1D:
 *
 *   y = base(x) + dropout(x)·(A ⊙ E)ᵀ·Bᵀ · scaling / (ranknum + 1e-5)
 *
 * with lora_A [r, in] (right singular vectors P), lora_E [r, 1] (singular values Λ), lora_B [out, r] (left
 * singular vectors Q), all parameter dicts as in peft (saved without ".weight"). scaling is lora_alpha itself
 * (not alpha / r), and ranknum — a frozen one-element parameter holding the initial rank — divides it, so
 * pruning triplets (zeroing E, or dropping rows) never changes the scale of the kept ones.
 */
import { Conv1D, Dropout, type Linear, ModuleDict } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  addInPlace,
  defaultGenerator,
  div,
  linear,
  matmul,
  mul,
  noGrad,
  parameter,
  tensor,
  transpose,
  zeros,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";

/** How one adapter is set up in a layer (peft's update_layer arguments). */
export interface AdaLoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  initWeights: boolean | string;
}

/** AdaLoRA on a Linear ([out, in] weight) or a GPT-2 Conv1D ([in, out] weight, fan_in_fan_out). */
export class AdaLoraLinear extends BaseTunerLayer {
  /** peft's repr of the layer (layer status). */
  override moduleType(): string {
    return "adalora.SVDLinear";
  }

  readonly adapterLayerNames = ["lora_A", "lora_B", "lora_E"] as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r = new Map<string, number>();
  readonly loraAlpha = new Map<string, number>();
  readonly scaling = new Map<string, number>();
  lora_dropout: ModuleDict<Dropout>;
  lora_A: ParameterDict;
  lora_B: ParameterDict;
  lora_E: ParameterDict;
  /** One frozen element per adapter: the rank the adapter was created with (peft keeps it a parameter). */
  ranknum: ParameterDict;
  /** ranknum's value, read without a device sync. */
  private readonly ranknumValue = new Map<string, number>();

  constructor(
    base: Linear | Conv1D,
    readonly fanInFanOut: boolean,
  ) {
    super(base);
    [this.inFeatures, this.outFeatures] =
      base instanceof Conv1D ? [base.nx, base.nf] : [base.inFeatures, base.outFeatures];
    this.lora_dropout = this.registerModule("lora_dropout", new ModuleDict<Dropout>());
    this.lora_A = this.registerModule("lora_A", new ParameterDict());
    this.lora_B = this.registerModule("lora_B", new ParameterDict());
    this.lora_E = this.registerModule("lora_E", new ParameterDict());
    this.ranknum = this.registerModule("ranknum", new ParameterDict());
  }

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.r.has(name);
  }

  /** lora_A [r, in] of an adapter. */
  A(name: string): Tensor {
    return this.lora_A.ownParameter(name)!;
  }
  /** lora_E [r, 1] of an adapter. */
  E(name: string): Tensor {
    return this.lora_E.ownParameter(name)!;
  }
  /** lora_B [out, r] of an adapter. */
  B(name: string): Tensor {
    return this.lora_B.ownParameter(name)!;
  }
  /** The ranknum value of an adapter (its initial rank; 0 after a resize to rank 0, as in peft). */
  ranknumOf(name: string): number {
    return this.ranknumValue.get(name)!;
  }

  /**
   * Add (or re-create at another rank) an adapter (peft's update_layer): with init_lora_weights E = 0 and A, B ~
   * N(0, 0.02²), so a fresh adapter changes nothing; without, all three ~ N(0, 1). ranknum is set to r.
   */
  updateLayer(name: string, s: AdaLoraSettings): void {
    if (!Number.isInteger(s.r) || s.r < 0)
      throw new Error(`\`r\` should be a positive integer or 0, but the value passed is ${s.r}`);
    const init = s.initWeights !== false;
    const std = init ? 0.02 : 1;
    const a = defaultGenerator.normal([s.r, this.inFeatures], 0, std);
    const e = init ? zeros([s.r, 1]) : defaultGenerator.normal([s.r, 1]);
    const b = defaultGenerator.normal([this.outFeatures, s.r], 0, std);
    this.r.set(name, s.r);
    this.loraAlpha.set(name, s.alpha);
    this.scaling.set(name, s.alpha > 0 ? s.alpha : s.r);
    this.lora_dropout.set(name, new Dropout(s.dropout));
    this.replaceParameter(this.lora_A, name, parameter(a));
    this.replaceParameter(this.lora_E, name, parameter(e));
    this.replaceParameter(this.lora_B, name, parameter(b));
    const rank = parameter(tensor([s.r], [1]));
    rank.requiresGrad = false;
    this.replaceParameter(this.ranknum, name, rank);
    this.ranknumValue.set(name, s.r);
    this.setAdapter(this.activeAdapters);
  }

  private replaceParameter(holder: ParameterDict, name: string, t: Tensor): void {
    const old = holder.ownParameter(name);
    holder.registerParameter(name, t);
    if (old && old !== t) old.dispose();
  }

  /**
   * Keep only the triplets where `keep` is true (peft's resize_modules_by_rank_pattern for one layer): the adapter
   * is re-created at the kept rank and the kept rows of A and E and columns of B are copied over; ranknum keeps its
   * value (so the scale of the kept triplets is unchanged), except at rank 0 where peft leaves it at 0.
   */
  resize(name: string, keep: readonly boolean[], s: AdaLoraSettings): void {
    const r = this.r.get(name);
    if (r === undefined) throw new Error(`adapter "${name}" is not in this layer`);
    if (keep.length !== r) throw new Error(`rank_pattern has ${keep.length} entries for a layer of rank ${r}`);
    const idx = keep.flatMap((k, i) => (k ? [i] : []));
    const a = this.A(name).dataSync(),
      e = this.E(name).dataSync(),
      b = this.B(name).dataSync();
    const n = this.inFeatures,
      m = this.outFeatures,
      k = idx.length;
    const newA = new Float32Array(k * n),
      newE = new Float32Array(k),
      newB = new Float32Array(m * k);
    idx.forEach((src, dst) => {
      newA.set(a.subarray(src * n, (src + 1) * n), dst * n);
      newE[dst] = e[src]!;
      for (let i = 0; i < m; i++) newB[i * k + dst] = b[i * r + src]!;
    });
    const ranknum = this.ranknumValue.get(name)!;
    this.updateLayer(name, { ...s, r: k });
    if (k === 0) return;
    noGrad(() => {
      this.A(name).copy_(tensor(newA, [k, n]));
      this.E(name).copy_(tensor(newE, [k, 1]));
      this.B(name).copy_(tensor(newB, [m, k]));
      this.ranknum.ownParameter(name)!.copy_(tensor([ranknum], [1]));
    });
    this.ranknumValue.set(name, ranknum);
  }

  /** scaling / (ranknum + 1e-5) as float32, the factor every use of the adapter applies. */
  private factorParts(name: string): { scaling: number; ranknum: number } {
    return { scaling: this.scaling.get(name)!, ranknum: Math.fround(this.ranknumValue.get(name)! + 1e-5) };
  }

  /** ΔW of one adapter in the base weight's layout: (B·(A ⊙ E))ᵀ? · scaling / (ranknum + 1e-5). */
  getDeltaWeight(name: string): Tensor {
    const { scaling, ranknum } = this.factorParts(name);
    if (this.r.get(name) === 0)
      return zeros(this.fanInFanOut ? [this.inFeatures, this.outFeatures] : [this.outFeatures, this.inFeatures]);
    const d = matmul(this.B(name), mul(this.A(name), this.E(name)));
    return div(mul(this.fanInFanOut ? transpose(d) : d, scaling), ranknum);
  }

  /** Apply the layer. */
  forward(x: Tensor): Tensor {
    let result = this.baseForward(x);
    for (const name of this.adaptersToApply()) {
      if (!this.r.has(name) || this.r.get(name) === 0) continue;
      const { scaling, ranknum } = this.factorParts(name);
      const h = linear(linear(this.lora_dropout.get(name).forward(x), mul(this.A(name), this.E(name))), this.B(name));
      result = add(result, div(mul(h, scaling), ranknum));
    }
    return result;
  }

  protected mergeOne(name: string): void {
    if (!this.r.get(name)) return;
    noGrad(() => addInPlace(this.base_layer.getTensor("weight"), this.getDeltaWeight(name)));
  }

  protected unmergeOne(name: string): void {
    if (!this.r.get(name)) return;
    noGrad(() => addInPlace(this.base_layer.getTensor("weight"), mul(this.getDeltaWeight(name), -1)));
  }

  protected forgetAdapter(name: string): void {
    for (const m of [this.r, this.loraAlpha, this.scaling, this.ranknumValue]) m.delete(name);
    this.ranknum.ownParameter(name)?.dispose();
    this.ranknum.registerParameter(name, null);
    this.lora_dropout.remove(name);
  }

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, ` + `r={${[...this.r].map(([k, v]) => `${k}: ${v}`).join(", ")}}`
    );
  }
}
