/**
 * PeftModel: a transformers model with one or more adapters — getPeftModel, the task-specific subclasses,
 * parameter counts, adapter management, saving/loading adapter folders in HF peft's format, merging.
 */
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { Module, quantizedWeightElements } from "../nn/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import type { ModelOutput, Seq2SeqInputs } from "../models/outputs.js";
import { fromPretrained as loadModel, type Task } from "../models/auto.js";
import { generate, type GenerateOptions } from "../generation/index.js";
import { Tensor, noGrad } from "../tensor/index.js";
import { loadSafetensors, writeSafetensors } from "../io/safetensors.js";
import { readJsonObject } from "../io/json.js";
import { writeFileAtomic } from "../io/atomic.js";
import { pythonJson } from "../io/json.js";
import { TaskType, type PeftConfig } from "./config.js";
import { configFromJson, methodFor } from "./registry.js";
import { TASK_HEADS } from "./mapping.js";
import { adapterStateDict, loadAdapterStateDict } from "./state-dict.js";
import type { BaseTuner } from "./tuners/tuner.js";
import { PromptLearningModel, type PromptLearningConfig, type PromptTask } from "./tuners/prompt-learning.js";
import { LoraModel, type WeightedAdapterOptions } from "./tuners/lora/model.js";
import { adapterModelCard } from "./model-card.js";

/** Options of savePretrained. */
export interface SaveOptions {
  /** Only safetensors is supported (the default in HF peft). */
  safeSerialization?: boolean;
  /** Adapters to save (all by default). */
  selectedAdapters?: string[];
}

/** Options of fromPretrained / loadAdapter. */
export interface LoadOptions {
  adapterName?: string;
  /** Load with trainable adapter weights (frozen by default, as in HF). */
  isTrainable?: boolean;
}

/**
 * peft-ts's extra file in a prompt-learning adapter folder: the prompt encoder's own weights (embedding and
 * MLP/LSTM/projection), written when the encoder has a network. Loading for training restores the encoder from it;
 * without it (folders from Python peft) training continues on the saved output directly.
 */
export const PROMPT_ENCODER_FILE = "prompt_encoder.safetensors";

/** The method's wrapper around a model for its first adapter. */
function createTuner(model: PreTrainedModel, config: PeftConfig, adapterName: string): BaseTuner {
  const method = methodFor(config.peft_type);
  if (method.kind === "prompt") return new PromptLearningModel(model, config as PromptLearningConfig, adapterName);
  return method.createTuner(model, config, adapterName);
}

/**
 * A model with adapters. `base_model` is the method's wrapper (HF's LoraModel), whose `model` is the transformers
 * model. For prompt-learning methods the wrapper is a PromptLearningModel holding the prompt encoders next to the
 * untouched model, and the task subclasses run peft's task-specific forwards with the prompts.
 */
export class PeftModel extends Module {
  base_model: BaseTuner;
  readonly peftConfig: Record<string, PeftConfig> = {};
  activeAdapter: string;
  /** Which of peft's task forwards prompt learning runs (the task subclasses set theirs). */
  protected readonly promptTask: PromptTask = "feature-extraction";

  constructor(model: PreTrainedModel, config: PeftConfig, adapterName = "default") {
    super();
    const prepared = this.prepareConfig(config);
    this.base_model = this.registerModule("base_model", createTuner(model, prepared, adapterName));
    this.peftConfig[adapterName] = this.base_model.peftConfig.get(adapterName)!;
    this.activeAdapter = adapterName;
    this.peftConfig[adapterName]!.base_model_name_or_path ??= model.nameOrPath;
  }

  /** Task subclasses add their heads to modules_to_save here. */
  protected prepareConfig(config: PeftConfig): PeftConfig {
    const heads = config.task_type ? TASK_HEADS[config.task_type] : undefined;
    if (!heads || !("modules_to_save" in config)) return config;
    const existing = (config["modules_to_save"] as string[] | null) ?? [];
    return { ...config, modules_to_save: [...existing, ...heads.filter((h) => !existing.includes(h))] };
  }

  /** The transformers model inside (with adapter layers injected). */
  getBaseModel(): PreTrainedModel {
    return this.base_model.model;
  }

