/** The LLaMA family (LLaMA, Qwen2, Mistral; transformers' modeling_llama, eager attention) with HF names. */
import { Embedding, Linear, Module, ModuleList, RMSNorm, activationFn } from "../../nn/index.js";
import { Tensor, add, appendAlong, applyRotary, arange, expand, mul, reshape, unsqueeze } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads, splitHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs, ModelOutput, PastKeyValues } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { causalLmLoss, embedOrUse, pastLength, sequenceClassification } from "../heads.js";
import { checkRopeScaling, rotaryTables } from "../rotary.js";
import { attentionBiases, slidingWindow, type LlamaConfig } from "./config.js";

const FAMILY_PREFIX: Record<string, string> = { llama: "Llama", qwen2: "Qwen2", mistral: "Mistral" };

/** transformers' class name for this model type ("Qwen2ForCausalLM" for a qwen2 LlamaForCausalLM). */
function familyClassName(name: string, config: LlamaConfig): string {
  return name.replace(/^Llama/, FAMILY_PREFIX[config.model_type] ?? "Llama");
}

/** Size of one attention head. */
function headDim(config: LlamaConfig): number {
  return config.head_dim ?? config.hidden_size / config.num_attention_heads;
}

class LlamaAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;

  constructor(private readonly config: LlamaConfig) {
    super();
    const d = headDim(config), h = config.num_attention_heads, kv = config.num_key_value_heads;
    const bias = attentionBiases(config);
    this.q_proj = this.registerModule("q_proj", new Linear(config.hidden_size, h * d, { bias: bias.qkv }));
    this.k_proj = this.registerModule("k_proj", new Linear(config.hidden_size, kv * d, { bias: bias.qkv }));
    this.v_proj = this.registerModule("v_proj", new Linear(config.hidden_size, kv * d, { bias: bias.qkv }));
    this.o_proj = this.registerModule("o_proj", new Linear(h * d, config.hidden_size, { bias: bias.o }));
  }

  forward(x: Tensor, rope: { cos: Tensor; sin: Tensor }, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const c = this.config;
    const cos = unsqueeze(rope.cos, 1), sin = unsqueeze(rope.sin, 1);
    const q = applyRotary(splitHeads(this.q_proj.forward(x), c.num_attention_heads), cos, sin);
    let key = applyRotary(splitHeads(this.k_proj.forward(x), c.num_key_value_heads), cos, sin);
    let value = splitHeads(this.v_proj.forward(x), c.num_key_value_heads);
    if (past) {
      // Grows the cache in place when past is its latest extension (generation), else copies (see appendAlong).
      key = appendAlong(past.key, key, 2);
      value = appendAlong(past.value, value, 2);
    }
    const attn = attend(q, key, value, mask, { dropoutP: c.attention_dropout, training: this.training });
    return { out: this.o_proj.forward(mergeHeads(attn)), present: { key, value } };
  }
}

class LlamaMLP extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: LlamaConfig) {
    super();
    const bias = { bias: config.mlp_bias };
    this.gate_proj = this.registerModule("gate_proj", new Linear(config.hidden_size, config.intermediate_size, bias));
    this.up_proj = this.registerModule("up_proj", new Linear(config.hidden_size, config.intermediate_size, bias));
    this.down_proj = this.registerModule("down_proj", new Linear(config.intermediate_size, config.hidden_size, bias));
    this.act = activationFn(config.hidden_act);
  }

  forward(x: Tensor): Tensor {
    return this.down_proj.forward(mul(this.act(this.gate_proj.forward(x)), this.up_proj.forward(x)));
  }
}

class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;

  constructor(config: LlamaConfig) {
    super();
    this.self_attn = this.registerModule("self_attn", new LlamaAttention(config));
    this.mlp = this.registerModule("mlp", new LlamaMLP(config));
    this.input_layernorm = this.registerModule("input_layernorm", new RMSNorm(config.hidden_size, config.rms_norm_eps));
    this.post_attention_layernorm = this.registerModule("post_attention_layernorm", new RMSNorm(config.hidden_size, config.rms_norm_eps));
  }

  forward(x: Tensor, rope: { cos: Tensor; sin: Tensor }, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const { out: a, present } = this.self_attn.forward(this.input_layernorm.forward(x), rope, mask, past);
    const h = add(x, a);
    return { out: add(h, this.mlp.forward(this.post_attention_layernorm.forward(h))), present };
  }
}

