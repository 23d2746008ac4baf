/**
 * BERT (transformers' modeling_bert, eager attention, encoder only) with HF module and parameter names. RoBERTa and
 * XLM-RoBERTa are the same encoder under the prefix "roberta", with positions counted from padding_idx + 1.
 */
import {
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
import { type Tensor, add, arange, cat, expand, reshape, select, tanh, tensor, zeros } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads, splitHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelInputs, ModelOutput, PastKeyValues } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { classificationLoss, embedOrUse, pastLength, questionAnswering, tokenLoss } from "../heads.js";
import type { BertConfig } from "./config.js";

const ROBERTA_TYPES: Record<string, string> = { roberta: "Roberta", "xlm-roberta": "XLMRoberta" };

/** Whether the config is a RoBERTa-style encoder (roberta, xlm-roberta). */
export function isRoberta(config: BertConfig): boolean {
  return config.model_type in ROBERTA_TYPES;
}

/** The attribute holding the encoder in task models: "roberta" for RoBERTa-style configs, else "bert". */
function encoderPrefix(config: BertConfig): string {
  return isRoberta(config) ? "roberta" : "bert";
}

/** transformers' class name for this model type ("XLMRobertaForTokenClassification" for an xlm-roberta BertForTokenClassification). */
export function encoderClassName(bertName: string, config: BertConfig): string {
  const prefix = ROBERTA_TYPES[config.model_type];
  return prefix ? bertName.replace(/^Bert/, prefix) : bertName;
}

/**
 * RoBERTa's positions (fairseq's make_positions): padding_idx + 1 + the count of real tokens so far (past included)
 * for real tokens, padding_idx for pads; from embeddings (no ids to see pads), padding_idx + 1 + index.
 */
function robertaPositions(inputs: ModelInputs, pad: number, batch: number, length: number, past: number): Tensor {
  if (!inputs.inputIds) return expand(reshape(arange(length, pad + 1), [1, length]), [batch, length]);
  const ids = inputs.inputIds.dataSync();
  const out = new Int32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    let count = 0;
    for (let t = 0; t < length; t++) {
      const real = ids[b * length + t] !== pad;
      if (real) count++;
      out[b * length + t] = real ? count + past + pad : pad;
    }
  }
  return tensor(out, [batch, length], "int32");
}

class BertEmbeddings extends Module {
  word_embeddings: EmbeddingLayer;
  position_embeddings: EmbeddingLayer;
  token_type_embeddings: EmbeddingLayer;
  LayerNorm: LayerNorm;
  dropout: Dropout;

  constructor(private readonly config: BertConfig) {
    super();
    const pad = config.pad_token_id ?? undefined;
    this.word_embeddings = this.registerModule(
      "word_embeddings",
      new Embedding(config.vocab_size, config.hidden_size, pad === undefined ? {} : { paddingIdx: pad }),
    );
    // RoBERTa's padding positions sit at padding_idx (their row gets no gradient, as in PyTorch).
    const positionPad = isRoberta(config) && pad !== undefined ? { paddingIdx: pad } : {};
    this.position_embeddings = this.registerModule(
      "position_embeddings",
      new Embedding(config.max_position_embeddings, config.hidden_size, positionPad),
    );
    this.token_type_embeddings = this.registerModule(
      "token_type_embeddings",
      new Embedding(config.type_vocab_size, config.hidden_size),
    );
    this.LayerNorm = this.registerModule(
      "LayerNorm",
      new LayerNorm(config.hidden_size, { eps: config.layer_norm_eps }),
    );
    this.dropout = this.registerModule("dropout", new Dropout(config.hidden_dropout_prob));
  }

  /** (word or given embeddings) + token type + absolute position (numbered from the past length), LayerNorm, dropout. */
  forward(inputs: ModelInputs, past: number): Tensor {
    const embeds = embedOrUse(inputs, this.word_embeddings);
    const [batch, length] = embeds.shape as [number, number];
    const pad = this.config.pad_token_id ?? 1;
    const first = isRoberta(this.config) ? pad + 1 : 0;
    if (inputs.positionIds === undefined && first + past + length > this.config.max_position_embeddings) {
      const max = this.config.max_position_embeddings;
      throw new Error(
        `sequence of ${past + length} positions (past ${past} + ${length}, numbered from ${first}) ` +
          `exceeds max_position_embeddings ${max}`,
      );
    }
    const positions =
      inputs.positionIds ??
      (isRoberta(this.config)
        ? robertaPositions(inputs, pad, batch, length, past)
        : expand(reshape(arange(length, past), [1, length]), [batch, length]));
    const tokenTypes = inputs.tokenTypeIds ?? zeros([batch, length], "int32");
    const summed = add(
      add(embeds, this.token_type_embeddings.forward(tokenTypes)),
      this.position_embeddings.forward(positions),
    );
    return this.dropout.forward(this.LayerNorm.forward(summed));
  }
}

class BertSelfAttention extends Module {
  query: TensorLayer;
  key: TensorLayer;
  value: TensorLayer;
  dropout: Dropout;

