/**
 * Auto classes: pick the architecture from config.json's model_type, as transformers' AutoModel* do.
 * Families register here; adding one is one entry in FAMILIES.
 */
import { join } from "node:path";
import { readJsonObject } from "../io/json.js";
import type { PretrainedConfig } from "./config.js";
import { loadPretrained, type FromPretrainedOptions, type ModelClass, type PreTrainedModel } from "./pretrained.js";
import { convertLinear, modulesToNotConvert, parseQuantizationConfig, type BitsAndBytesConfig } from "./quantization.js";
import { withDeferredLinearWeights } from "../nn/index.js";
import { defaultGenerator } from "../tensor/index.js";
import { gpt2Config } from "./gpt2/config.js";
import { GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model } from "./gpt2/modeling.js";
import { llamaConfig } from "./llama/config.js";
import { LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel } from "./llama/modeling.js";
import { bertConfig } from "./bert/config.js";
import { BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification, BertModel } from "./bert/modeling.js";
import { distilBertConfig } from "./distilbert/config.js";
import {
  DistilBertForQuestionAnswering, DistilBertForSequenceClassification, DistilBertForTokenClassification, DistilBertModel,
} from "./distilbert/modeling.js";
import { t5Config } from "./t5/config.js";
import { T5ForConditionalGeneration, T5Model } from "./t5/modeling.js";

/** The head a model carries, named after transformers' Auto classes. */
export type Task = "base" | "causal-lm" | "seq2seq-lm" | "sequence-classification" | "token-classification" | "question-answering";

interface Family {
  parseConfig: (raw: Record<string, unknown>) => PretrainedConfig;
  classes: Partial<Record<Task, ModelClass>>;
}

const gpt2: Family = {
  parseConfig: gpt2Config,
  classes: { base: GPT2Model, "causal-lm": GPT2LMHeadModel, "sequence-classification": GPT2ForSequenceClassification },
};
const llama: Family = {
  parseConfig: llamaConfig,
  classes: { base: LlamaModel, "causal-lm": LlamaForCausalLM, "sequence-classification": LlamaForSequenceClassification },
};

const bert: Family = {
  parseConfig: bertConfig,
  classes: {
    base: BertModel, "sequence-classification": BertForSequenceClassification, "token-classification": BertForTokenClassification,
    "question-answering": BertForQuestionAnswering,
  },
};
const distilbert: Family = {
  parseConfig: distilBertConfig,
  classes: {
    base: DistilBertModel, "sequence-classification": DistilBertForSequenceClassification,
    "token-classification": DistilBertForTokenClassification, "question-answering": DistilBertForQuestionAnswering,
  },
};

const t5: Family = {
  parseConfig: t5Config,
  classes: { base: T5Model, "seq2seq-lm": T5ForConditionalGeneration },
};

const FAMILIES: Record<string, Family> = { gpt2, llama, qwen2: llama, mistral: llama, bert, distilbert, t5, mt5: t5 };

/** Register another family (used by the family modules that live outside this file). */
export function registerFamily(modelTypes: readonly string[], family: Family): void {
  for (const t of modelTypes) FAMILIES[t] = family;
}

function familyOf(modelType: string, where: string): Family {
  const f = FAMILIES[modelType];
  if (!f) throw new Error(`${where}: model_type "${modelType}" is not supported; supported: ${Object.keys(FAMILIES).join(", ")}`);
  return f;
}

function classFor(family: Family, modelType: string, task: Task): ModelClass {
  const cls = family.classes[task];
  if (!cls) {
    throw new Error(`model_type "${modelType}" has no ${task} model; available: ${Object.keys(family.classes).join(", ")}`);
  }
  return cls;
}

/** Parse a raw config.json object with its family's defaults. */
export function parseConfig(raw: Record<string, unknown>): PretrainedConfig {
  const type = String(raw["model_type"] ?? "");
  return familyOf(type, "config").parseConfig(raw);
}

/** Options of fromConfig. */
export interface FromConfigOptions {
  /** Build the Linear layers quantised (BitsAndBytesConfig fields), one layer at a time: no float32 copy of the model. */
  quantizationConfig?: BitsAndBytesConfig;
}

/**
 * A freshly initialised model for a config (random weights drawn as transformers does), e.g. to pretrain or for tests.
 * Quantised, each Linear is drawn and quantised in turn with the same random values as the float model would have.
 */
export function modelFromConfig(config: Record<string, unknown>, task: Task, opts: FromConfigOptions = {}): PreTrainedModel {
  const parsed = parseConfig(config);
  const cls = classFor(familyOf(parsed.model_type, "config"), parsed.model_type, task);
  if (!opts.quantizationConfig) return new cls(parsed).initWeights();
  const settings = parseQuantizationConfig(opts.quantizationConfig);
  const model = withDeferredLinearWeights(() => new cls(parsed));
  const notConvert = modulesToNotConvert(settings, model);
  model.initWeights(defaultGenerator, (path, m) => convertLinear(model, path, m, settings, notConvert));
  model.config["quantization_config"] = settings.dict;
  return model;
}

/** Load the model with the given head from an HF folder. */
export function fromPretrained(dir: string, task: Task, opts: FromPretrainedOptions = {}): PreTrainedModel {
  const raw = readJsonObject(join(dir, "config.json"));
  const type = String(raw["model_type"] ?? "");
  const family = familyOf(type, join(dir, "config.json"));
  return loadPretrained(classFor(family, type, task), dir, family.parseConfig, opts);
}

function autoClass(task: Task) {
  return {
    /** Load from a local HF model folder. */
    fromPretrained: (dir: string, opts?: FromPretrainedOptions) => fromPretrained(dir, task, opts),
    /** A randomly initialised model for a config object. */
    fromConfig: (config: Record<string, unknown>, opts?: FromConfigOptions) => modelFromConfig(config, task, opts),
  };
}

/** Base models (no head). */
export const AutoModel = autoClass("base");
/** Decoder-only language models. */
export const AutoModelForCausalLM = autoClass("causal-lm");
/** Encoder-decoder language models. */
export const AutoModelForSeq2SeqLM = autoClass("seq2seq-lm");
/** Sequence classification. */
export const AutoModelForSequenceClassification = autoClass("sequence-classification");
/** Token classification. */
export const AutoModelForTokenClassification = autoClass("token-classification");
/** Extractive question answering. */
export const AutoModelForQuestionAnswering = autoClass("question-answering");
