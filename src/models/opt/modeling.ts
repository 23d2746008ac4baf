/** OPT (transformers' modeling_opt, eager attention) with HF module and parameter names. */
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, activationFn } from "../../nn/index.js";
import { type Tensor, add, appendAlong, ones, tensor } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads, splitHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { embedOrUse, pastLength, runDecoderStack } from "../heads.js";
import { causalLmClass, sequenceClassificationClass, type DecoderFamily } from "../task-models.js";
import type { OPTConfig } from "./config.js";

/** OPT's learned positions start at index 2 of the table (fairseq's offset). */
const POSITION_OFFSET = 2;

class OPTAttention extends Module {
  k_proj: Linear;
  v_proj: Linear;
  q_proj: Linear;
  out_proj: Linear;

  constructor(private readonly config: OPTConfig) {
    super();
    const h = config.hidden_size,
      bias = { bias: config.enable_bias };
    this.k_proj = this.registerModule("k_proj", new Linear(h, h, bias));
    this.v_proj = this.registerModule("v_proj", new Linear(h, h, bias));
    this.q_proj = this.registerModule("q_proj", new Linear(h, h, bias));
    this.out_proj = this.registerModule("out_proj", new Linear(h, h, bias));
  }

  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const heads = this.config.num_attention_heads;
    let key = splitHeads(this.k_proj.forward(x), heads),
      value = splitHeads(this.v_proj.forward(x), heads);
    if (past) {
      key = appendAlong(past.key, key, 2);
      value = appendAlong(past.value, value, 2);
    }
    const attn = attend(splitHeads(this.q_proj.forward(x), heads), key, value, mask, {
      dropoutP: this.config.attention_dropout,
      training: this.training,
    });
    return { out: this.out_proj.forward(mergeHeads(attn)), present: { key, value } };
  }
}

class OPTDecoderLayer extends Module {
  self_attn: OPTAttention;
  self_attn_layer_norm: LayerNorm;
  fc1: Linear;
  fc2: Linear;
  final_layer_norm: LayerNorm;
  private readonly act: (x: Tensor) => Tensor;
  private readonly dropout: Dropout;

  constructor(private readonly config: OPTConfig) {
    super();
    const h = config.hidden_size,
      bias = { bias: config.enable_bias };
    const norm = () => new LayerNorm(h, { elementwiseAffine: config.layer_norm_elementwise_affine });
    this.self_attn = this.registerModule("self_attn", new OPTAttention(config));
    this.self_attn_layer_norm = this.registerModule("self_attn_layer_norm", norm());
    this.fc1 = this.registerModule("fc1", new Linear(h, config.ffn_dim, bias));
    this.fc2 = this.registerModule("fc2", new Linear(config.ffn_dim, h, bias));
    this.final_layer_norm = this.registerModule("final_layer_norm", norm());
    this.act = activationFn(config.activation_function);
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout));
  }

  /** Pre-norm residual blocks (post-norm when do_layer_norm_before is false, OPT-350m). */
  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const pre = this.config.do_layer_norm_before;
    const { out: a, present } = this.self_attn.forward(pre ? this.self_attn_layer_norm.forward(x) : x, mask, past);
    let h = add(x, this.dropout.forward(a));
    if (!pre) h = this.self_attn_layer_norm.forward(h);
    const ff = this.fc2.forward(this.act(this.fc1.forward(pre ? this.final_layer_norm.forward(h) : h)));
    const out = add(h, this.dropout.forward(ff));
    return { out: pre ? out : this.final_layer_norm.forward(out), present };
  }
}

/**
 * OPT's positions come from the attention mask, not from the token index: the running count of real tokens minus
 * one (pads get -1), then the offset of 2; past positions are dropped. Given positionIds are ignored, as in 4.44.
 */
