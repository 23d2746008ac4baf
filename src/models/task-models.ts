/**
 * The task models of a decoder family, made from its base model: `…ForCausalLM` (an LM head, tied to the input
 * embeddings when tie_word_embeddings) and `…ForSequenceClassification` (a `score` head on the last non-padding token).
 * A family supplies its base class and HF's names; the classes come out with transformers' class and module names.
 */
import { Linear, type TensorLayer } from "../nn/index.js";
import type { PretrainedConfig } from "./config.js";
import { causalLmLoss, keptPositions, sequenceClassification } from "./heads.js";
import type { BaseModelOutput, ModelInputs, ModelOutput } from "./outputs.js";
import { PreTrainedModel, type ModelClass } from "./pretrained.js";
import { GenerativeModel } from "./generation/generative-model.js";

/** What a decoder family tells the task-model factories. */
export interface DecoderFamily<C extends PretrainedConfig> {
  /** transformers' class-name prefix ("Bloom"). */
  prefix: string;
  /** The base model class (its forward returns hidden states). */
  base: new (
    config: C,
  ) => FamilyBase;
  /** The attribute holding the base model ("transformer", "gpt_neox", "model"). */
  baseName: string;
  /** The LM head's name ("lm_head"; GPT-NeoX: "embed_out"). */
  lmHeadName?: string;
  /** Features of the hidden states the heads read. */
  headInput: (config: C) => number;
}

/** A family's base model, as task models hold it. */
type FamilyBase = PreTrainedModel & { forward(inputs: ModelInputs): BaseModelOutput };

/** Register the family's base model under its name: the task model's first child. */
function registerBase<C extends PretrainedConfig>(
  model: PreTrainedModel,
  config: C,
  family: DecoderFamily<C>,
): FamilyBase {
  return model.registerModule(family.baseName, new family.base(config));
}

/** `<prefix>ForCausalLM`: logits for every position (or the last `numLogitsToKeep`); loss when labels are given (shifted inside). */
export function causalLmClass<C extends PretrainedConfig>(family: DecoderFamily<C>): ModelClass {
  const name = `${family.prefix}ForCausalLM`;
  const cls = class extends GenerativeModel {
    readonly base: FamilyBase;
    readonly head: TensorLayer;

    constructor(override readonly config: C) {
      super(config);
      this.base = registerBase(this, config, family);
      const head = new Linear(family.headInput(config), config.vocab_size, { bias: false });
      if (config.tie_word_embeddings)
        head.weight = head.registerParameter("weight", this.base.getInputEmbeddings().weight);
      this.head = this.registerModule(family.lmHeadName ?? "lm_head", head);
    }

    get baseModelPrefix(): string {
      return family.baseName;
    }

    override getOutputEmbeddings(): TensorLayer {
      return this.head;
    }

    forward(inputs: ModelInputs): ModelOutput {
      const out = this.base.forward(inputs);
      const logits = this.head.forward(keptPositions(out.lastHiddenState, inputs));
      return { ...out, logits, ...(inputs.labels ? { loss: causalLmLoss(logits, inputs.labels) } : {}) };
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  return cls;
}

/** `<prefix>ForSequenceClassification`: class logits [batch, num_labels] on the last non-padding token; loss with labels. */
export function sequenceClassificationClass<C extends PretrainedConfig>(family: DecoderFamily<C>): ModelClass {
  const name = `${family.prefix}ForSequenceClassification`;
  const cls = class extends PreTrainedModel {
    readonly base: FamilyBase;
    readonly score: TensorLayer;

    constructor(override readonly config: C) {
      super(config);
      this.base = registerBase(this, config, family);
      this.score = this.registerModule(
        "score",
        new Linear(family.headInput(config), config.num_labels, { bias: false }),
      );
    }

    get baseModelPrefix(): string {
      return family.baseName;
    }

    forward(inputs: ModelInputs): ModelOutput {
      const out = this.base.forward(inputs);
      return { ...out, ...sequenceClassification(this.score.forward(out.lastHiddenState), inputs, this.config) };
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  return cls;
}
