/** PEFT: configs, getPeftModel, PeftModel and its task classes, and every registered method. */
import "./tuners/lora/index.js";

export { PeftType, TaskType } from "./config.js";
export type { PeftConfig } from "./config.js";
export {
  PeftModel, PeftModelForCausalLM, PeftModelForSeq2SeqLM, PeftModelForSequenceClassification, PeftModelForTokenClassification,
  PeftModelForQuestionAnswering, PeftModelForFeatureExtraction, getPeftModel, readAdapterConfig,
  AutoPeftModel, AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM, AutoPeftModelForSequenceClassification,
  AutoPeftModelForTokenClassification, AutoPeftModelForQuestionAnswering,
} from "./peft-model.js";
export type { SaveOptions, LoadOptions } from "./peft-model.js";
export { configFromJson, registerMethod } from "./registry.js";
export type { PeftMethod } from "./registry.js";
export { LoraConfig, LoraModel, LoraLinear, LoraEmbedding } from "./tuners/lora/index.js";
export type { CombinationType, WeightedAdapterOptions } from "./tuners/lora/index.js";
