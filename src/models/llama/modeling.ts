/**
 * The shared LLaMA-style decoder (transformers' modeling_llama, eager attention) with HF names. One block serves
 * LLaMA, Mistral, Qwen2/3, Gemma 1/2/3 text and Phi-3; the per-model-type differences (norm kind, rope kind,
 * soft-capping, sliding windows, fused projections, extra norms) come from decoderTraits.
 */
import {
  Embedding,
  Linear,
  Module,
  ModuleList,
  RMSNorm,
  activationFn,
  type EmbeddingLayer,
  type TensorLayer,
} from "../../nn/index.js";
import {
  type Tensor,
  add,
  appendAlong,
  arange,
  div,
  dropout,
  expand,
  mul,
  narrow,
  reshape,
  tanh,
  transpose,
  unsqueeze,
} from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs, ModelOutput } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { GenerativeModel } from "../generation/generative-model.js";
import {
  causalLmLoss,
  embedOrUse,
  keptPositions,
  pastLength,
  runDecoderStack,
  sequenceClassification,
} from "../heads.js";
import { RotaryEmbedding, applyRope } from "../rotary.js";
import { decoderClassName, decoderTraits, type DecoderTraits, type LlamaConfig } from "./config.js";
import { ConfigError } from "../../errors.js";

/** Rotary tables of one layer, [batch, length, rotaryDim] each. */
export interface Rope {
  cos: Tensor;
  sin: Tensor;
}

/** cap·tanh(x / cap) (Gemma 2's soft-capping). */
function softcap(x: Tensor, cap: number): Tensor {
  return mul(tanh(div(x, cap)), cap);
}

/**
 * What a decoder layer's self_attn slot holds: LlamaAttention, or what PEFT puts in its place (LLaMA-Adapter's
 * AdaptedAttention, a modules_to_save copy) with setSubmodule.
 */
export interface LlamaAttentionLayer extends Module {
  /** Attend over the past and the new positions; returns the output and this layer's new cache entry. */
  forward(x: Tensor, rope: Rope, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV };
}

class LlamaAttention extends Module implements LlamaAttentionLayer {
  q_proj: TensorLayer | null = null;
  k_proj: TensorLayer | null = null;
  v_proj: TensorLayer | null = null;
  /** Phi-3: q, k and v in one projection, in that order along the output features. */
  qkv_proj: TensorLayer | null = null;
  o_proj: TensorLayer;
  q_norm: RMSNorm | null = null;
  k_norm: RMSNorm | null = null;
  private readonly traits: DecoderTraits;

  constructor(private readonly config: LlamaConfig) {
    super();
    const t = decoderTraits(config);
    this.traits = t;
    const d = t.headDim,
      h = config.num_attention_heads,
      kv = config.num_key_value_heads,
      hidden = config.hidden_size;
    const qkv = { bias: t.bias.qkv };
    if (t.fused) {
      this.qkv_proj = this.registerModule("qkv_proj", new Linear(hidden, (h + 2 * kv) * d, qkv));
    } else {
      this.q_proj = this.registerModule("q_proj", new Linear(hidden, h * d, qkv));
      this.k_proj = this.registerModule("k_proj", new Linear(hidden, kv * d, qkv));
      this.v_proj = this.registerModule("v_proj", new Linear(hidden, kv * d, qkv));
    }
    this.o_proj = this.registerModule("o_proj", new Linear(h * d, hidden, { bias: t.bias.o }));
    if (t.qkNorm) {
      this.q_norm = this.registerModule("q_norm", new RMSNorm(d, config.rms_norm_eps, t.unitOffsetNorm));
      this.k_norm = this.registerModule("k_norm", new RMSNorm(d, config.rms_norm_eps, t.unitOffsetNorm));
    }
  }