  /** The method wrapper (HF's `peft_model.base_model`). */
  get baseModel(): BaseTuner {
    return this.base_model;
  }

  /** The active adapters. */
  get activeAdapters(): string[] {
    return [...this.base_model.activeAdapters];
  }

  /** The config of the active adapter. */
  get activePeftConfig(): PeftConfig {
    return this.peftConfig[this.activeAdapter]!;
  }

  /** The prompt-learning wrapper when this model's adapters are prompt/P-/prefix tuning, else null. */
  get promptLearning(): PromptLearningModel | null {
    return this.base_model instanceof PromptLearningModel ? this.base_model : null;
  }

  /** Run the model with the active adapters (prompt learning: with the active prompt, unless disabled). */
  forward(inputs: Seq2SeqInputs): ModelOutput {
    const prompts = this.promptLearning;
    if (prompts && !prompts.disabled) return prompts.forwardWithPrompts(this.promptTask, inputs);
    return this.base_model.forward(inputs) as ModelOutput;
  }

  /** Generate with the active adapters (see GenerateOptions). */
  generate(opts: GenerateOptions): Tensor {
    const prompts = this.promptLearning;
    if (prompts && !prompts.disabled) return generate(prompts.generative(), opts);
    return generate(this.getBaseModel() as unknown as Parameters<typeof generate>[0], opts);
  }

  /** [trainable, all] parameter counts (HF's get_nb_trainable_parameters; shared tensors counted once). */
  getNbTrainableParameters(): [number, number] {
    let trainable = 0, all = 0;
    for (const p of this.parameters()) {
      all += p.size;
      if (p.requiresGrad) trainable += p.size;
    }
    return [trainable, all + quantizedWeightElements(this)]; // quantised weights are no parameters; peft counts them unpacked
  }

  /** The line HF peft prints: "trainable params: 2,048 || all params: 122,624 || trainable%: 1.6701". */
  trainableParametersLine(): string {
    const [trainable, all] = this.getNbTrainableParameters();
    const fmt = (n: number) => n.toLocaleString("en-US");
    return `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}`;
  }

  /** Print the trainable-parameter line. */
  printTrainableParameters(): void {
    console.log(this.trainableParametersLine());
  }

  /** Add another adapter (not made active). */
  addAdapter(adapterName: string, config: PeftConfig): void {
    if (config.peft_type !== this.activePeftConfig.peft_type) {
      throw new Error(`cannot add a ${config.peft_type} adapter to a model whose adapters are ${this.activePeftConfig.peft_type}`);
    }
    const prepared = this.base_model.injectAdapter(this.prepareConfig(config) as never, adapterName);
    prepared.base_model_name_or_path ??= this.getBaseModel().nameOrPath;
    this.peftConfig[adapterName] = prepared;
  }

  /** Make an adapter the active one. */
  setAdapter(adapterName: string): void {
    if (!(adapterName in this.peftConfig)) throw new Error(`adapter "${adapterName}" not found; adapters: ${Object.keys(this.peftConfig).join(", ")}`);
    this.base_model.setAdapter(adapterName);
    this.activeAdapter = adapterName;
  }

  /** Delete an adapter and its weights. */
  deleteAdapter(adapterName: string): void {
    this.base_model.deleteAdapter(adapterName);
    delete this.peftConfig[adapterName];
    this.activeAdapter = this.base_model.activeAdapters[0] ?? "";
  }

