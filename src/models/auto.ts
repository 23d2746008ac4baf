/**
 * Auto classes: pick the architecture from config.json's model_type, as transformers' AutoModel* do.
 * Families register here; adding one is one entry in FAMILIES.
 */
import { join } from "node:path";
import { readJsonObject } from "../io/json.js";
import { resolvePretrainedSync } from "../io/hub-sync.js";
import { repoIdOfSnapshot } from "../io/hub-cache.js";
import { ConfigError } from "../errors.js";
import type { PretrainedConfig } from "./config.js";
import {
  buildDeferred,
  loadPretrained,
  resolveModelDType,
  type FromPretrainedOptions,
  type ModelClass,
  type PreTrainedModel,
} from "./pretrained.js";
import { buildModules, type ParameterDType } from "../nn/index.js";
import {
  convertLinear,
  modulesToNotConvert,
  parseQuantizationConfig,
  type BitsAndBytesConfig,
} from "./quantization.js";
import { defaultGenerator } from "../tensor/index.js";
import { backend } from "../backend/index.js";
import { gpt2Config } from "./gpt2/config.js";
import { GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model } from "./gpt2/modeling.js";
import { DECODER_MODEL_TYPES, llamaConfig } from "./llama/config.js";
import { LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel } from "./llama/modeling.js";
import { bertConfig } from "./bert/config.js";
import {
  BertForQuestionAnswering,
  BertForSequenceClassification,
  BertForTokenClassification,
  BertModel,
} from "./bert/modeling.js";
import { bloomConfig } from "./bloom/config.js";
import { BloomForCausalLM, BloomForSequenceClassification, BloomModel } from "./bloom/modeling.js";
import { gptNeoXConfig } from "./gpt_neox/config.js";
import { GPTNeoXForCausalLM, GPTNeoXForSequenceClassification, GPTNeoXModel } from "./gpt_neox/modeling.js";
import { optConfig } from "./opt/config.js";
import { OPTForCausalLM, OPTForSequenceClassification, OPTModel } from "./opt/modeling.js";
import { RobertaForSequenceClassification } from "./roberta/modeling.js";
import { distilBertConfig } from "./distilbert/config.js";
import {
  DistilBertForQuestionAnswering,
  DistilBertForSequenceClassification,
  DistilBertForTokenClassification,
  DistilBertModel,
} from "./distilbert/modeling.js";
import { t5Config } from "./t5/config.js";
import { T5ForConditionalGeneration, T5Model } from "./t5/modeling.js";
import { asGenerative, type GenerativeModel } from "./generation/generative-model.js";

/** The head a model carries, named after transformers' Auto classes. */
export type Task =
  | "base"
  | "causal-lm"
  | "seq2seq-lm"
  | "sequence-classification"
  | "token-classification"
  | "question-answering";

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
  classes: {
    base: LlamaModel,
    "causal-lm": LlamaForCausalLM,
    "sequence-classification": LlamaForSequenceClassification,
  },
};

const bert: Family = {
  parseConfig: bertConfig,
  classes: {
    base: BertModel,
    "sequence-classification": BertForSequenceClassification,
    "token-classification": BertForTokenClassification,
    "question-answering": BertForQuestionAnswering,
  },
};
const opt: Family = {
  parseConfig: optConfig,
  classes: { base: OPTModel, "causal-lm": OPTForCausalLM, "sequence-classification": OPTForSequenceClassification },
};
const bloom: Family = {
  parseConfig: bloomConfig,
  classes: {
    base: BloomModel,
    "causal-lm": BloomForCausalLM,
    "sequence-classification": BloomForSequenceClassification,
  },
};
const gptNeoX: Family = {
  parseConfig: gptNeoXConfig,
  classes: {
    base: GPTNeoXModel,
    "causal-lm": GPTNeoXForCausalLM,
    "sequence-classification": GPTNeoXForSequenceClassification,
  },
};
const roberta: Family = {
  // RoBERTa's defaults are BERT's but for the special tokens.
  parseConfig: (raw) => bertConfig({ pad_token_id: 1, bos_token_id: 0, eos_token_id: 2, ...raw }),
  classes: {
    base: BertModel,
    "sequence-classification": RobertaForSequenceClassification,
    "token-classification": BertForTokenClassification,
    "question-answering": BertForQuestionAnswering,
  },
};
const distilbert: Family = {
  parseConfig: distilBertConfig,
  classes: {
    base: DistilBertModel,
    "sequence-classification": DistilBertForSequenceClassification,
    "token-classification": DistilBertForTokenClassification,
    "question-answering": DistilBertForQuestionAnswering,
  },
};

const t5: Family = {
  parseConfig: t5Config,
  classes: { base: T5Model, "seq2seq-lm": T5ForConditionalGeneration },
};

const FAMILIES: Record<string, Family> = {
  gpt2,
  ...Object.fromEntries(DECODER_MODEL_TYPES.map((t) => [t, llama])),
  opt,
  bloom,
  gpt_neox: gptNeoX,
  bert,
  roberta,
  "xlm-roberta": roberta,
  distilbert,
  t5,
  mt5: t5,
};