  /** Queries, keys and values [batch, length, heads·headDim] from the separate or the fused projection. */
  private project(x: Tensor): [Tensor, Tensor, Tensor] {
    if (this.qkv_proj) {
      const c = this.config,
        d = this.traits.headDim;
      const fused = this.qkv_proj.forward(x);
      const q = c.num_attention_heads * d,
        kv = c.num_key_value_heads * d;
      return [narrow(fused, -1, 0, q), narrow(fused, -1, q, kv), narrow(fused, -1, q + kv, kv)];
    }
    return [this.q_proj!.forward(x), this.k_proj!.forward(x), this.v_proj!.forward(x)];
  }

  /** [batch, length, heads·headDim] → [batch, heads, length, headDim], normalised per head first when the model does. */
  private heads(x: Tensor, heads: number, norm: RMSNorm | null): Tensor {
    const [b, t] = x.shape as [number, number];
    const split = reshape(x, [b, t, heads, this.traits.headDim]); // (B, T, H, D)
    return transpose(norm ? norm.forward(split) : split, 1, 2); // (B, H, T, D)
  }

  forward(x: Tensor, rope: Rope, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const c = this.config;
    const cos = unsqueeze(rope.cos, 1),
      sin = unsqueeze(rope.sin, 1);
    const [qx, kx, vx] = this.project(x);
    const q = applyRope(this.heads(qx, c.num_attention_heads, this.q_norm), cos, sin);
    let key = applyRope(this.heads(kx, c.num_key_value_heads, this.k_norm), cos, sin);
    let value = this.heads(vx, c.num_key_value_heads, null);
    if (past) {
      // Grows the cache in place when past is its latest extension (generation), else copies (see appendAlong).
      key = appendAlong(past.key, key, 2);
      value = appendAlong(past.value, value, 2);
    }
    const attn = attend(q, key, value, mask, {
      scale: this.traits.attnScale,
      softcap: this.traits.attnSoftcap,
      dropoutP: c.attention_dropout,
      training: this.training,
    });
    return { out: this.o_proj.forward(mergeHeads(attn)), present: { key, value } };
  }
}

class LlamaMLP extends Module {
  gate_proj: TensorLayer | null = null;
  up_proj: TensorLayer | null = null;
  /** Phi-3: gate and up in one projection, gate first. */
  gate_up_proj: TensorLayer | null = null;
  down_proj: TensorLayer;
  private readonly act: (x: Tensor) => Tensor;
  private readonly intermediate: number;

  constructor(config: LlamaConfig, traits: DecoderTraits) {
    super();
    const bias = { bias: traits.bias.mlp },
      hidden = config.hidden_size;
    this.intermediate = config.intermediate_size;
    if (traits.fused) {
      this.gate_up_proj = this.registerModule("gate_up_proj", new Linear(hidden, 2 * this.intermediate, bias));
    } else {
      this.gate_proj = this.registerModule("gate_proj", new Linear(hidden, this.intermediate, bias));
      this.up_proj = this.registerModule("up_proj", new Linear(hidden, this.intermediate, bias));
    }
    this.down_proj = this.registerModule("down_proj", new Linear(this.intermediate, hidden, bias));
    this.act = activationFn(traits.activation);
  }

  forward(x: Tensor): Tensor {
    let gate: Tensor, up: Tensor;
    if (this.gate_up_proj) {
      const fused = this.gate_up_proj.forward(x);
      gate = narrow(fused, -1, 0, this.intermediate);
      up = narrow(fused, -1, this.intermediate, this.intermediate);
    } else {
      gate = this.gate_proj!.forward(x);
      up = this.up_proj!.forward(x);
    }
    return this.down_proj.forward(mul(this.act(gate), up));
  }
}

