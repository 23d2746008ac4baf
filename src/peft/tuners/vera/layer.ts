/**
 * VeRA layer (peft's vera.Linear) around a Linear or GPT-2's Conv1D:
 *
 *   y = base(x) + λ_b ⊙ (B[:out] · (λ_d ⊙ (A[:, :in] · dropout(x))))        ΔW = diag(λ_b)·B[:out]·diag(λ_d)·A[:, :in]
 *
 * A [r, in_max] and B [out_max, r] are the model's shared frozen projections (held by VeraModel, sized for the
 * largest adapted layer; each layer uses their top-left corner); vera_lambda_b [out] and vera_lambda_d [r] are
 * this layer's trainable vectors, parameter dicts as in peft (saved without ".weight").
 */
import { Conv1D, type Linear, type Module } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  defaultGenerator,
  dropout,
  full,
  linear,
  matmul,
  mul,
  narrow,
  ones,
  reshape,
  zeros,
} from "../../../tensor/index.js";
import { ConfigError } from "../../../errors.js";
import { ParameterDict } from "../tuner-layer.js";
import { AdditiveLayer, setAdapterParameter } from "../linear-tuner.js";

/** The shared projections of each adapter, by name (peft's BufferDicts vera_A and vera_B). */
export interface VeraProjections {
  vera_A: Module;
  vera_B: Module;
}

/** VeRA on a Linear ([out, in] weight) or a GPT-2 Conv1D ([in, out] weight). */
export class VeraLinear extends AdditiveLayer {
  readonly adapterLayerNames = ["vera_lambda_b", "vera_lambda_d"] as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r = new Map<string, number>();
  readonly dropoutP = new Map<string, number>();
  vera_lambda_b: ParameterDict;
  vera_lambda_d: ParameterDict;

  /** `projections` are the host's shared dicts (not registered here: they are saved once, under the host). */
  constructor(
    base: Linear | Conv1D,
    private readonly projections: VeraProjections,
  ) {
    super(base);
    [this.inFeatures, this.outFeatures] =
      base instanceof Conv1D ? [base.nx, base.nf] : [base.inFeatures, base.outFeatures];
    this.vera_lambda_b = this.registerModule("vera_lambda_b", new ParameterDict());
    this.vera_lambda_d = this.registerModule("vera_lambda_d", new ParameterDict());
  }

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.r.has(name);
  }

  /** Add (or re-create) an adapter (peft's update_layer); the projections must cover this layer and rank. */
  updateLayer(name: string, r: number, dropoutP: number, initWeights: boolean, dInitial: number): void {
    if (!Number.isInteger(r) || r <= 0)
      throw new ConfigError(`\`r\` should be a positive integer value but the value passed is ${r}`);
    const { a, b } = this.projectionsOf(name);
    if (a.shape[1]! < this.inFeatures || b.shape[0]! < this.outFeatures || a.shape[0]! < r || b.shape[1]! < r) {
      throw new ConfigError(
        `vera_A ${JSON.stringify(a.shape)} / vera_B ${JSON.stringify(b.shape)} do not cover this ` +
          `layer (in ${this.inFeatures}, out ${this.outFeatures}, r ${r})`,
      );
    }
    this.r.set(name, r);
    this.dropoutP.set(name, dropoutP);
    const lambdaB = initWeights ? zeros([this.outFeatures]) : ones([this.outFeatures]);
    const lambdaD = initWeights ? full([r], dInitial) : defaultGenerator.normal([r]);
    setAdapterParameter(this.vera_lambda_b, name, lambdaB);
    setAdapterParameter(this.vera_lambda_d, name, lambdaD);
    this.setAdapter(this.activeAdapters);
  }

  /** An adapter's shared projections, cut to this layer: A [r, in], B [out, r]. */
  private projectionsOf(name: string): { a: Tensor; b: Tensor } {
    const a = this.projections.vera_A.namedBuffers().find(([k]) => k === name)?.[1];
    const b = this.projections.vera_B.namedBuffers().find(([k]) => k === name)?.[1];
    if (!a || !b) throw new Error(`the shared VeRA projections of adapter "${name}" are missing`);
    return { a, b };
  }

  private lambdas(name: string): { lambdaB: Tensor; lambdaD: Tensor } {
    const lambdaB = this.vera_lambda_b.ownParameter(name),
      lambdaD = this.vera_lambda_d.ownParameter(name);
    if (!lambdaB || !lambdaD) throw new Error(`adapter "${name}" is not in this VeRA layer`);
    return { lambdaB, lambdaD };
  }

  /** A[:, :in] and B[:out, :] of an adapter. */
  private sliced(name: string): { a: Tensor; b: Tensor } {
    const { a, b } = this.projectionsOf(name);
    return { a: narrow(a, 1, 0, this.inFeatures), b: narrow(b, 0, 0, this.outFeatures) };
  }

  /** ΔW of one adapter as [out, in] (peft's get_delta_weight before its fan_in_fan_out transpose). */
  getDeltaWeight(name: string): Tensor {
    const { a, b } = this.sliced(name);
    const { lambdaB, lambdaD } = this.lambdas(name);
    return matmul(mul(reshape(lambdaB, [-1, 1]), b), mul(reshape(lambdaD, [-1, 1]), a));
  }

  /** Apply the layer: the base output plus each active adapter's scaled projections of x. */
  forward(x: Tensor): Tensor {
    let result = this.baseForward(x);
    for (const name of this.adaptersToApply()) {
      if (!this.hasAdapter(name)) continue;
      const { a, b } = this.sliced(name);
      const { lambdaB, lambdaD } = this.lambdas(name);
      const h = mul(lambdaD, linear(dropout(x, this.dropoutP.get(name)!, this.training), a));
      result = add(result, mul(lambdaB, linear(h, b)));
    }
    return result;
  }

  protected forgetAdapter(name: string): void {
    this.r.delete(name);
    this.dropoutP.delete(name);
  }

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, ` + `r={${[...this.r].map(([k, v]) => `${k}: ${v}`).join(", ")}}`
    );
  }
}
