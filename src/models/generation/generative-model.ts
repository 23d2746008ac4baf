/**
 * GenerativeModel: the base of the model classes that generate text (causal LMs and encoder-decoder LMs), as
 * transformers' GenerationMixin is. The decoding loop lives beside it at the models layer, so `generate` is an
 * ordinary method: nothing has to be installed on the class from a layer above.
 */
import type { Tensor } from "../../tensor/index.js";
import type { ModelOutput, Seq2SeqInputs } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import {
  generate,
  generateDetailed,
  generateStream,
  type GenerateOptions,
  type GenerateOutput,
  type Generative,
  type GenerationStep,
} from "./generate.js";

/** A model with a language-modelling head that generate() can drive. */
export abstract class GenerativeModel extends PreTrainedModel implements Generative {
  /** Run the model; generative models always return logits. */
  abstract override forward(inputs: Seq2SeqInputs): ModelOutput;

  /** Generate continuations of inputIds (see GenerateOptions). */
  generate(opts: GenerateOptions): Tensor {
    return generate(this, opts);
  }

  /** generate with each token's log-probability and each row's finish reason. */
  generateDetailed(opts: GenerateOptions): GenerateOutput {
    return generateDetailed(this, opts);
  }

  /** generate as an async iterator of steps (streaming). */
  generateStream(opts: GenerateOptions): AsyncGenerator<GenerationStep, void> {
    return generateStream(this, opts);
  }
}

/** The model as a GenerativeModel, or an error saying that its class has no language-modelling head. */
export function asGenerative(model: PreTrainedModel): GenerativeModel {
  if (model instanceof GenerativeModel) return model;
  throw new Error(
    `${model.constructor.name} cannot generate text: it has no language-modelling head; load ` +
      `it as a causal LM or seq2seq LM`,
  );
}

/** `model` as generate() drives it, with each step's forward run by `forward` instead (a host that wraps its passes). */
export function withForward(model: Generative, forward: (inputs: Seq2SeqInputs) => ModelOutput): Generative {
  return {
    config: model.config,
    isEncoderDecoder: model.isEncoderDecoder,
    get training() {
      return model.training;
    },
    forward,
    ...(model.encode ? { encode: (inputs: Seq2SeqInputs) => model.encode!(inputs) } : {}),
    eval: () => model.eval(),
    train: (mode?: boolean) => model.train(mode),
  };
}