class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttentionLayer;
  mlp: LlamaMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;
  /** Gemma 2/3: the MLP's own pre- and post-norms (post_attention_layernorm then normalises the attention output). */
  pre_feedforward_layernorm: RMSNorm | null = null;
  post_feedforward_layernorm: RMSNorm | null = null;

  constructor(
    config: LlamaConfig,
    private readonly traits: DecoderTraits,
  ) {
    super();
    const norm = () => new RMSNorm(config.hidden_size, config.rms_norm_eps, traits.unitOffsetNorm);
    this.self_attn = this.registerModule("self_attn", new LlamaAttention(config));
    this.mlp = this.registerModule("mlp", new LlamaMLP(config, traits));
    this.input_layernorm = this.registerModule("input_layernorm", norm());
    this.post_attention_layernorm = this.registerModule("post_attention_layernorm", norm());
    if (traits.sandwichNorms) {
      this.pre_feedforward_layernorm = this.registerModule("pre_feedforward_layernorm", norm());
      this.post_feedforward_layernorm = this.registerModule("post_feedforward_layernorm", norm());
    }
  }

  forward(x: Tensor, rope: Rope, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const { out: a, present } = this.self_attn.forward(this.input_layernorm.forward(x), rope, mask, past);
    if (this.pre_feedforward_layernorm && this.post_feedforward_layernorm) {
      const h = add(x, this.post_attention_layernorm.forward(a));
      return {
        out: add(
          h,
          this.post_feedforward_layernorm.forward(this.mlp.forward(this.pre_feedforward_layernorm.forward(h))),
        ),
        present,
      };
    }
    const p = this.traits.residDropout,
      drop = (t: Tensor) => (p ? dropout(t, p, this.training) : t);
    const h = add(x, drop(a));
    return { out: add(h, drop(this.mlp.forward(this.post_attention_layernorm.forward(h)))), present };
  }
}

/** The LLaMA-style decoder without a head. */
export class LlamaModel extends PreTrainedModel {
  embed_tokens: EmbeddingLayer;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;
  private traits: DecoderTraits;
  private readonly ropes: RotaryEmbedding[];

  constructor(override readonly config: LlamaConfig) {
    super(config);
    const traits = decoderTraits(config);
    this.traits = traits;
    this.ropes = traits.ropes.map((s) => new RotaryEmbedding(s));
    this.embed_tokens = this.registerModule("embed_tokens", new Embedding(config.vocab_size, config.hidden_size));
    this.layers = this.registerModule(
      "layers",
      new ModuleList([...Array(config.num_hidden_layers)].map(() => new LlamaDecoderLayer(config, traits))),
    );
    this.norm = this.registerModule(
      "norm",
      new RMSNorm(config.hidden_size, config.rms_norm_eps, traits.unitOffsetNorm),
    );
  }

  override get architecture(): string {
    return decoderClassName(this.constructor.name, this.config.model_type);
  }

  override get supportsGradientCheckpointing(): boolean {
    return true;
  }

  get baseModelPrefix(): string {
    return "model";
  }

  /** peft's replicate_layers: each copy keeps its source layer's attention window and rope, as HF's cloned modules do. */
  override replicateLayers(ranges: readonly (readonly number[])[]): void {
    const n = this.layers.length;
    const picks = ranges.flatMap((range) => {
      const [start, end] = range;
      if (range.length !== 2 || !(start! <= end! && end! <= n)) {
        throw new ConfigError(
          `layer_replication: ${JSON.stringify(range)} is not a range [start, end) of the ${n} layers`,
          "give pairs [start, end] with start ≤ end ≤ the number of layers",
        );
      }
      return Array.from({ length: end! - start! }, (_, i) => start! + i);
    });
    const old = [...this.layers];
    this.layers = this.registerModule("layers", new ModuleList(picks.map((i) => old[i]!.cloneSharingWeights())));
    this.traits = { ...this.traits, layers: picks.map((i) => this.traits.layers[i]!) };
    this.config.num_hidden_layers = picks.length;
  }

  override getInputEmbeddings(): EmbeddingLayer {
    return this.embed_tokens;
  }

