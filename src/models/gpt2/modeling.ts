/** GPT-2 (transformers' modeling_gpt2, eager attention) with HF module and parameter names. */
import {
  Conv1D,
  Dropout,
  Embedding,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  activationFn,
  type EmbeddingLayer,
  type TensorLayer,
} from "../../nn/index.js";
import { type Tensor, add, appendAlong, arange, expand, reshape, split } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads, splitHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs, ModelOutput } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import {
  causalLmLoss,
  embedOrUse,
  keptPositions,
  pastLength,
  runDecoderStack,
  sequenceClassification,
} from "../heads.js";
import { GenerativeModel } from "../generation/generative-model.js";
import type { GPT2Config } from "./config.js";

class GPT2Attention extends Module {
  c_attn: TensorLayer;
  c_proj: TensorLayer;
  private readonly attnDropout: number;
  private readonly residDropout: Dropout;

  constructor(
    private readonly config: GPT2Config,
    private readonly layerIdx: number,
  ) {
    super();
    this.c_attn = this.registerModule("c_attn", new Conv1D(3 * config.n_embd, config.n_embd));
    this.c_proj = this.registerModule("c_proj", new Conv1D(config.n_embd, config.n_embd));
    this.attnDropout = config.attn_pdrop;
    this.residDropout = this.registerModule("resid_dropout", new Dropout(config.resid_pdrop));
  }

  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const heads = this.config.n_head,
      c = this.config.n_embd;
    const [q, k, v] = split(this.c_attn.forward(x), [c, c, c], 2) as [Tensor, Tensor, Tensor];
    let key = splitHeads(k, heads),
      value = splitHeads(v, heads);
    if (past) {
      // Grows the cache in place when past is its latest extension (generation), else copies (see appendAlong).
      key = appendAlong(past.key, key, 2);
      value = appendAlong(past.value, value, 2);
    }
    let scale = this.config.scale_attn_weights ? 1 / Math.sqrt(c / heads) : 1;
    if (this.config.scale_attn_by_inverse_layer_idx) scale /= this.layerIdx + 1;
    const attn = attend(splitHeads(q, heads), key, value, mask, {
      scale,
      dropoutP: this.attnDropout,
      training: this.training,
    });
    return { out: this.residDropout.forward(this.c_proj.forward(mergeHeads(attn))), present: { key, value } };
  }
}

class GPT2MLP extends Module {
  c_fc: TensorLayer;
  c_proj: TensorLayer;
  private readonly act: (x: Tensor) => Tensor;
  private readonly dropout: Dropout;

  constructor(config: GPT2Config) {
    super();
    const inner = config.n_inner ?? 4 * config.n_embd;
    this.c_fc = this.registerModule("c_fc", new Conv1D(inner, config.n_embd));
    this.c_proj = this.registerModule("c_proj", new Conv1D(config.n_embd, inner));
    this.act = activationFn(config.activation_function);
    this.dropout = this.registerModule("dropout", new Dropout(config.resid_pdrop));
  }

  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(this.act(this.c_fc.forward(x))));
  }
}

class GPT2Block extends Module {
  ln_1: LayerNorm;
  attn: GPT2Attention;
  ln_2: LayerNorm;
  mlp: GPT2MLP;

  constructor(config: GPT2Config, layerIdx: number) {
    super();
    this.ln_1 = this.registerModule("ln_1", new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon }));
    this.attn = this.registerModule("attn", new GPT2Attention(config, layerIdx));
    this.ln_2 = this.registerModule("ln_2", new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon }));
    this.mlp = this.registerModule("mlp", new GPT2MLP(config));
  }

  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const { out: a, present } = this.attn.forward(this.ln_1.forward(x), mask, past);
    const h = add(x, a);
    return { out: add(h, this.mlp.forward(this.ln_2.forward(h))), present };
  }
}