/** The LLaMA-family decoder without a head. */
export class LlamaModel extends PreTrainedModel {
  embed_tokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;

  constructor(override readonly config: LlamaConfig) {
    super(config);
    checkRopeScaling(config.rope_scaling, config.model_type);
    this.embed_tokens = this.registerModule("embed_tokens", new Embedding(config.vocab_size, config.hidden_size));
    this.layers = this.registerModule("layers", new ModuleList([...Array(config.num_hidden_layers)].map(() => new LlamaDecoderLayer(config))));
    this.norm = this.registerModule("norm", new RMSNorm(config.hidden_size, config.rms_norm_eps));
  }

  override get architecture(): string {
    return familyClassName(this.constructor.name, this.config);
  }

  override get supportsGradientCheckpointing(): boolean {
    return true;
  }

  get baseModelPrefix(): string {
    return "model";
  }

  override getInputEmbeddings(): Embedding {
    return this.embed_tokens;
  }

  /** Hidden states for ids or embeddings, with optional KV cache / prefix and padding mask. */
  forward(inputs: ModelInputs): BaseModelOutput {
    const embeds = embedOrUse(inputs, this.embed_tokens);
    const [batch, length] = embeds.shape as [number, number];
    const past = pastLength(inputs.pastKeyValues);
    const positions = inputs.positionIds ?? expand(reshape(arange(length, past), [1, length]), [batch, length]);
    const rope = rotaryTables(positions, headDim(this.config), this.config.rope_theta);
    const mask = buildAttentionMask(inputs.attentionMask, batch, length, past + length, true, slidingWindow(this.config));
    let hidden = embeds;
    const hiddenStates: Tensor[] = [];
    const presents: PastKeyValues = [];
    [...this.layers].forEach((layer, i) => {
      if (inputs.outputHiddenStates) hiddenStates.push(hidden);
      const { out, present } = this.runLayer(layer, hidden, (h) => layer.forward(h, rope, mask, inputs.pastKeyValues?.[i]), inputs.useCache === true);
      hidden = out;
      if (present) presents.push(present);
    });
    hidden = this.norm.forward(hidden);
    if (inputs.outputHiddenStates) hiddenStates.push(hidden);
    return {
      lastHiddenState: hidden,
      ...(inputs.useCache ? { pastKeyValues: presents } : {}),
      ...(inputs.outputHiddenStates ? { hiddenStates } : {}),
    };
  }
}

/** LLaMA-family model with the language-modelling head (tied to the embeddings when tie_word_embeddings). */
export class LlamaForCausalLM extends PreTrainedModel {
  model: LlamaModel;
  lm_head: Linear;

  constructor(override readonly config: LlamaConfig) {
    super(config);
    this.model = this.registerModule("model", new LlamaModel(config));
    this.lm_head = this.registerModule("lm_head", new Linear(config.hidden_size, config.vocab_size, { bias: false }));
    if (config.tie_word_embeddings) this.lm_head.weight = this.lm_head.registerParameter("weight", this.model.embed_tokens.weight);
  }

  override get architecture(): string {
    return familyClassName(this.constructor.name, this.config);
  }

  get baseModelPrefix(): string {
    return "model";
  }

  override getOutputEmbeddings(): Linear {
    return this.lm_head;
  }


  /** Logits for every position; loss when labels are given (shifted inside). */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.model.forward(inputs);
    const logits = this.lm_head.forward(out.lastHiddenState);
    return { ...out, logits, ...(inputs.labels ? { loss: causalLmLoss(logits, inputs.labels) } : {}) };
  }
}

/** LLaMA-family model with a classification head on the last non-padding token. */
export class LlamaForSequenceClassification extends PreTrainedModel {
  model: LlamaModel;
  score: Linear;

  constructor(override readonly config: LlamaConfig) {
    super(config);
    this.model = this.registerModule("model", new LlamaModel(config));
    this.score = this.registerModule("score", new Linear(config.hidden_size, config.num_labels, { bias: false }));
  }

  override get architecture(): string {
    return familyClassName(this.constructor.name, this.config);
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
