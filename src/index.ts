/**
 * peft-ts: parameter-efficient fine-tuning of Hugging Face transformer models in TypeScript.
 * The names users of Python's peft/transformers know, in camelCase; lower layers are under subpaths
 * (peft-ts/tensor, peft-ts/nn, peft-ts/optim, peft-ts/io).
 */
import "./generation/index.js";

export * from "./peft/index.js";
export {
  AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoModelForTokenClassification,
  AutoModelForQuestionAnswering,
} from "./models/auto.js";
export { PreTrainedModel } from "./models/pretrained.js";
export { dequantizeModel } from "./models/quantization.js";
export type { BitsAndBytesConfig } from "./models/quantization.js";
export type { ModelInputs, Seq2SeqInputs, ModelOutput, BaseModelOutput, PastKeyValues } from "./models/outputs.js";
export { AutoTokenizer, PreTrainedTokenizer } from "./tokenizers/index.js";
export { generate } from "./generation/index.js";
export type { GenerateOptions } from "./generation/index.js";
export * from "./train/index.js";
export { tensor, tidy, keep, noGrad, manualSeed, memory } from "./tensor/index.js";
export type { Tensor } from "./tensor/index.js";
export { PeftError, ConfigError, CheckpointError, ModelMismatchError, DatasetError, EnvironmentError } from "./errors.js";
export type { PeftErrorCode } from "./errors.js";