  constructor(private readonly config: BertConfig) {
    super();
    const h = config.hidden_size;
    this.query = this.registerModule("query", new Linear(h, h));
    this.key = this.registerModule("key", new Linear(h, h));
    this.value = this.registerModule("value", new Linear(h, h));
    this.dropout = this.registerModule("dropout", new Dropout(config.attention_probs_dropout_prob));
  }

  /** Bidirectional self-attention; past keys/values (a prefix) are prepended as HF's BertSelfAttention does. */
  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const heads = this.config.num_attention_heads;
    let key = splitHeads(this.key.forward(x), heads),
      value = splitHeads(this.value.forward(x), heads);
    if (past) {
      key = cat([past.key, key], 2);
      value = cat([past.value, value], 2);
    }
    const attn = attend(splitHeads(this.query.forward(x), heads), key, value, mask, {
      dropoutP: this.dropout.p,
      training: this.training,
    });
    return { out: mergeHeads(attn), present: { key, value } };
  }
}

/** dense → dropout → LayerNorm(· + residual): BertSelfOutput and BertOutput. */
class BertResidualOutput extends Module {
  dense: TensorLayer;
  LayerNorm: LayerNorm;
  dropout: Dropout;

  constructor(config: BertConfig, inFeatures: number) {
    super();
    this.dense = this.registerModule("dense", new Linear(inFeatures, config.hidden_size));
    this.LayerNorm = this.registerModule(
      "LayerNorm",
      new LayerNorm(config.hidden_size, { eps: config.layer_norm_eps }),
    );
    this.dropout = this.registerModule("dropout", new Dropout(config.hidden_dropout_prob));
  }

  forward(x: Tensor, residual: Tensor): Tensor {
    return this.LayerNorm.forward(add(this.dropout.forward(this.dense.forward(x)), residual));
  }
}

class BertAttention extends Module {
  self: BertSelfAttention;
  output: BertResidualOutput;

  constructor(config: BertConfig) {
    super();
    this.self = this.registerModule("self", new BertSelfAttention(config));
    this.output = this.registerModule("output", new BertResidualOutput(config, config.hidden_size));
  }

  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const { out, present } = this.self.forward(x, mask, past);
    return { out: this.output.forward(out, x), present };
  }
}

class BertIntermediate extends Module {
  dense: TensorLayer;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: BertConfig) {
    super();
    this.dense = this.registerModule("dense", new Linear(config.hidden_size, config.intermediate_size));
    this.act = activationFn(config.hidden_act);
  }

  forward(x: Tensor): Tensor {
    return this.act(this.dense.forward(x));
  }
}

class BertLayer extends Module {
  attention: BertAttention;
  intermediate: BertIntermediate;
  output: BertResidualOutput;

  constructor(config: BertConfig) {
    super();
    this.attention = this.registerModule("attention", new BertAttention(config));
    this.intermediate = this.registerModule("intermediate", new BertIntermediate(config));
    this.output = this.registerModule("output", new BertResidualOutput(config, config.intermediate_size));
  }

  forward(x: Tensor, mask: Tensor | null, past: LayerKV | undefined): { out: Tensor; present: LayerKV } {
    const { out: a, present } = this.attention.forward(x, mask, past);
    return { out: this.output.forward(this.intermediate.forward(a), a), present };
  }
}

class BertEncoder extends Module {
  layer: ModuleList<BertLayer>;

  constructor(config: BertConfig) {
    super();
    this.layer = this.registerModule(
      "layer",
      new ModuleList([...Array(config.num_hidden_layers)].map(() => new BertLayer(config))),
    );
  }
}

class BertPooler extends Module {
  dense: TensorLayer;

  constructor(config: BertConfig) {
    super();
    this.dense = this.registerModule("dense", new Linear(config.hidden_size, config.hidden_size));
  }

  /** tanh(dense(hidden state of the first token)). */
  forward(hidden: Tensor): Tensor {
    return tanh(this.dense.forward(select(hidden, 1, 0)));
  }
}

/** What BertModel returns: the base-model output plus the pooled first token (when the model has a pooler). */
export interface BertModelOutput extends BaseModelOutput {
  poolerOutput?: Tensor;
}

/** The BERT encoder without a head (with the pooler unless addPoolingLayer is false, as HF's task heads choose). */
export class BertModel extends PreTrainedModel {
  embeddings: BertEmbeddings;
  encoder: BertEncoder;
  pooler: BertPooler | null;

  constructor(
    override readonly config: BertConfig,
    addPoolingLayer = true,
  ) {
    super(config);
    this.embeddings = this.registerModule("embeddings", new BertEmbeddings(config));
    this.encoder = this.registerModule("encoder", new BertEncoder(config));
    this.pooler = this.registerModule("pooler", addPoolingLayer ? new BertPooler(config) : null);
  }

  get baseModelPrefix(): string {
    return encoderPrefix(this.config);
  }

  override get architecture(): string {
    return encoderClassName(this.constructor.name, this.config);
  }

  override getInputEmbeddings(): EmbeddingLayer {
    return this.embeddings.word_embeddings;
  }