/** Register another family (used by the family modules that live outside this file). */
export function registerFamily(modelTypes: readonly string[], family: Family): void {
  for (const t of modelTypes) FAMILIES[t] = family;
}

function familyOf(modelType: string, where: string): Family {
  const f = FAMILIES[modelType];
  if (!f)
    throw new ConfigError(
      `${where}: model_type "${modelType}" is not supported; supported: ${Object.keys(FAMILIES).join(", ")}`,
    );
  return f;
}

function classFor(family: Family, modelType: string, task: Task): ModelClass {
  const cls = family.classes[task];
  if (!cls) {
    throw new Error(
      `model_type "${modelType}" has no ${task} model; available: ${Object.keys(family.classes).join(", ")}`,
    );
  }
  return cls;
}

/** Parse a raw config.json object with its family's defaults. */
export function parseConfig(raw: Record<string, unknown>): PretrainedConfig {
  const type = String(raw["model_type"] ?? "");
  return familyOf(type, "config").parseConfig(raw);
}

/** The tasks whose models generate text. */
export type GenerativeTask = "causal-lm" | "seq2seq-lm";

/** The model type a task gives: GenerativeModel for the language-modelling tasks. */
export type ModelFor<T extends Task> = T extends GenerativeTask ? GenerativeModel : PreTrainedModel;

/** The model typed for its task (the language-modelling heads are GenerativeModels). */
function typed<T extends Task>(model: PreTrainedModel, task: T): ModelFor<T> {
  return (task === "causal-lm" || task === "seq2seq-lm" ? asGenerative(model) : model) as ModelFor<T>;
}

/** Options of fromConfig. */
export interface FromConfigOptions {
  /** Parameter dtype (HF's torch_dtype; default float32): a half model is built and initialised layer by layer in it. */
  dtype?: ParameterDType;
  /** Build the Linear layers quantised (BitsAndBytesConfig fields), one layer at a time: no float32 copy of the model. */
  quantizationConfig?: BitsAndBytesConfig;
}

/**
 * A freshly initialised model for a config (random weights drawn as transformers does), e.g. to pretrain or for tests.
 * With a half dtype each layer's weights are made in that dtype as the layer is built (zeros, then drawn module by
 * module through float32 scratch), so a model never exists whole in float32: an 8B-shaped bf16 model needs 16 GB.
 */
export function modelFromConfig<T extends Task>(
  config: Record<string, unknown>,
  task: T,
  opts: FromConfigOptions = {},
): ModelFor<T> {
  const parsed = parseConfig(config);
  const cls = classFor(familyOf(parsed.model_type, "config"), parsed.model_type, task);
  const dtype = resolveModelDType(opts.dtype ?? "float32", config);
  let model: PreTrainedModel;
  if (opts.quantizationConfig) {
    // Each Linear is drawn and quantised in turn; the other modules (embeddings, norms, lm_head) are in `dtype`.
    const settings = parseQuantizationConfig(opts.quantizationConfig);
    const built = buildDeferred(cls, parsed, dtype);
    const notConvert = modulesToNotConvert(settings, built);
    buildModules({ dtype }, () =>
      built.initWeights(defaultGenerator, undefined, (path, m) => convertLinear(built, path, m, settings, notConvert)),
    );
    built.config["quantization_config"] = settings.dict;
    model = built;
  } else {
    model = (
      dtype === "float32" ? new cls(parsed) : buildModules({ dtype, init: false }, () => new cls(parsed))
    ).initWeights();
  }
  backend().trimPool(); // the build's scratch buffers come in one-off sizes
  return typed(model, task);
}

/** Load the model with the given head from an HF folder, or from a Hub repo id (downloaded into the shared cache). */
export function fromPretrained<T extends Task>(
  nameOrPath: string,
  task: T,
  opts: FromPretrainedOptions = {},
): ModelFor<T> {
  const dir = resolvePretrainedSync(nameOrPath, "model", opts);
  const raw = readJsonObject(join(dir, "config.json"));
  const type = String(raw["model_type"] ?? "");
  const family = familyOf(type, join(dir, "config.json"));
  const model = loadPretrained(classFor(family, type, task), dir, family.parseConfig, opts);
  // The id (also for a snapshot folder of the cache), so adapters record a base model that loads anywhere.
  model.nameOrPath = repoIdOfSnapshot(nameOrPath) ?? nameOrPath;
  return typed(model, task);
}

function autoClass<T extends Task>(task: T) {
  return {
    /** Load from a local HF model folder or a Hub repo id ("org/name", with revision, token, cacheDir, localFilesOnly). */
    fromPretrained: (nameOrPath: string, opts?: FromPretrainedOptions) => fromPretrained(nameOrPath, task, opts),
    /** A randomly initialised model for a config object, optionally in a half dtype. */
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
