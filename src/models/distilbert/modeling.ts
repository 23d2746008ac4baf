/** DistilBERT (transformers' modeling_distilbert, eager attention) with HF module and parameter names. */
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
import { type Tensor, add, arange, expand, noGrad, relu, reshape, select, tensor } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads, splitHeads } from "../attention.js";
import type { BaseModelOutput, ModelInputs, ModelOutput } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { classificationLoss, embedOrUse, questionAnswering, tokenLoss } from "../heads.js";
import type { DistilBertConfig } from "./config.js";

/** HF's create_sinusoidal_embeddings: sin on even columns, cos on odd ones, frequency 10000^(-2⌊j/2⌋/dim). */
function sinusoidalTable(positions: number, dim: number): Tensor {
  const values = new Float32Array(positions * dim);
  for (let pos = 0; pos < positions; pos++) {
    for (let j = 0; j < dim; j++) {
      const angle = pos / 10000 ** ((2 * Math.floor(j / 2)) / dim);
      values[pos * dim + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return tensor(values, [positions, dim]);
}

class Embeddings extends Module {
  word_embeddings: EmbeddingLayer;
  position_embeddings: EmbeddingLayer;
  LayerNorm: LayerNorm;
  dropout: Dropout;

  constructor(private readonly config: DistilBertConfig) {
    super();
    const pad = config.pad_token_id ?? undefined;
    this.word_embeddings = this.registerModule(
      "word_embeddings",
      new Embedding(config.vocab_size, config.dim, pad === undefined ? {} : { paddingIdx: pad }),
    );
    this.position_embeddings = this.registerModule(
      "position_embeddings",
      new Embedding(config.max_position_embeddings, config.dim),
    );
    if (config.sinusoidal_pos_embds) {
      noGrad(() => this.position_embeddings.weight.copy_(sinusoidalTable(config.max_position_embeddings, config.dim)));
      this.position_embeddings.weight.requiresGrad = false;
    }
    this.LayerNorm = this.registerModule("LayerNorm", new LayerNorm(config.dim, { eps: 1e-12 }));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout));
  }

  /** Word (or given) embeddings + positions 0…length−1, LayerNorm, dropout. */
  forward(inputs: ModelInputs): Tensor {
    const embeds = embedOrUse(inputs, this.word_embeddings);
    const [batch, length] = embeds.shape as [number, number];
    if (length > this.config.max_position_embeddings) {
      throw new Error(
        `sequence of ${length} tokens exceeds DistilBERT's max_position_embeddings ` +
          `${this.config.max_position_embeddings}`,
      );
    }
    const positions = expand(reshape(arange(length), [1, length]), [batch, length]);
    return this.dropout.forward(this.LayerNorm.forward(add(embeds, this.position_embeddings.forward(positions))));
  }
}

class MultiHeadSelfAttention extends Module {
  dropout: Dropout;
  q_lin: TensorLayer;
  k_lin: TensorLayer;
  v_lin: TensorLayer;
  out_lin: TensorLayer;

  constructor(private readonly config: DistilBertConfig) {
    super();
    const d = config.dim;
    this.dropout = this.registerModule("dropout", new Dropout(config.attention_dropout));
    this.q_lin = this.registerModule("q_lin", new Linear(d, d));
    this.k_lin = this.registerModule("k_lin", new Linear(d, d));
    this.v_lin = this.registerModule("v_lin", new Linear(d, d));
    this.out_lin = this.registerModule("out_lin", new Linear(d, d));
  }

  forward(x: Tensor, mask: Tensor | null): Tensor {
    const h = this.config.n_heads;
    const q = splitHeads(this.q_lin.forward(x), h),
      k = splitHeads(this.k_lin.forward(x), h),
      v = splitHeads(this.v_lin.forward(x), h);
    const attn = attend(q, k, v, mask, { dropoutP: this.dropout.p, training: this.training });
    return this.out_lin.forward(mergeHeads(attn));
  }
}

class FFN extends Module {
  dropout: Dropout;
  lin1: TensorLayer;
  lin2: TensorLayer;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: DistilBertConfig) {
    super();
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout));
    this.lin1 = this.registerModule("lin1", new Linear(config.dim, config.hidden_dim));
    this.lin2 = this.registerModule("lin2", new Linear(config.hidden_dim, config.dim));
    this.act = activationFn(config.activation);
  }

  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.lin2.forward(this.act(this.lin1.forward(x))));
  }
}

class TransformerBlock extends Module {
  attention: MultiHeadSelfAttention;
  sa_layer_norm: LayerNorm;
  ffn: FFN;
  output_layer_norm: LayerNorm;

  constructor(config: DistilBertConfig) {
    super();
    this.attention = this.registerModule("attention", new MultiHeadSelfAttention(config));
    this.sa_layer_norm = this.registerModule("sa_layer_norm", new LayerNorm(config.dim, { eps: 1e-12 }));
    this.ffn = this.registerModule("ffn", new FFN(config));
    this.output_layer_norm = this.registerModule("output_layer_norm", new LayerNorm(config.dim, { eps: 1e-12 }));
  }

  forward(x: Tensor, mask: Tensor | null): Tensor {
    const sa = this.sa_layer_norm.forward(add(this.attention.forward(x, mask), x));
    return this.output_layer_norm.forward(add(this.ffn.forward(sa), sa));
  }
}