  /**
   * Add an adapter that combines LoRA adapters with weights (peft's add_weighted_adapter): "linear" (equal
   * ranks), "cat" (rank Σr, exact weighted sum of the deltas) or "svd" (truncated SVD of the weighted deltas at
   * rank svdRank or max r). IA3 adapters combine as Σ weightᵢ·lᵢ (no options). The new adapter is not made
   * active; call setAdapter(adapterName).
   */
  addWeightedAdapter(adapters: string[], weights: number[], adapterName: string, opts: WeightedAdapterOptions = {}): void {
    if (this.base_model instanceof LoraModel) {
      this.peftConfig[adapterName] = this.base_model.addWeightedAdapter(adapters, weights, adapterName, opts);
      return;
    }
    // Other methods that can combine adapters (IA3: a weighted sum of the vectors; no options).
    const tuner = this.base_model as BaseTuner & { addWeightedAdapter?: (adapters: string[], weights: number[], adapterName: string) => PeftConfig };
    if (typeof tuner.addWeightedAdapter !== "function") {
      throw new Error(`addWeightedAdapter combines LoRA adapters only (and IA3 adapters); this model's adapters are ${this.activePeftConfig.peft_type}`);
    }
    if (Object.keys(opts).length > 0) throw new Error(`addWeightedAdapter: options (${Object.keys(opts).join(", ")}) apply to LoRA only; ${this.activePeftConfig.peft_type} adapters are combined as a weighted sum`);
    this.peftConfig[adapterName] = tuner.addWeightedAdapter(adapters, weights, adapterName);
  }

  /** Run fn with every adapter switched off (the base model's behaviour), then switch them back on. */
  withAdapterDisabled<T>(fn: () => T): T {
    this.base_model.setAdaptersDisabled(true);
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.base_model.setAdaptersDisabled(false);
      throw err;
    }
    if (result instanceof Promise) return result.finally(() => this.base_model.setAdaptersDisabled(false)) as T;
    this.base_model.setAdaptersDisabled(false);
    return result;
  }

  /** Fold the active adapters into the base weights (outputs unchanged, faster inference). */
  mergeAdapter(adapterNames?: string[]): void {
    this.base_model.merge(adapterNames);
  }

  /** Undo mergeAdapter. */
  unmergeAdapter(): void {
    this.base_model.unmerge();
  }

  /** Merge the adapters and return the plain transformers model (save it with savePretrained). */
  mergeAndUnload(adapterNames?: string[]): PreTrainedModel {
    return noGrad(() => this.base_model.unloadAndMaybeMerge(true, adapterNames));
  }

  /** Remove the adapter layers without merging; returns the original transformers model. */
  unload(): PreTrainedModel {
    return this.base_model.unloadAndMaybeMerge(false);
  }

  /** The tensors saved for an adapter, keyed as in adapter_model.safetensors. */
  adapterStateDict(adapterName = this.activeAdapter): Map<string, Tensor> {
    const config = this.peftConfig[adapterName];
    if (!config) throw new Error(`adapter "${adapterName}" not found`);
    const prompts = this.promptLearning;
    if (prompts) return prompts.savedTensors(adapterName);
    return this.base_model.finalizeSavedState(adapterName, adapterStateDict(this, methodFor(config.peft_type), adapterName, String(config["bias"] ?? "none")));
  }

  /**
   * Write each adapter as HF peft does: adapter_config.json (sorted keys, inference_mode true),
   * adapter_model.safetensors and a README.md model card; adapters other than "default" go to a subfolder.
   * Files are written atomically.
   */
  savePretrained(dir: string, opts: SaveOptions = {}): void {
    if (opts.safeSerialization === false) throw new Error("only safetensors serialization is supported (safeSerialization: true)");
    const names = opts.selectedAdapters ?? Object.keys(this.peftConfig);
    for (const name of names) {
      const config = this.peftConfig[name];
      if (!config) throw new Error(`cannot save adapter "${name}": no such adapter; adapters: ${Object.keys(this.peftConfig).join(", ")}`);
      const out = name === "default" ? dir : join(dir, name);
      mkdirSync(out, { recursive: true });
      writeSafetensors(join(out, "adapter_model.safetensors"), this.adapterStateDict(name), { format: "pt" });
      // P-tuning / projected prefixes: peft saves only the encoder's output; the network's weights go beside it so
      // that training can resume exactly (Python peft ignores the extra file).
      const encoder = this.promptLearning?.encoderTensors(name);
      if (encoder) writeSafetensors(join(out, PROMPT_ENCODER_FILE), encoder, { format: "pt" });
      const saved = { ...config, inference_mode: true, base_model_name_or_path: config.base_model_name_or_path ?? this.getBaseModel().nameOrPath };
      writeFileAtomic(join(out, "adapter_config.json"), pythonJson(saved));
      if (!existsSync(join(out, "README.md"))) writeFileAtomic(join(out, "README.md"), adapterModelCard(saved.base_model_name_or_path));
    }
  }

  /** Load another adapter from a folder into this model. */
  loadAdapter(dir: string, adapterName: string, opts: Omit<LoadOptions, "adapterName"> = {}): void {
    const config = readAdapterConfig(dir, opts.isTrainable ?? false);
    if (adapterName in this.peftConfig) throw new Error(`an adapter named "${adapterName}" is already loaded`);
    this.addAdapter(adapterName, config);
    this.loadAdapterWeights(dir, adapterName);
  }

  /** Copy an adapter folder's weights into the already-configured adapter `adapterName`. */
  loadAdapterWeights(dir: string, adapterName: string): void {
    const file = join(dir, "adapter_model.safetensors");
    if (!existsSync(file)) {
      const found = existsSync(dir) ? readdirSync(dir).join(", ") : "nothing (the folder does not exist)";
      throw new Error(`${dir} has no adapter_model.safetensors (found: ${found}); is this a PEFT adapter folder?`);
    }
    const weights = loadSafetensors(file);
    try {
      const prompts = this.promptLearning;
      if (prompts) {
        const encoderFile = join(dir, PROMPT_ENCODER_FILE);
        const encoder = existsSync(encoderFile) ? loadSafetensors(encoderFile) : null;
        try {
          noGrad(() => prompts.loadSaved(weights, adapterName, file, encoder));
        } finally {
          for (const t of encoder?.values() ?? []) t.dispose();
        }
        return;
      }
      const method = methodFor(this.peftConfig[adapterName]!.peft_type);
      this.base_model.beforeLoadWeights(adapterName);
      const { missingKeys } = noGrad(() => loadAdapterStateDict(this, method, weights, adapterName, file));
      if (missingKeys.length > 0) process.emitWarning(`${file}: adapter weights missing (left at their initial values): ${missingKeys.join(", ")}`);
    } finally {
      for (const t of weights.values()) t.dispose();
    }
  }

  /** A PeftModel from a base model and a saved adapter folder (frozen unless isTrainable, as in HF). */
  static fromPretrained(model: PreTrainedModel, dir: string, opts: LoadOptions = {}): PeftModel {
    const adapterName = opts.adapterName ?? "default";
    const config = readAdapterConfig(dir, opts.isTrainable ?? false);
    const peft = getPeftModel(model, config, adapterName);
    peft.loadAdapterWeights(dir, adapterName);
    if (!opts.isTrainable) peft.eval();
    return peft;
  }
}

