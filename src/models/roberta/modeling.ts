/**
 * RoBERTa / XLM-RoBERTa task models whose heads differ from BERT's (transformers' modeling_roberta). The encoder,
 * the token-classification and the question-answering models are BERT's classes under the "roberta" prefix.
 */
import { Dropout, Linear, Module } from "../../nn/index.js";
import { type Tensor, select, tanh } from "../../tensor/index.js";
import type { ModelInputs, ModelOutput } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { classificationLoss } from "../heads.js";
import type { BertConfig } from "../bert/config.js";
import { BertModel, encoderClassName } from "../bert/modeling.js";

/** dense → tanh → out_proj on the first token (<s>), with dropout before each projection. */
class RobertaClassificationHead extends Module {
  dense: Linear;
  dropout: Dropout;
  out_proj: Linear;

  constructor(config: BertConfig) {
    super();
    this.dense = this.registerModule("dense", new Linear(config.hidden_size, config.hidden_size));
    this.dropout = this.registerModule("dropout", new Dropout(config.classifier_dropout ?? config.hidden_dropout_prob));
    this.out_proj = this.registerModule("out_proj", new Linear(config.hidden_size, config.num_labels));
  }

  /** Class logits [batch, num_labels] from hidden states [batch, length, hidden]. */
  forward(hidden: Tensor): Tensor {
    const first = this.dropout.forward(select(hidden, 1, 0));
    return this.out_proj.forward(this.dropout.forward(tanh(this.dense.forward(first))));
  }
}

/** RoBERTa with its classification head on <s> (no pooler). */
export class RobertaForSequenceClassification extends PreTrainedModel {
  roberta: BertModel;
  classifier: RobertaClassificationHead;

  constructor(override readonly config: BertConfig) {
    super(config);
    this.roberta = this.registerModule("roberta", new BertModel(config, false));
    this.classifier = this.registerModule("classifier", new RobertaClassificationHead(config));
  }

  get baseModelPrefix(): string {
    return "roberta";
  }

  override get architecture(): string {
    return encoderClassName(this.constructor.name.replace(/^Roberta/, "Bert"), this.config);
  }

  /** Class logits [batch, num_labels]; loss (by the config's problem type) when labels are given. */
  forward(inputs: ModelInputs): ModelOutput {
    const out = this.roberta.forward(inputs);
    const logits = this.classifier.forward(out.lastHiddenState);
    return {
      ...(out.hiddenStates ? { hiddenStates: out.hiddenStates } : {}),
      logits,
      ...(inputs.labels ? { loss: classificationLoss(logits, inputs.labels, this.config) } : {}),
    };
  }
}