/** The GPT-2 transformer without a head. */
export class GPT2Model extends PreTrainedModel {
  wte: EmbeddingLayer;
  wpe: EmbeddingLayer;
  drop: Dropout;
  h: ModuleList<GPT2Block>;
  ln_f: LayerNorm;

  constructor(override readonly config: GPT2Config) {
    super(config);
    this.wte = this.registerModule("wte", new Embedding(config.vocab_size, config.n_embd));
    this.wpe = this.registerModule("wpe", new Embedding(config.n_positions, config.n_embd));
    this.drop = this.registerModule("drop", new Dropout(config.embd_pdrop));
    this.h = this.registerModule(
      "h",
      new ModuleList([...Array(config.n_layer).keys()].map((i) => new GPT2Block(config, i))),
    );
    this.ln_f = this.registerModule("ln_f", new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon }));
  }

  override get supportsGradientCheckpointing(): boolean {
    return true;
  }

  get baseModelPrefix(): string {
    return "transformer";
  }

  override getInputEmbeddings(): EmbeddingLayer {
    return this.wte;
  }

  /** Hidden states for ids or embeddings, with optional KV cache / prefix and padding mask. */
  forward(inputs: ModelInputs): BaseModelOutput {
    const embeds = embedOrUse(inputs, this.wte);
    const [batch, length] = embeds.shape as [number, number];
    const past = pastLength(inputs.pastKeyValues);
    if (past + length > this.config.n_positions) {
      throw new Error(`sequence of ${past + length} positions exceeds GPT-2's n_positions ${this.config.n_positions}`);
    }
    const positions = inputs.positionIds ?? expand(reshape(arange(length, past), [1, length]), [batch, length]);
    const hidden = this.drop.forward(add(embeds, this.wpe.forward(positions)));
    const mask = buildAttentionMask(inputs.attentionMask, batch, length, past + length, true);
    return runDecoderStack(
      this,
      [...this.h],
      hidden,
      inputs,
      (h, past, i) => this.h.get(i).forward(h, mask, past),
      (h) => this.ln_f.forward(h),
    );
  }
}

/** GPT-2 with the language-modelling head (tied to wte unless the config unties it). */
export class GPT2LMHeadModel extends GenerativeModel {
  transformer: GPT2Model;
  lm_head: TensorLayer;

  constructor(override readonly config: GPT2Config) {
    super(config);
    this.transformer = this.registerModule("transformer", new GPT2Model(config));
    const lmHead = new Linear(config.n_embd, config.vocab_size, { bias: false });
    if (config.tie_word_embeddings) lmHead.weight = lmHead.registerParameter("weight", this.transformer.wte.weight);
    this.lm_head = this.registerModule("lm_head", lmHead);
  }

  get baseModelPrefix(): string {
    return "transformer";
  }

  override getOutputEmbeddings(): TensorLayer {
    return this.lm_head;
  }

  /** Logits for every position; loss when labels are given (shifted inside). */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.transformer.forward(inputs);
    const logits = this.lm_head.forward(keptPositions(out.lastHiddenState, inputs));
    return { ...out, logits, ...(inputs.labels ? { loss: causalLmLoss(logits, inputs.labels) } : {}) };
  }
}

/** GPT-2 with a classification head on the last non-padding token. */
export class GPT2ForSequenceClassification extends PreTrainedModel {
  transformer: GPT2Model;
  score: TensorLayer;

  constructor(override readonly config: GPT2Config) {
    super(config);
    this.transformer = this.registerModule("transformer", new GPT2Model(config));
    this.score = this.registerModule("score", new Linear(config.n_embd, config.num_labels, { bias: false }));
  }

  get baseModelPrefix(): string {
    return "transformer";
  }

  /** Class logits [batch, num_labels]; loss when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.transformer.forward(inputs);
    return { ...out, ...sequenceClassification(this.score.forward(out.lastHiddenState), inputs, this.config) };
  }
}
