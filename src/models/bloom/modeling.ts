/** BLOOM (transformers' modeling_bloom, eager attention, ALiBi positions) with HF module and parameter names. */
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, activationFn } from "../../nn/index.js";
import { type Tensor, add, appendAlong, narrow, ones, reshape, tensor, transpose } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { embedOrUse, pastLength, runDecoderStack } from "../heads.js";
import { causalLmClass, sequenceClassificationClass, type DecoderFamily } from "../task-models.js";
import type { BloomConfig } from "./config.js";

/** ALiBi slopes per head (geometric from 2^(-8/n), interleaved extras when heads are not a power of two), in float32. */
export function alibiSlopes(heads: number): number[] {
  const closest = 2 ** Math.floor(Math.log2(heads));
  const base = Math.fround(2 ** -(2 ** -(Math.log2(closest) - 3)));
  const slopes = Array.from({ length: closest }, (_, i) => Math.fround(base ** (i + 1)));
  if (closest !== heads) {
    const extra = Math.fround(2 ** -(2 ** -(Math.log2(2 * closest) - 3)));
    for (let i = 0; i < Math.min(closest, heads - closest); i++) slopes.push(Math.fround(extra ** (2 * i + 1)));
  }
  return slopes;
}

/** The ALiBi bias [batch, heads, 1, keys]: slope · (index of the key among the row's real tokens), 0 at pads. */
function alibiBias(mask: Tensor, heads: number): Tensor {
  const [batch, keys] = mask.shape as [number, number];
  const m = mask.dataSync(),
    slopes = alibiSlopes(heads);
  const out = new Float32Array(batch * heads * keys);
  for (let b = 0; b < batch; b++) {
    let count = 0;
    for (let j = 0; j < keys; j++) {
      const real = m[b * keys + j] !== 0;
      if (real) count++;
      const position = real ? count - 1 : 0;
      for (let h = 0; h < heads; h++) out[(b * heads + h) * keys + j] = Math.fround(slopes[h]! * position);
    }
  }
  return tensor(out, [batch, heads, 1, keys]);
}

class BloomAttention extends Module {
  query_key_value: Linear;
  dense: Linear;

  constructor(private readonly config: BloomConfig) {
    super();
    const h = config.hidden_size;
    this.query_key_value = this.registerModule("query_key_value", new Linear(h, 3 * h));
    this.dense = this.registerModule("dense", new Linear(h, h));
  }

  forward(x: Tensor, alibi: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const heads = this.config.n_head,
      d = this.config.hidden_size / heads;
    const [b, t] = x.shape as [number, number];
    // The fused projection is laid out per head: [q_h, k_h, v_h] for each head h.
    const fused = reshape(this.query_key_value.forward(x), [b, t, heads, 3, d]);
    const part = (i: number) => transpose(reshape(narrow(fused, 3, i, 1), [b, t, heads, d]), 1, 2); // (B, H, T, D)
    let key = part(1),
      value = part(2);
    if (past) {
      key = appendAlong(past.key, key, 2);
      value = appendAlong(past.value, value, 2);
    }
    const attn = attend(part(0), key, value, mask, {
      positionBias: alibi,
      dropoutP: this.config.attention_dropout,
      training: this.training,
    });
    return { out: this.dense.forward(mergeHeads(attn)), present: { key, value } };
  }
}

class BloomMLP extends Module {
  dense_h_to_4h: Linear;
  dense_4h_to_h: Linear;
  private readonly act = activationFn("gelu_pytorch_tanh");

  constructor(config: BloomConfig) {
    super();
    const h = config.hidden_size;
    this.dense_h_to_4h = this.registerModule("dense_h_to_4h", new Linear(h, 4 * h));
    this.dense_4h_to_h = this.registerModule("dense_4h_to_h", new Linear(4 * h, h));
  }

  forward(x: Tensor): Tensor {
    return this.dense_4h_to_h.forward(this.act(this.dense_h_to_4h.forward(x)));
  }
}

class BloomBlock extends Module {
  input_layernorm: LayerNorm;
  self_attention: BloomAttention;
  post_attention_layernorm: LayerNorm;
  mlp: BloomMLP;
  private readonly dropout: Dropout;

  constructor(private readonly config: BloomConfig) {
    super();
    const norm = () => new LayerNorm(config.hidden_size, { eps: config.layer_norm_epsilon });
    this.input_layernorm = this.registerModule("input_layernorm", norm());
    this.self_attention = this.registerModule("self_attention", new BloomAttention(config));
    this.post_attention_layernorm = this.registerModule("post_attention_layernorm", norm());
    this.mlp = this.registerModule("mlp", new BloomMLP(config));
    this.dropout = this.registerModule("dropout", new Dropout(config.hidden_dropout));
  }

  /** Pre-norm residual blocks; the residual is the normalised input when apply_residual_connection_post_layernorm. */
  forward(x: Tensor, alibi: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const post = this.config.apply_residual_connection_post_layernorm;
    const n1 = this.input_layernorm.forward(x);
    const { out: a, present } = this.self_attention.forward(n1, alibi, mask, past);
    const h = add(post ? n1 : x, this.dropout.forward(a));
    const n2 = this.post_attention_layernorm.forward(h);
    return { out: add(post ? n2 : h, this.dropout.forward(this.mlp.forward(n2))), present };
  }
}

/** The BLOOM transformer without a head. */
export class BloomModel extends PreTrainedModel {
  word_embeddings: Embedding;
  word_embeddings_layernorm: LayerNorm;
  h: ModuleList<BloomBlock>;
  ln_f: LayerNorm;

  constructor(override readonly config: BloomConfig) {
    super(config);
    const norm = () => new LayerNorm(config.hidden_size, { eps: config.layer_norm_epsilon });
    this.word_embeddings = this.registerModule("word_embeddings", new Embedding(config.vocab_size, config.hidden_size));
    this.word_embeddings_layernorm = this.registerModule("word_embeddings_layernorm", norm());
    this.h = this.registerModule("h", new ModuleList([...Array(config.n_layer)].map(() => new BloomBlock(config))));
    this.ln_f = this.registerModule("ln_f", norm());
  }

  get baseModelPrefix(): string {
    return "transformer";
  }

  override getInputEmbeddings(): Embedding {
    return this.word_embeddings;
  }

  /** Hidden states for ids or embeddings, with optional KV cache / prefix and padding mask; positions are ALiBi biases. */
  forward(inputs: ModelInputs): BaseModelOutput {
    const embeds = embedOrUse(inputs, this.word_embeddings);
    const [batch, length] = embeds.shape as [number, number];
    const past = pastLength(inputs.pastKeyValues);
    const attentionMask = inputs.attentionMask ?? ones([batch, past + length], "int32");
    const alibi = alibiBias(attentionMask, this.config.n_head);
    const mask = buildAttentionMask(attentionMask, batch, length, past + length, true);
    const hidden = this.word_embeddings_layernorm.forward(embeds);
    return runDecoderStack(
      this,
      [...this.h],
      hidden,
      inputs,
      (h, past, i) => this.h.get(i).forward(h, alibi, mask, past),
      (h) => this.ln_f.forward(h),
    );
  }
}

const BLOOM: DecoderFamily<BloomConfig> = {
  prefix: "Bloom",
  base: BloomModel,
  baseName: "transformer",
  headInput: (c) => c.hidden_size,
};
/** BLOOM with the language-modelling head (tied to the embeddings). */
export const BloomForCausalLM = causalLmClass(BLOOM);
/** BLOOM with a classification head on the last non-padding token. */
export const BloomForSequenceClassification = sequenceClassificationClass(BLOOM);