  /** Token embeddings, scaled by √hidden (rounded to float32, as Gemma does in the embeddings' dtype) where the model does. */
  private embed(inputs: ModelInputs): Tensor {
    const embeds = embedOrUse(inputs, this.embed_tokens);
    const scaled =
      this.traits.embedScale === "inputs" || (this.traits.embedScale === "embedding" && !inputs.inputsEmbeds);
    return scaled ? mul(embeds, Math.fround(Math.sqrt(this.config.hidden_size))) : embeds;
  }

  /** Hidden states for ids or embeddings, with optional KV cache / prefix and padding mask. */
  forward(inputs: ModelInputs): BaseModelOutput {
    const embeds = this.embed(inputs);
    const [batch, length] = embeds.shape as [number, number];
    const past = pastLength(inputs.pastKeyValues);
    const positions = inputs.positionIds ?? expand(reshape(arange(length, past), [1, length]), [batch, length]);
    const ropes = this.ropes.map((r) => r.tables(positions));
    // One mask per distinct window (full-attention layers share the null one), built before the layers' memory scopes.
    const masks = new Map(this.traits.layers.map(({ window }) => [window, null as Tensor | null]));
    for (const window of masks.keys())
      masks.set(window, buildAttentionMask(inputs.attentionMask, batch, length, past + length, true, window));
    return runDecoderStack(
      this,
      [...this.layers],
      embeds,
      inputs,
      (h, past, i) => {
        const { window, rope } = this.traits.layers[i]!;
        return this.layers.get(i).forward(h, ropes[rope]!, masks.get(window) ?? null, past);
      },
      (h) => this.norm.forward(h),
    );
  }
}

/** LLaMA-style model with the language-modelling head (tied to the embeddings when tie_word_embeddings). */
export class LlamaForCausalLM extends GenerativeModel {
  model: LlamaModel;
  lm_head: TensorLayer;
  private readonly finalSoftcap: number | null;

  constructor(override readonly config: LlamaConfig) {
    super(config);
    this.model = this.registerModule("model", new LlamaModel(config));
    const lmHead = new Linear(config.hidden_size, config.vocab_size, { bias: false });
    if (config.tie_word_embeddings) lmHead.weight = lmHead.registerParameter("weight", this.model.embed_tokens.weight);
    this.lm_head = this.registerModule("lm_head", lmHead);
    this.finalSoftcap = decoderTraits(config).finalSoftcap;
  }

  override get architecture(): string {
    return decoderClassName(this.constructor.name, this.config.model_type);
  }

  get baseModelPrefix(): string {
    return "model";
  }

  override getOutputEmbeddings(): TensorLayer {
    return this.lm_head;
  }

  /** Logits for every position (soft-capped where the model does); loss when labels are given (shifted inside). */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.model.forward(inputs);
    const raw = this.lm_head.forward(keptPositions(out.lastHiddenState, inputs));
    const logits = this.finalSoftcap ? softcap(raw, this.finalSoftcap) : raw;
    return { ...out, logits, ...(inputs.labels ? { loss: causalLmLoss(logits, inputs.labels) } : {}) };
  }
}

/** LLaMA-style model with a classification head on the last non-padding token. */
export class LlamaForSequenceClassification extends PreTrainedModel {
  model: LlamaModel;
  score: TensorLayer;

  constructor(override readonly config: LlamaConfig) {
    super(config);
    this.model = this.registerModule("model", new LlamaModel(config));
    this.score = this.registerModule("score", new Linear(config.hidden_size, config.num_labels, { bias: false }));
  }

  override get architecture(): string {
    return decoderClassName(this.constructor.name, this.config.model_type);
  }

  get baseModelPrefix(): string {
    return "model";
  }

  /** Class logits [batch, num_labels]; loss when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.model.forward(inputs);
    return { ...out, ...sequenceClassification(this.score.forward(out.lastHiddenState), inputs, this.config) };
  }
}