class Transformer extends Module {
  layer: ModuleList<TransformerBlock>;

  constructor(config: DistilBertConfig) {
    super();
    this.layer = this.registerModule(
      "layer",
      new ModuleList([...Array(config.n_layers)].map(() => new TransformerBlock(config))),
    );
  }
}

/** The DistilBERT encoder without a head. */
export class DistilBertModel extends PreTrainedModel {
  embeddings: Embeddings;
  transformer: Transformer;

  constructor(override readonly config: DistilBertConfig) {
    super(config);
    this.embeddings = this.registerModule("embeddings", new Embeddings(config));
    this.transformer = this.registerModule("transformer", new Transformer(config));
  }

  get baseModelPrefix(): string {
    return "distilbert";
  }

  override getInputEmbeddings(): EmbeddingLayer {
    return this.embeddings.word_embeddings;
  }

  /** Hidden states for ids or embeddings with a padding mask (bidirectional; masked scores set to finfo.min). */
  forward(inputs: ModelInputs): BaseModelOutput {
    if (inputs.pastKeyValues && inputs.pastKeyValues.length > 0) {
      throw new Error(
        "DistilBertModel does not take pastKeyValues (transformers' DistilBERT has no " +
          "past_key_values; prefix tuning is not supported)",
      );
    }
    if (inputs.tokenTypeIds) throw new Error("DistilBertModel has no token type embeddings; do not pass tokenTypeIds");
    let hidden = this.embeddings.forward(inputs);
    const [batch, length] = hidden.shape as [number, number];
    const mask = buildAttentionMask(inputs.attentionMask, batch, length, length, false);
    const hiddenStates: Tensor[] = [];
    for (const layer of this.transformer.layer) {
      if (inputs.outputHiddenStates) hiddenStates.push(hidden);
      hidden = layer.forward(hidden, mask);
    }
    if (inputs.outputHiddenStates) hiddenStates.push(hidden);
    return { lastHiddenState: hidden, ...(inputs.outputHiddenStates ? { hiddenStates } : {}) };
  }
}

/** DistilBERT with pre_classifier → ReLU → dropout → classifier on the first ([CLS]) position. */
export class DistilBertForSequenceClassification extends PreTrainedModel {
  distilbert: DistilBertModel;
  pre_classifier: TensorLayer;
  classifier: TensorLayer;
  dropout: Dropout;

  constructor(override readonly config: DistilBertConfig) {
    super(config);
    this.distilbert = this.registerModule("distilbert", new DistilBertModel(config));
    this.pre_classifier = this.registerModule("pre_classifier", new Linear(config.dim, config.dim));
    this.classifier = this.registerModule("classifier", new Linear(config.dim, config.num_labels));
    this.dropout = this.registerModule("dropout", new Dropout(config.seq_classif_dropout));
  }

  get baseModelPrefix(): string {
    return "distilbert";
  }

  /** Class logits [batch, num_labels]; loss (by the config's problem type) when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.distilbert.forward(inputs);
    const pooled = this.dropout.forward(relu(this.pre_classifier.forward(select(out.lastHiddenState, 1, 0))));
    const logits = this.classifier.forward(pooled);
    return {
      ...(out.hiddenStates ? { hiddenStates: out.hiddenStates } : {}),
      logits,
      ...(inputs.labels ? { loss: classificationLoss(logits, inputs.labels, this.config) } : {}),
    };
  }
}

/** DistilBERT with a per-token classifier. */
export class DistilBertForTokenClassification extends PreTrainedModel {
  distilbert: DistilBertModel;
  dropout: Dropout;
  classifier: TensorLayer;

  constructor(override readonly config: DistilBertConfig) {
    super(config);
    this.distilbert = this.registerModule("distilbert", new DistilBertModel(config));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout));
    this.classifier = this.registerModule("classifier", new Linear(config.dim, config.num_labels));
  }

  get baseModelPrefix(): string {
    return "distilbert";
  }

  /** Logits [batch, length, num_labels]; mean cross-entropy over labels ≠ -100 when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.distilbert.forward(inputs);
    const logits = this.classifier.forward(this.dropout.forward(out.lastHiddenState));
    return {
      ...(out.hiddenStates ? { hiddenStates: out.hiddenStates } : {}),
      logits,
      ...(inputs.labels ? { loss: tokenLoss(logits, inputs.labels) } : {}),
    };
  }
}

/** DistilBERT with a span head (dropout qa_dropout → qa_outputs): start and end logits per token. */
export class DistilBertForQuestionAnswering extends PreTrainedModel {
  distilbert: DistilBertModel;
  qa_outputs: TensorLayer;
  dropout: Dropout;

  constructor(override readonly config: DistilBertConfig) {
    super(config);
    this.distilbert = this.registerModule("distilbert", new DistilBertModel(config));
    this.qa_outputs = this.registerModule("qa_outputs", new Linear(config.dim, config.num_labels));
    this.dropout = this.registerModule("dropout", new Dropout(config.qa_dropout));
  }

  get baseModelPrefix(): string {
    return "distilbert";
  }

  /** startLogits / endLogits [batch, length]; HF's span loss with startPositions / endPositions. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.distilbert.forward(inputs);
    const span = this.qa_outputs.forward(this.dropout.forward(out.lastHiddenState));
    return { ...(out.hiddenStates ? { hiddenStates: out.hiddenStates } : {}), ...questionAnswering(span, inputs) };
  }
}