function optPositions(mask: Tensor, past: number, length: number): Tensor {
  const [batch, total] = mask.shape as [number, number];
  const m = mask.dataSync();
  const out = new Int32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    let count = 0;
    for (let t = 0; t < total; t++) {
      const real = m[b * total + t] !== 0;
      if (real) count++;
      if (t >= past) out[b * length + t - past] = (real ? count - 1 : -1) + POSITION_OFFSET;
    }
  }
  return tensor(out, [batch, length], "int32");
}

class OPTDecoder extends Module {
  embed_tokens: Embedding;
  embed_positions: Embedding;
  project_out: Linear | null;
  project_in: Linear | null;
  final_layer_norm: LayerNorm | null;
  layers: ModuleList<OPTDecoderLayer>;
  private readonly dropout: Dropout;

  constructor(config: OPTConfig) {
    super();
    const h = config.hidden_size,
      proj = config.word_embed_proj_dim;
    const pad = config.pad_token_id ?? undefined;
    this.embed_tokens = this.registerModule(
      "embed_tokens",
      new Embedding(config.vocab_size, proj, pad === undefined ? {} : { paddingIdx: pad }),
    );
    this.embed_positions = this.registerModule(
      "embed_positions",
      new Embedding(config.max_position_embeddings + POSITION_OFFSET, h),
    );
    this.project_out = this.registerModule("project_out", proj !== h ? new Linear(h, proj, { bias: false }) : null);
    this.project_in = this.registerModule("project_in", proj !== h ? new Linear(proj, h, { bias: false }) : null);
    const finalNorm = config.do_layer_norm_before && !config._remove_final_layer_norm;
    const affine = { elementwiseAffine: config.layer_norm_elementwise_affine };
    this.final_layer_norm = this.registerModule("final_layer_norm", finalNorm ? new LayerNorm(h, affine) : null);
    this.layers = this.registerModule(
      "layers",
      new ModuleList([...Array(config.num_hidden_layers)].map(() => new OPTDecoderLayer(config))),
    );
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout));
  }

  /** Run the decoder; `owner` (the OPTModel holding it) runs each layer (memory scopes, checkpointing). */
  forward(inputs: ModelInputs, owner: PreTrainedModel): BaseModelOutput {
    let embeds = embedOrUse(inputs, this.embed_tokens);
    const [batch, length] = embeds.shape as [number, number];
    const past = pastLength(inputs.pastKeyValues);
    const attentionMask = inputs.attentionMask ?? ones([batch, past + length], "int32");
    if (this.project_in) embeds = this.project_in.forward(embeds);
    const hidden = this.dropout.forward(
      add(embeds, this.embed_positions.forward(optPositions(attentionMask, past, length))),
    );
    const mask = buildAttentionMask(attentionMask, batch, length, past + length, true);
    return runDecoderStack(
      owner,
      [...this.layers],
      hidden,
      inputs,
      (h, past, i) => this.layers.get(i).forward(h, mask, past),
      (h) => {
        const normed = this.final_layer_norm ? this.final_layer_norm.forward(h) : h;
        return this.project_out ? this.project_out.forward(normed) : normed;
      },
    );
  }
}

/** The OPT decoder without a head. */
export class OPTModel extends PreTrainedModel {
  decoder: OPTDecoder;

  constructor(override readonly config: OPTConfig) {
    super(config);
    this.decoder = this.registerModule("decoder", new OPTDecoder(config));
  }

  get baseModelPrefix(): string {
    return "model";
  }

  override getInputEmbeddings(): Embedding {
    return this.decoder.embed_tokens;
  }

  /** Hidden states for ids or embeddings, with optional KV cache / prefix and padding mask. */
  forward(inputs: ModelInputs): BaseModelOutput {
    return this.decoder.forward(inputs, this);
  }
}

const OPT: DecoderFamily<OPTConfig> = {
  prefix: "OPT",
  base: OPTModel,
  baseName: "model",
  headInput: (c) => c.word_embed_proj_dim,
};
/** OPT with the language-modelling head (tied to the embeddings by default). */
export const OPTForCausalLM = causalLmClass(OPT);
/** OPT with a classification head on the last non-padding token. */
export const OPTForSequenceClassification = sequenceClassificationClass(OPT);
