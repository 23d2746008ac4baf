/**
 * LoHa (low-rank Hadamard product, FedPara) around a Linear:
 *
 *   ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha / r        y = base(x) + x·ΔWᵀ
 *
 * with hada_w1_a, hada_w2_a [out, r] and hada_w1_b, hada_w2_b [r, in], parameter dicts as in peft (saved without
 * ".weight"). The Hadamard product of two rank-r matrices has rank up to r², from 2·r·(out + in) parameters.
 */
import type { Linear } from "../../../nn/index.js";
import { type Tensor, matmul, mul, parameter, zeros } from "../../../tensor/index.js";
import { kaimingUniform2d } from "../../../nn/init.js";
import { ParameterDict } from "../tuner-layer.js";
import { LycorisLayer, type LycorisSettings } from "../lycoris.js";

/** LoHa on a Linear ([out, in] weight). */
export class LoHaLinear extends LycorisLayer {
  /** peft's repr of the layer (layer status). */
  override moduleType(): string {
    return "loha.Linear";
  }

  readonly adapterLayerNames = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"] as const;
  hada_w1_a: ParameterDict;
  hada_w1_b: ParameterDict;
  hada_w2_a: ParameterDict;
  hada_w2_b: ParameterDict;

  constructor(base: Linear) {
    super(base);
    this.hada_w1_a = this.registerModule("hada_w1_a", new ParameterDict());
    this.hada_w1_b = this.registerModule("hada_w1_b", new ParameterDict());
    this.hada_w2_a = this.registerModule("hada_w2_a", new ParameterDict());
    this.hada_w2_b = this.registerModule("hada_w2_b", new ParameterDict());
  }

  /**
   * Add (or re-create) an adapter (peft's update_layer). init_weights true: w1a, w1b, w2a Kaiming-uniform, w2b = 0
   * (so ΔW = 0); false: all four Kaiming-uniform.
   */
  updateLayer(name: string, s: LycorisSettings): void {
    this.recordSettings(name, { ...s, rankDropoutScale: true });
    const r = s.r;
    const out = this.outFeatures,
      inp = this.inFeatures;
    this.setParameter(this.hada_w1_a, name, parameter(kaimingUniform2d([out, r])));
    this.setParameter(this.hada_w1_b, name, parameter(kaimingUniform2d([r, inp])));
    this.setParameter(this.hada_w2_a, name, parameter(kaimingUniform2d([out, r])));
    this.setParameter(
      this.hada_w2_b,
      name,
      parameter(s.initWeights === false ? kaimingUniform2d([r, inp]) : zeros([r, inp])),
    );
    this.setAdapter(this.activeAdapters);
  }

  /** The four factors of an adapter. */
  factors(name: string): { w1a: Tensor; w1b: Tensor; w2a: Tensor; w2b: Tensor } {
    const get = (d: ParameterDict) => {
      const p = d.ownParameter(name);
      if (!p) throw new Error(`adapter "${name}" is not in this LoHa layer`);
      return p;
    };
    return { w1a: get(this.hada_w1_a), w1b: get(this.hada_w1_b), w2a: get(this.hada_w2_a), w2b: get(this.hada_w2_b) };
  }

  protected deltaWeight(name: string): Tensor {
    const { w1a, w1b, w2a, w2b } = this.factors(name);
    return mul(mul(matmul(w1a, w1b), matmul(w2a, w2b)), this.scaling.get(name)!);
  }
}
