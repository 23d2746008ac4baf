/** Normalisation layers over the last axis. */
import { type Tensor, add, layerNorm, rmsNorm, parameter, ones, zeros } from "../../tensor/index.js";
import { Module } from "../module.js";

/** Options of LayerNorm. */
export interface LayerNormOptions {
  eps?: number;
  /** Learnable weight and bias (default true). */
  elementwiseAffine?: boolean;
  /** Learnable bias when affine (default true). */
  bias?: boolean;
}

/** (x − mean)/√(var + eps)·weight + bias; weight starts at 1, bias at 0. */
export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly eps: number;

  constructor(
    readonly normalizedShape: number,
    opts: LayerNormOptions = {},
  ) {
    super();
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = this.registerParameter("weight", affine ? parameter(ones([normalizedShape])) : null);
    this.bias = this.registerParameter(
      "bias",
      affine && (opts.bias ?? true) ? parameter(zeros([normalizedShape])) : null,
    );
  }

  /** Normalise the last axis. */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }

  protected override extraRepr(): string {
    return `(${this.normalizedShape},), eps=${this.eps}`;
  }
}

/**
 * x/√(mean(x²) + eps)·weight (LLaMA's RMSNorm, T5's layer norm); weight starts at 1. With `unitOffset` the scale is
 * (1 + weight) and weight starts at 0 (Gemma's RMSNorm, whose checkpoints store the offset from 1).
 */
export class RMSNorm extends Module {
  weight: Tensor;

  constructor(
    readonly hiddenSize: number,
    readonly eps = 1e-6,
    readonly unitOffset = false,
  ) {
    super();
    this.weight = this.registerParameter("weight", parameter(unitOffset ? zeros([hiddenSize]) : ones([hiddenSize])));
  }

  /** Normalise the last axis. */
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.unitOffset ? add(this.weight, 1) : this.weight, this.eps);
  }

  protected override extraRepr(): string {
    return `(${this.hiddenSize},), eps=${this.eps}${this.unitOffset ? ", 1 + weight" : ""}`;
  }
}
