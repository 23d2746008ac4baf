/**
 * X-LoRA's classifier and its per-layer mixing of the LoRA experts (peft 0.15.2's XLoraClassifier and
 * XLoraLinearLayer). Scalings have shape [batch, length, nLayers, nExperts]; LoRA layer number l, for expert n, adds
 *
 *   lora_B(lora_A(dropout(x · s[:, :, l, n]))) · scaling_n · global_scaling_weight
 *
 * after s[:, :, l, :] went through top-k (the other experts zeroed) and, with enable_softmax_topk, a softmax that
 * peft takes jointly over all the layer's nonzero entries (every token of the batch together).
 */
import { Dropout, Linear, Module, ReLU, Sequential, type TensorModule } from "../../../nn/index.js";
import {
  type Tensor,
  div,
  exp,
  expand,
  full,
  mul,
  narrow,
  reshape,
  select,
  softmax,
  sub,
  sum,
  tensor,
  unsqueeze,
  add,
} from "../../../tensor/index.js";
import type { LoraLinear } from "../lora/layer.js";
import type { XLoraConfig } from "./config.js";

/** peft's XLoraClassifier: hidden states → scalings for every LoRA layer and expert. */
export class XLoraClassifier extends Module {
  layers: Sequential;

  constructor(
    readonly config: XLoraConfig,
    readonly nExperts: number,
    readonly nLayers: number,
  ) {
    super();
    const hidden = config.hidden_size!;
    const out = config.layerwise_scalings ? nExperts * nLayers : nExperts;
    const stack: TensorModule[] = [];
    let width = hidden;
    // torch's Sequential indices: [Linear, ReLU, Dropout?] × (depth − 1), then the last Linear.
    for (let i = 0; i < config.xlora_depth - 1; i++) {
      stack.push(new Linear(width, config.xlora_size, { bias: true }), ReLU());
      if (config.xlora_dropout_p > 0) stack.push(new Dropout(config.xlora_dropout_p));
      width = config.xlora_size;
    }
    stack.push(new Linear(width, out, { bias: true }));
    this.layers = this.registerModule("layers", new Sequential(...stack));
  }

  /** The scaling pass's scalings: every entry scaling_pass_value. */
  dummyScalings(batch: number, length: number): Tensor {
    return full([batch, length, this.nLayers, this.nExperts], this.config.scaling_pass_value);
  }

  /** Scalings [batch, length, nLayers, nExperts] from the last hidden state [batch, length, hidden]. */
  forward(hidden: Tensor): Tensor {
    const [batch, length] = hidden.shape as [number, number];
    let logits = this.layers.forward(hidden);
    if (!this.config.layerwise_scalings)
      logits = expand(unsqueeze(logits, 2), [batch, length, this.nLayers, this.nExperts]);
    const scalings = reshape(logits, [batch, length, this.nLayers, this.nExperts]);
    return this.config.enable_softmax ? softmax(div(scalings, this.config.softmax_temperature), -1) : scalings;
  }
}

/** One LoRA layer's scalings [batch, length, nExperts] after top-k and the top-k softmax (peft's get_maybe_topk_scalings). */
export function layerScalings(scalings: Tensor, layerNumber: number, config: XLoraConfig): Tensor {
  let s = select(scalings, 2, layerNumber);
  const nExperts = s.shape[2]!;
  if (config.top_k_lora !== null) {
    const values = s.dataSync();
    const keep = new Float32Array(values.length);
    for (let row = 0; row < values.length; row += nExperts) {
      // Highest first, the lower index first among equals.
      const order = [...Array(nExperts).keys()].sort((a, b) => values[row + b]! - values[row + a]! || a - b);
      for (const e of order.slice(0, config.top_k_lora)) keep[row + e] = 1;
    }
    s = mul(s, tensor(keep, s.shape));
  }
  if (config.enable_softmax_topk) {
    const values = s.dataSync();
    const nonzero = new Float32Array(values.length);
    let top = -Infinity;
    values.forEach((v, i) => {
      if (v !== 0) {
        nonzero[i] = 1;
        top = Math.max(top, v);
      }
    });
    if (top === -Infinity) return s;
    const e = mul(exp(sub(s, top)), tensor(nonzero, s.shape));
    s = div(e, sum(e));
  }
  return s;
}

/** peft's XLoraLinearLayer.forward for one LoRA layer: the experts weighted by `scalings` (null: each at weight 1). */
export function xloraLinearForward(
  layer: LoraLinear,
  x: Tensor,
  scalings: Tensor | null,
  layerNumber: number,
  config: XLoraConfig,
): Tensor {
  const s = scalings === null ? null : layerScalings(scalings, layerNumber, config);
  let result = (layer.base_layer as TensorModule).forward(x);
  if (layer.merged) return result;
  layer.activeAdapters.forEach((name, n) => {
    if (!layer.hasAdapter(name)) return;
    const input = s === null ? x : mul(x, narrow(s, 2, n, 1));
    const weight = s === null ? 1 : config.global_scaling_weight;
    const lora = layer.lora_B
      .get(name)
      .forward(layer.lora_A.get(name).forward(layer.lora_dropout.get(name).forward(input)));
    result = add(result, mul(lora, layer.scaling.get(name)! * weight));
  });
  return result;
}