/** Causal language modelling (CAUSAL_LM). Prompt learning: labels get -100 for the virtual tokens. */
export class PeftModelForCausalLM extends PeftModel {
  protected override readonly promptTask: PromptTask = "causal-lm";
}
/** Encoder-decoder language modelling (SEQ_2_SEQ_LM). Prompt learning: prompts go before the encoder input. */
export class PeftModelForSeq2SeqLM extends PeftModel {
  protected override readonly promptTask: PromptTask = "seq2seq-lm";
}
/**
 * Sequence classification (SEQ_CLS): the classifier/score head is trained and saved as modules_to_save (not with
 * prompt learning, as in peft 0.15: the prompt alone is trained).
 */
export class PeftModelForSequenceClassification extends PeftModel {
  protected override readonly promptTask: PromptTask = "sequence-classification";
}
/** Token classification (TOKEN_CLS). Prompt learning: the logits of the virtual tokens are dropped. */
export class PeftModelForTokenClassification extends PeftModel {
  protected override readonly promptTask: PromptTask = "token-classification";
}
/** Extractive question answering (QUESTION_ANS). Prompt learning: the virtual tokens' span logits are dropped. */
export class PeftModelForQuestionAnswering extends PeftModel {
  protected override readonly promptTask: PromptTask = "question-answering";
}
/** Feature extraction (FEATURE_EXTRACTION). */
export class PeftModelForFeatureExtraction extends PeftModel {
  protected override readonly promptTask: PromptTask = "feature-extraction";
}