  /**
   * Hidden states for ids or embeddings. The padding mask is HF's extended mask ((1 − mask)·finfo.min, not
   * causal). pastKeyValues (prefix tuning) are prepended to every layer's keys/values; positions then start at
   * the past length and attentionMask must cover past + current positions.
   */
  forward(inputs: ModelInputs): BertModelOutput {
    const past = pastLength(inputs.pastKeyValues);
    let hidden = this.embeddings.forward(inputs, past);
    const [batch, length] = hidden.shape as [number, number];
    const mask = buildAttentionMask(inputs.attentionMask, batch, length, past + length, false);
    const hiddenStates: Tensor[] = [];
    const presents: PastKeyValues = [];
    [...this.encoder.layer].forEach((layer, i) => {
      if (inputs.outputHiddenStates) hiddenStates.push(hidden);
      const { out, present } = layer.forward(hidden, mask, inputs.pastKeyValues?.[i]);
      hidden = out;
      presents.push(present);
    });
    if (inputs.outputHiddenStates) hiddenStates.push(hidden);
    return {
      lastHiddenState: hidden,
      ...(this.pooler ? { poolerOutput: this.pooler.forward(hidden) } : {}),
      ...(inputs.useCache ? { pastKeyValues: presents } : {}),
      ...(inputs.outputHiddenStates ? { hiddenStates } : {}),
    };
  }
}

/** Fields of a BERT output that task heads pass on. */
function passOn(out: BertModelOutput): Pick<ModelOutput, "hiddenStates" | "pastKeyValues"> {
  return {
    ...(out.hiddenStates ? { hiddenStates: out.hiddenStates } : {}),
    ...(out.pastKeyValues ? { pastKeyValues: out.pastKeyValues } : {}),
  };
}

/** Dropout rate of BERT's classifier heads: classifier_dropout, else hidden_dropout_prob. */
function classifierDropout(config: BertConfig): number {
  return config.classifier_dropout ?? config.hidden_dropout_prob;
}

/** BERT with a classifier on the pooled [CLS] output. */
export class BertForSequenceClassification extends PreTrainedModel {
  bert: BertModel;
  dropout: Dropout;
  classifier: TensorLayer;

  constructor(override readonly config: BertConfig) {
    super(config);
    this.bert = this.registerModule(encoderPrefix(config), new BertModel(config));
    this.dropout = this.registerModule("dropout", new Dropout(classifierDropout(config)));
    this.classifier = this.registerModule("classifier", new Linear(config.hidden_size, config.num_labels));
  }

  get baseModelPrefix(): string {
    return encoderPrefix(this.config);
  }

  override get architecture(): string {
    return encoderClassName(this.constructor.name, this.config);
  }

  /** Class logits [batch, num_labels]; loss (by the config's problem type) when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.bert.forward(inputs);
    const logits = this.classifier.forward(this.dropout.forward(out.poolerOutput!));
    return {
      ...passOn(out),
      logits,
      ...(inputs.labels ? { loss: classificationLoss(logits, inputs.labels, this.config) } : {}),
    };
  }
}

/** BERT with a per-token classifier (no pooler). */
export class BertForTokenClassification extends PreTrainedModel {
  bert: BertModel;
  dropout: Dropout;
  classifier: TensorLayer;

  constructor(override readonly config: BertConfig) {
    super(config);
    this.bert = this.registerModule(encoderPrefix(config), new BertModel(config, false));
    this.dropout = this.registerModule("dropout", new Dropout(classifierDropout(config)));
    this.classifier = this.registerModule("classifier", new Linear(config.hidden_size, config.num_labels));
  }

  get baseModelPrefix(): string {
    return encoderPrefix(this.config);
  }

  override get architecture(): string {
    return encoderClassName(this.constructor.name, this.config);
  }

  /** Logits [batch, length, num_labels]; mean cross-entropy over labels ≠ -100 when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.bert.forward(inputs);
    const logits = this.classifier.forward(this.dropout.forward(out.lastHiddenState));
    return { ...passOn(out), logits, ...(inputs.labels ? { loss: tokenLoss(logits, inputs.labels) } : {}) };
  }
}

/** BERT with a span head: start and end logits per token (no pooler). */
export class BertForQuestionAnswering extends PreTrainedModel {
  bert: BertModel;
  qa_outputs: TensorLayer;

  constructor(override readonly config: BertConfig) {
    super(config);
    this.bert = this.registerModule(encoderPrefix(config), new BertModel(config, false));
    this.qa_outputs = this.registerModule("qa_outputs", new Linear(config.hidden_size, config.num_labels));
  }

  get baseModelPrefix(): string {
    return encoderPrefix(this.config);
  }

  override get architecture(): string {
    return encoderClassName(this.constructor.name, this.config);
  }

  /**
   * startLogits / endLogits [batch, length] (logits: the raw [batch, length, 2]); with startPositions and
   * endPositions, HF's loss (positions clamped to [0, length], those equal to length ignored).
   */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.bert.forward(inputs);
    return { ...passOn(out), ...questionAnswering(this.qa_outputs.forward(out.lastHiddenState), inputs) };
  }
}
