/**
 * (IA)³ layer (peft's ia3.Linear) around a Linear or GPT-2's Conv1D:
 *
 *   attention targets:     y = base(x) ⊙ l         ia3_l [out, 1]
 *   feed-forward targets:  y = base(x ⊙ l)         ia3_l [1, in]
 *
 * With several active adapters their vectors multiply. ia3_l is a parameter dict as in peft (saved without
 * ".weight"). Merging multiplies the weight's output rows (and the bias) or input columns by l; unmerging divides
 * by l + 1e-8, as peft does, so it is exact only up to that tolerance (peft warns "Unmerge result can be inaccurate").
 */
import { Conv1D, type Linear, QuantizedLinear } from "../../../nn/index.js";
import {
  type Tensor,
  defaultGenerator,
  div,
  mul,
  noGrad,
  ones,
  parameter,
  reshape,
  tidy,
  add,
  transpose,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";

let warnedUnmerge = false;

/** (IA)³ on a Linear ([out, in] weight) or a GPT-2 Conv1D ([in, out] weight, fan_in_fan_out). */
export class IA3Linear extends BaseTunerLayer {
  /** peft's repr of the layer (layer status). */
  override moduleType(): string {
    return "Linear";
  }

  readonly adapterLayerNames = ["ia3_l"] as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  ia3_l: ParameterDict;

  /** `isFeedforward` is fixed when the layer is created (later adapters added to it keep it, as in peft). */
  constructor(
    base: Linear | Conv1D | QuantizedLinear,
    readonly fanInFanOut: boolean,
    readonly isFeedforward: boolean,
  ) {
    super(base);
    [this.inFeatures, this.outFeatures] =
      base instanceof Conv1D ? [base.nx, base.nf] : [base.inFeatures, base.outFeatures];
    this.ia3_l = this.registerModule("ia3_l", new ParameterDict());
  }

  /** Whether the base is GPT-2's Conv1D (peft's is_target_conv_1d_layer). */
  get isTargetConv1dLayer(): boolean {
    return this.base_layer instanceof Conv1D;
  }

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.ia3_l.ownParameter(name) !== null;
  }

  /** The vector of an adapter: [out, 1], or [1, in] for a feed-forward layer. */
  vector(name: string): Tensor {
    const v = this.ia3_l.ownParameter(name);
    if (!v) throw new Error(`adapter "${name}" is not in this (IA)³ layer`);
    return v;
  }

  /** Add (or re-create) an adapter (peft's update_layer): ones with init_ia3_weights, else N(0, 1). */
  updateLayer(name: string, initIa3Weights: boolean): void {
    const shape = this.isFeedforward ? [1, this.inFeatures] : [this.outFeatures, 1];
    const value = initIa3Weights ? ones(shape) : defaultGenerator.normal(shape);
    const old = this.ia3_l.ownParameter(name);
    this.ia3_l.registerParameter(name, parameter(value));
    if (old) old.dispose();
    this.setAdapter(this.activeAdapters);
  }

  /** Apply the layer. */
  forward(x: Tensor): Tensor {
    const names = this.adaptersToApply();
    if (names.length === 0) return this.baseForward(x);
    let scaling: Tensor | null = null;
    for (const name of names) {
      const flat = reshape(this.vector(name), [-1]);
      scaling = scaling === null ? flat : mul(scaling, flat);
    }
    if (this.isFeedforward) return this.baseForward(mul(x, scaling!));
    return mul(this.baseForward(x), scaling!);
  }

  /** The vector laid out to multiply the stored weight: transposed for Conv1D (fan_in_fan_out). */
  private weightFactor(name: string): Tensor {
    const v = this.vector(name);
    return this.fanInFanOut ? transpose(v) : v;
  }

  protected mergeOne(name: string): void {
    if (this.base_layer instanceof QuantizedLinear)
      throw new Error(
        "merging (IA)³ into a quantised layer is not supported (peft's bnb (IA)³ layers cannot merge either)",
      );
    noGrad(() =>
      tidy(() => {
        const w = this.base_layer.getTensor("weight");
        w.copy_(mul(w, this.weightFactor(name)));
        const bias = this.base_layer.ownParameter("bias");
        if (!this.isFeedforward && bias) bias.copy_(mul(bias, reshape(this.vector(name), bias.shape)));
      }),
    );
  }

  protected unmergeOne(name: string): void {
    if (!warnedUnmerge) {
      warnedUnmerge = true;
      process.emitWarning("Unmerge result can be inaccurate for (IA)^3.");
    }
    noGrad(() =>
      tidy(() => {
        const w = this.base_layer.getTensor("weight");
        w.copy_(div(w, add(this.weightFactor(name), 1e-8)));
        const bias = this.base_layer.ownParameter("bias");
        if (!this.isFeedforward && bias) bias.copy_(div(bias, add(reshape(this.vector(name), bias.shape), 1e-8)));
      }),
    );
  }

  protected forgetAdapter(_name: string): void {}

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, feedforward=${this.isFeedforward}, ` +
      `adapters=[${this.adapterNames().join(", ")}]`
    );
  }
}