const TASK_CLASSES: Record<string, new (model: PreTrainedModel, config: PeftConfig, adapterName: string) => PeftModel> = {
  [TaskType.CAUSAL_LM]: PeftModelForCausalLM,
  [TaskType.SEQ_2_SEQ_LM]: PeftModelForSeq2SeqLM,
  [TaskType.SEQ_CLS]: PeftModelForSequenceClassification,
  [TaskType.TOKEN_CLS]: PeftModelForTokenClassification,
  [TaskType.QUESTION_ANS]: PeftModelForQuestionAnswering,
  [TaskType.FEATURE_EXTRACTION]: PeftModelForFeatureExtraction,
};

/** Wrap a transformers model with a PEFT method: only the adapter (and modules_to_save) parameters stay trainable. */
export function getPeftModel(model: PreTrainedModel, config: PeftConfig, adapterName = "default"): PeftModel {
  const cls = config.task_type ? TASK_CLASSES[config.task_type] : PeftModel;
  return new (cls ?? PeftModel)(model, config, adapterName);
}

/** Read and parse adapter_config.json; inference_mode follows isTrainable. */
export function readAdapterConfig(dir: string, isTrainable: boolean): PeftConfig {
  const path = join(dir, "adapter_config.json");
  if (!existsSync(path)) {
    const found = existsSync(dir) ? readdirSync(dir).join(", ") || "an empty folder" : "nothing (the folder does not exist)";
    throw new Error(`${dir} is not a PEFT adapter folder: adapter_config.json is missing (found ${found})`);
  }
  const config = configFromJson(readJsonObject(path));
  config.inference_mode = !isTrainable;
  return config;
}

const TASK_OF_TYPE: Record<string, Task> = {
  [TaskType.CAUSAL_LM]: "causal-lm",
  [TaskType.SEQ_2_SEQ_LM]: "seq2seq-lm",
  [TaskType.SEQ_CLS]: "sequence-classification",
  [TaskType.TOKEN_CLS]: "token-classification",
  [TaskType.QUESTION_ANS]: "question-answering",
  [TaskType.FEATURE_EXTRACTION]: "base",
};

/** Where base_model_name_or_path points: absolute, relative to the working directory, or to the adapter folder. */
function resolveBasePath(adapterDir: string, recorded: string): string {
  if (isAbsolute(recorded)) return recorded;
  for (const candidate of [resolve(recorded), resolve(adapterDir, recorded), resolve(adapterDir, "..", recorded), resolve(adapterDir, "../..", recorded)]) {
    if (existsSync(join(candidate, "config.json"))) return candidate;
  }
  throw new Error(`the adapter's base model "${recorded}" was not found (looked relative to the working directory and to ${adapterDir}); pass the base model explicitly with PeftModel.fromPretrained(model, dir)`);
}

function autoPeft(task: Task) {
  return {
    /** Load the base model named in adapter_config.json's base_model_name_or_path, then the adapter. */
    fromPretrained(dir: string, opts: LoadOptions & { baseModelPath?: string } = {}): PeftModel {
      const config = readJsonObject(join(dir, "adapter_config.json"));
      const recorded = opts.baseModelPath ?? config["base_model_name_or_path"];
      if (typeof recorded !== "string") throw new Error(`${dir}/adapter_config.json has no base_model_name_or_path; load the base model yourself and use PeftModel.fromPretrained`);
      const taskType = config["task_type"];
      const wanted = typeof taskType === "string" ? TASK_OF_TYPE[taskType] ?? task : task;
      const base = loadModel(opts.baseModelPath ?? resolveBasePath(dir, recorded), wanted);
      return PeftModel.fromPretrained(base, dir, opts);
    },
  };
}

/** Adapter + its base causal LM from one folder. */
export const AutoPeftModelForCausalLM = autoPeft("causal-lm");
/** Adapter + its base seq2seq LM. */
export const AutoPeftModelForSeq2SeqLM = autoPeft("seq2seq-lm");
/** Adapter + its base sequence classifier. */
export const AutoPeftModelForSequenceClassification = autoPeft("sequence-classification");
/** Adapter + its base token classifier. */
export const AutoPeftModelForTokenClassification = autoPeft("token-classification");
/** Adapter + its base QA model. */
export const AutoPeftModelForQuestionAnswering = autoPeft("question-answering");
/** Adapter + its base model (no head). */
export const AutoPeftModel = autoPeft("base");
