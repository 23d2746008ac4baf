/** Fully connected layers: PyTorch's Linear ([out, in] weight) and GPT-2's Conv1D ([in, out] weight). */
import {
  type Generator,
  type Tensor,
  addmm,
  defaultGenerator,
  emptyStrided,
  linear,
  parameter,
} from "../../tensor/index.js";
import { Module } from "../module.js";
import { skipInitialValues } from "../build.js";
import { kaimingUniformA5, normal, uniform, zeros } from "../init.js";

/** Options of Linear. */
export interface LinearOptions {
  bias?: boolean;
  generator?: Generator;
}

let deferWeights = false;

/**
 * Build modules in fn with every Linear weight deferred: a [out, in] view of one element (stride 0) instead of the
 * matrix, whose initial values are skipped in the random stream as if drawn. The caller then gives each deferred
 * weight its real values, or swaps the layer for a quantised one, one layer at a time: so a model built quantised
 * never holds all of its float32 weights at once.
 */
export function withDeferredLinearWeights<T>(fn: () => T): T {
  const before = deferWeights;
  deferWeights = true;
  try {
    return fn();
  } finally {
    deferWeights = before;
  }
}

function initialWeight(outFeatures: number, inFeatures: number, generator?: Generator): Tensor {
  if (!deferWeights) return kaimingUniformA5([outFeatures, inFeatures], inFeatures, generator);
  skipInitialValues(generator ?? defaultGenerator, outFeatures * inFeatures);
  return emptyStrided([outFeatures, inFeatures], [0, 0], 1);
}

/** y = x·Wᵀ + b, W of shape [outFeatures, inFeatures]. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super();
    this.weight = this.registerParameter("weight", parameter(initialWeight(outFeatures, inFeatures, opts.generator)));
    this.bias = this.registerParameter(
      "bias",
      opts.bias === false
        ? null
        : parameter(uniform([outFeatures], inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0, opts.generator)),
    );
  }

  /** Apply the layer to [..., inFeatures]. */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }

  protected override extraRepr(): string {
    return `in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

/** GPT-2's Conv1D: y = x·W + b with W stored as [nx (in), nf (out)], initialised N(0, 0.02²) as in transformers. */
export class Conv1D extends Module {
  weight: Tensor;
  bias: Tensor;

  constructor(
    readonly nf: number,
    readonly nx: number,
    generator?: Generator,
  ) {
    super();
    this.weight = this.registerParameter("weight", parameter(normal([nx, nf], 0.02, 0, generator)));
    this.bias = this.registerParameter("bias", parameter(zeros([nf])));
  }

  /** Apply the layer to [..., nx]. */
  forward(x: Tensor): Tensor {
    return addmm(x, this.weight, this.bias);
  }

  protected override extraRepr(): string {
    return `nf=${this.nf}, nx=${this.nx}`;
  }
}
