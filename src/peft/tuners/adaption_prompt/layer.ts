/**
 * AdaptedAttention: LLaMA-Adapter's gated adaption prompt around a LLaMA-family attention (HF's AdaptedAttention).
 * The wrapped attention runs as usual; then the queries (recomputed with the same rotary positions) attend over
 * the adapter's prompt tokens projected by the layer's own k_proj / v_proj (no positions, no mask), the result is
 * scaled by a gate that starts at zero, projected by o_proj and added to the attention output.
 */
import type { Module, TensorLayer } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  applyRotary,
  defaultGenerator,
  expand,
  mul,
  parameter,
  unsqueeze,
  zeros,
} from "../../../tensor/index.js";
import { attend, mergeHeads, splitHeads } from "../../../models/attention.js";
import type { LayerKV } from "../../../models/outputs.js";
import type { LlamaAttentionLayer } from "../../../models/llama/modeling.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";

/** Head layout of the wrapped attention. */
export interface AttentionDims {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

/** The LLaMA attention as the adapter uses it. */
interface LlamaLikeAttention extends LlamaAttentionLayer {
  q_proj: TensorLayer;
  k_proj: TensorLayer;
  v_proj: TensorLayer;
  o_proj: TensorLayer;
}

/** A LLaMA attention with adaption prompts (`adaption_prompt.<adapter>` [1, len, hidden], `adaption_gate.<adapter>` [1]). */
export class AdaptedAttention extends BaseTunerLayer implements LlamaAttentionLayer {
  readonly adapterLayerNames = ["adaption_prompt", "adaption_gate"] as const;
  adaption_prompt: ParameterDict;
  adaption_gate: ParameterDict;

  constructor(
    base: Module,
    readonly dims: AttentionDims,
  ) {
    super(base);
    for (const p of ["q_proj", "k_proj", "v_proj", "o_proj"]) {
      if (!base.namedChildren().some(([n]) => n === p))
        throw new Error(
          `adaption prompt: the attention module ${base.constructor.name} has no ${p}; only ` +
            `LLaMA-family attentions are supported`,
        );
    }
    this.adaption_prompt = this.registerModule("adaption_prompt", new ParameterDict());
    this.adaption_gate = this.registerModule("adaption_gate", new ParameterDict());
  }

  /** Add an adapter: prompt ~ N(0, 1) (as peft, after the official LLaMA-Adapter), gate 0 (zero-init). */
  updateLayer(adapterName: string, adapterLen: number): void {
    this.adaption_prompt.registerParameter(
      adapterName,
      parameter(defaultGenerator.normal([1, adapterLen, this.dims.hidden])),
    );
    this.adaption_gate.registerParameter(adapterName, parameter(zeros([1])));
  }

  forward(
    x: Tensor,
    rope: { cos: Tensor; sin: Tensor },
    mask: Tensor | null,
    past: LayerKV | undefined,
  ): { out: Tensor; present: LayerKV } {
    const base = this.base_layer as LlamaLikeAttention;
    const result = base.forward(x, rope, mask, past);
    const adapters = this.adaptersToApply();
    if (adapters.length === 0) return result;
    const { heads, kvHeads, headDim } = this.dims;
    const batch = x.shape[0]!;
    const q = applyRotary(splitHeads(base.q_proj.forward(x), heads), unsqueeze(rope.cos, 1), unsqueeze(rope.sin, 1));
    let out = result.out;
    for (const name of adapters) {
      const prompt = this.adaption_prompt.ownParameter(name)!;
      const gate = this.adaption_gate.ownParameter(name)!;
      const len = prompt.shape[1]!;
      const key = expand(splitHeads(base.k_proj.forward(prompt), kvHeads), [batch, kvHeads, len, headDim]);
      const value = expand(splitHeads(base.v_proj.forward(prompt), kvHeads), [batch, kvHeads, len, headDim]);
      // gate · softmax(q·kᵀ/√d) · v, over the prompt tokens only.
      const attn = mul(attend(q, key, value, null), gate);
      out = add(out, base.o_proj.forward(mergeHeads(attn)));
    }
    return { out, present: result.present };
  }

  protected mergeOne(): void {
    throw new Error(
      "adaption prompts cannot be merged into the weights (they add attention over learned " +
        "tokens); use unload() to remove them",
    );
  }

  protected unmergeOne(): void {}

  protected forgetAdapter(): void {}
}
