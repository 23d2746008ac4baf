/** Activation layers, Dropout, and HF's activation names (ACT2FN). */
import { type Generator, type Tensor, dropout, gelu, geluTanh, relu, sigmoid, silu, tanh } from "../../tensor/index.js";
import { Module } from "../module.js";

/** A module that maps one tensor to one tensor. */
export interface TensorModule extends Module {
  forward(x: Tensor): Tensor;
}

/** Wraps an element-wise function as a module (ReLU, GELU, …). */
export class Activation extends Module implements TensorModule {
  constructor(
    readonly kind: string,
    private readonly fn: (x: Tensor) => Tensor,
  ) {
    super();
  }

  /** Apply the function. */
  forward(x: Tensor): Tensor {
    return this.fn(x);
  }

  protected override extraRepr(): string {
    return this.kind;
  }
}

const ACTIVATIONS: Record<string, (x: Tensor) => Tensor> = {
  relu,
  gelu,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_fast: geluTanh,
  silu,
  swish: silu,
  tanh,
  sigmoid,
};

/** The activation function for an HF config name ("gelu", "gelu_new", "silu", …), with a clear error otherwise. */
export function activationFn(name: string): (x: Tensor) => Tensor {
  const fn = ACTIVATIONS[name];
  if (!fn) throw new Error(`unknown activation "${name}"; supported: ${Object.keys(ACTIVATIONS).join(", ")}`);
  return fn;
}

/** The activation module for an HF config name. */
export function activation(name: string): Activation {
  return new Activation(name, activationFn(name));
}

/** max(x, 0). */
export const ReLU = (): Activation => activation("relu");
/** Exact GELU, or the tanh approximation with approximate = "tanh". */
export const GELU = (approximate: "none" | "tanh" = "none"): Activation =>
  activation(approximate === "tanh" ? "gelu_new" : "gelu");
/** tanh. */
export const Tanh = (): Activation => activation("tanh");
/** x·sigmoid(x). */
export const SiLU = (): Activation => activation("silu");
/** Logistic sigmoid. */
export const Sigmoid = (): Activation => activation("sigmoid");

/** Zeroes elements with probability p in train mode, scaling the rest by 1/(1−p). */
export class Dropout extends Module implements TensorModule {
  constructor(
    readonly p = 0.5,
    private readonly generator?: Generator,
  ) {
    super();
    if (p < 0 || p >= 1) throw new Error(`Dropout probability must be in [0, 1), got ${p}`);
  }

  /** Identity in eval mode. */
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training, this.generator);
  }

  protected override extraRepr(): string {
    return `p=${this.p}`;
  }
}
