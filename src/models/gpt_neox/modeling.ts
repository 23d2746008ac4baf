/** GPT-NeoX / Pythia (transformers' modeling_gpt_neox, eager attention) with HF module and parameter names. */
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, activationFn } from "../../nn/index.js";
import {
  type Tensor,
  add,
  appendAlong,
  arange,
  expand,
  narrow,
  reshape,
  transpose,
  unsqueeze,
} from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { embedOrUse, pastLength, runDecoderStack } from "../heads.js";
import { causalLmClass, sequenceClassificationClass, type DecoderFamily } from "../task-models.js";
import { RotaryEmbedding, applyRope } from "../rotary.js";
import type { GPTNeoXConfig } from "./config.js";

interface Rope {
  cos: Tensor;
  sin: Tensor;
}

class GPTNeoXAttention extends Module {
  query_key_value: Linear;
  dense: Linear;

  constructor(private readonly config: GPTNeoXConfig) {
    super();
    const h = config.hidden_size,
      bias = { bias: config.attention_bias };
    this.query_key_value = this.registerModule("query_key_value", new Linear(h, 3 * h, bias));
    this.dense = this.registerModule("dense", new Linear(h, h, bias));
  }

  forward(x: Tensor, rope: Rope, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const heads = this.config.num_attention_heads,
      d = this.config.hidden_size / heads;
    const [b, t] = x.shape as [number, number];
    // The fused projection is laid out per head: [q_h, k_h, v_h] for each head h.
    const fused = transpose(reshape(this.query_key_value.forward(x), [b, t, heads, 3 * d]), 1, 2); // (B, H, T, 3D)
    const cos = unsqueeze(rope.cos, 1),
      sin = unsqueeze(rope.sin, 1);
    let key = applyRope(narrow(fused, 3, d, d), cos, sin),
      value = narrow(fused, 3, 2 * d, d);
    if (past) {
      key = appendAlong(past.key, key, 2);
      value = appendAlong(past.value, value, 2);
    }
    const attn = attend(applyRope(narrow(fused, 3, 0, d), cos, sin), key, value, mask, {
      dropoutP: this.config.attention_dropout,
      training: this.training,
    });
    return { out: this.dense.forward(mergeHeads(attn)), present: { key, value } };
  }
}

class GPTNeoXMLP extends Module {
  dense_h_to_4h: Linear;
  dense_4h_to_h: Linear;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: GPTNeoXConfig) {
    super();
    this.dense_h_to_4h = this.registerModule("dense_h_to_4h", new Linear(config.hidden_size, config.intermediate_size));
    this.dense_4h_to_h = this.registerModule("dense_4h_to_h", new Linear(config.intermediate_size, config.hidden_size));
    this.act = activationFn(config.hidden_act);
  }

  forward(x: Tensor): Tensor {
    return this.dense_4h_to_h.forward(this.act(this.dense_h_to_4h.forward(x)));
  }
}

class GPTNeoXLayer extends Module {
  input_layernorm: LayerNorm;
  post_attention_layernorm: LayerNorm;
  post_attention_dropout: Dropout;
  post_mlp_dropout: Dropout;
  attention: GPTNeoXAttention;
  mlp: GPTNeoXMLP;

  constructor(private readonly config: GPTNeoXConfig) {
    super();
    const norm = () => new LayerNorm(config.hidden_size, { eps: config.layer_norm_eps });
    this.input_layernorm = this.registerModule("input_layernorm", norm());
    this.post_attention_layernorm = this.registerModule("post_attention_layernorm", norm());
    this.post_attention_dropout = this.registerModule("post_attention_dropout", new Dropout(config.hidden_dropout));
    this.post_mlp_dropout = this.registerModule("post_mlp_dropout", new Dropout(config.hidden_dropout));
    this.attention = this.registerModule("attention", new GPTNeoXAttention(config));
    this.mlp = this.registerModule("mlp", new GPTNeoXMLP(config));
  }

  /** Parallel residual x + attn(ln1(x)) + mlp(ln2(x)) (Pythia), or the sequential one when use_parallel_residual is false. */
  forward(x: Tensor, rope: Rope, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const { out, present } = this.attention.forward(this.input_layernorm.forward(x), rope, mask, past);
    const a = this.post_attention_dropout.forward(out);
    const mlp = (h: Tensor) =>
      this.post_mlp_dropout.forward(this.mlp.forward(this.post_attention_layernorm.forward(h)));
    if (this.config.use_parallel_residual) return { out: add(add(mlp(x), a), x), present };
    const h = add(a, x);
    return { out: add(mlp(h), h), present };
  }
}

/** The GPT-NeoX transformer without a head. */
export class GPTNeoXModel extends PreTrainedModel {
  embed_in: Embedding;
  emb_dropout: Dropout;
  layers: ModuleList<GPTNeoXLayer>;
  final_layer_norm: LayerNorm;
  private readonly rope: RotaryEmbedding;

  constructor(override readonly config: GPTNeoXConfig) {
    super(config);
    const headDim = config.hidden_size / config.num_attention_heads;
    this.rope = new RotaryEmbedding({
      dim: Math.floor(headDim * config.rotary_pct),
      theta: config.rotary_emb_base,
      maxPositions: config.max_position_embeddings,
      scaling: config.rope_scaling,
      modelType: config.model_type,
    });
    this.embed_in = this.registerModule("embed_in", new Embedding(config.vocab_size, config.hidden_size));
    this.emb_dropout = this.registerModule("emb_dropout", new Dropout(config.hidden_dropout));
    this.layers = this.registerModule(
      "layers",
      new ModuleList([...Array(config.num_hidden_layers)].map(() => new GPTNeoXLayer(config))),
    );
    this.final_layer_norm = this.registerModule(
      "final_layer_norm",
      new LayerNorm(config.hidden_size, { eps: config.layer_norm_eps }),
    );
  }

  get baseModelPrefix(): string {
    return "gpt_neox";
  }

  override getInputEmbeddings(): Embedding {
    return this.embed_in;
  }

  /** Hidden states for ids or embeddings, with optional KV cache / prefix and padding mask. */
  forward(inputs: ModelInputs): BaseModelOutput {
    const embeds = embedOrUse(inputs, this.embed_in);
    const [batch, length] = embeds.shape as [number, number];
    const past = pastLength(inputs.pastKeyValues);
    const positions = inputs.positionIds ?? expand(reshape(arange(length, past), [1, length]), [batch, length]);
    const rope = this.rope.tables(positions);
    const mask = buildAttentionMask(inputs.attentionMask, batch, length, past + length, true);
    const hidden = this.emb_dropout.forward(embeds);
    const step = (h: Tensor, past: LayerKV | undefined, i: number) => this.layers.get(i).forward(h, rope, mask, past);
    return runDecoderStack(this, [...this.layers], hidden, inputs, step, (h) => this.final_layer_norm.forward(h));
  }
}

const GPT_NEOX: DecoderFamily<GPTNeoXConfig> = {
  prefix: "GPTNeoX",
  base: GPTNeoXModel,
  baseName: "gpt_neox",
  lmHeadName: "embed_out",
  headInput: (c) => c.hidden_size,
};
/** GPT-NeoX with its output projection embed_out (untied by default). */
export const GPTNeoXForCausalLM = causalLmClass(GPT_NEOX);
/** GPT-NeoX with a classification head on the last non-padding token. */
export const GPTNeoXForSequenceClassification = sequenceClassificationClass(GPT_NEOX);
