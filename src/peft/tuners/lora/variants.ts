/**
 * LoRA variants as strategy objects (peft's LoraVariant): the pieces of a LoRA Linear layer that differ between
 * plain LoRA and its variants — extra per-adapter state, merging, unmerging and the forward contribution. The layer
 * asks its adapter's variant instead of branching on flags. DoRA is the first variant; the next ones (and LoRA on
 * quantised base layers, whose merge must dequantise) plug in here and in the dispatcher list (dispatch.ts).
 */
import { Module } from "../../../nn/index.js";
import { type Tensor, add, div, keep, matmul, mul, parameter, reshape, sub, transpose } from "../../../tensor/index.js";
import type { LoraLinear } from "./layer.js";

/** What a variant supplies for one adapter of a LoraLinear. */
export interface LoraVariant {
  /** Set up the variant's own state for a freshly created adapter (after A and B exist). */
  init(layer: LoraLinear, adapter: string): void;
  /** The base weight [out, in] with the adapter folded in. */
  merge(layer: LoraLinear, adapter: string, weightOutIn: Tensor): Tensor;
  /** The base weight [out, in] with the adapter taken back out (the inverse of merge). */
  unmerge(layer: LoraLinear, adapter: string, weightOutIn: Tensor): Tensor;
  /**
   * `result` plus this adapter's contribution for input `x`; `base` is the base layer's output for x. A mixed batch
   * (one adapter per row, peft's adapter_names) calls this on each adapter's rows.
   */
  forward(layer: LoraLinear, adapter: string, x: Tensor, result: Tensor, base: Tensor): Tensor;
}

/** Plain LoRA: y = base(x) + B·A·dropout(x)·scaling; merging adds ΔW = B·A·scaling. */
export const plainLora: LoraVariant = {
  init() {},
  merge: (layer, adapter, w) => add(w, layer.deltaOutIn(adapter)),
  unmerge: (layer, adapter, w) => sub(w, layer.deltaOutIn(adapter)),
  forward: (layer, adapter, x, result) =>
    add(result, layer.loraOutput(adapter, layer.lora_dropout.get(adapter).forward(x))),
};

/** The per-output-row magnitude of DoRA (a module holding one parameter "weight", as in HF). */
export class DoraLayer extends Module {
  weight: Tensor;
  constructor(weight: Tensor) {
    super();
    this.weight = this.registerParameter("weight", parameter(weight));
  }
}

/**
 * DoRA (peft's DoraLinearVariant): each output row of W + ΔW is rescaled to a learned magnitude m,
 * y = (m / ‖W + ΔW‖)·(W + ΔW)·x; the norm is never differentiated (HF detaches it). Holds the merge-time factors so
 * that unmerging is exact.
 */
export class DoraLinearVariant implements LoraVariant {
  /** m / ‖W + ΔW‖ at merge time, per adapter. */
  private readonly mergeFactors = new Map<string, Tensor>();

  /** The magnitude starts at ‖W + ΔW‖, so a fresh adapter changes nothing. */
  init(layer: LoraLinear, adapter: string): void {
    layer.lora_magnitude_vector.set(adapter, new DoraLayer(layer.weightNorm(layer.baseWeightOutIn(), adapter)));
  }

  merge(layer: LoraLinear, adapter: string, w: Tensor): Tensor {
    const factor = div(layer.lora_magnitude_vector.get(adapter).weight, layer.weightNorm(w, adapter)); // [out]
    this.mergeFactors.set(adapter, keep(factor));
    return mul(add(w, layer.deltaOutIn(adapter)), reshape(factor, [-1, 1]));
  }

  unmerge(layer: LoraLinear, adapter: string, w: Tensor): Tensor {
    const factor = this.mergeFactors.get(adapter)!;
    const restored = sub(div(w, reshape(factor, [-1, 1])), layer.deltaOutIn(adapter));
    factor.dispose();
    this.mergeFactors.delete(adapter);
    return restored;
  }

  /** With active dropout the base output is recomputed on the dropped input (as peft does). */
  forward(layer: LoraLinear, adapter: string, x: Tensor, result: Tensor, base: Tensor): Tensor {
    const dropped = layer.lora_dropout.get(adapter).forward(x);
    const w = layer.baseWeightOutIn();
    const bias = layer.base_layer.ownParameter("bias");
    const baseResult =
      dropped === x ? (bias ? sub(base, bias) : base) : matmul(reshape(dropped, [-1, layer.inFeatures]), transpose(w));
    const magScale = div(layer.lora_magnitude_vector.get(adapter).weight, layer.weightNorm(w, adapter));
    const shapedBase = reshape(baseResult, base.shape);
    return add(result, add(mul(sub(magScale, 1), shapedBase), mul(magScale, layer.loraOutput(adapter, dropped))));
  }
}
