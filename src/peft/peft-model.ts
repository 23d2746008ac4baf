/**
 * PeftModel: a transformers model with one or more adapters — getPeftModel, the task-specific subclasses,
 * parameter counts, adapter management, saving/loading adapter folders in HF peft's format, merging.
 */
import { existsSync, readdirSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { Module, quantizedWeightElements } from "../nn/index.js";
import type { FromPretrainedOptions, PreTrainedModel } from "../models/pretrained.js";
import type { ModelOutput, Seq2SeqInputs } from "../models/outputs.js";
import { fromPretrained as loadModel, type Task } from "../models/auto.js";
import {
  generate,
  generateDetailed,
  generateStream,
  type GenerateOptions,
  type GenerateOutput,
  type GenerationStep,
} from "../generation/index.js";
import type { Tensor } from "../tensor/index.js";
import { loadSafetensors, writeSafetensors } from "../io/safetensors.js";
import { readJsonObject } from "../io/json.js";
import { isRepoId, type HubOptions } from "../io/hub-cache.js";
import { resolvePretrainedSync } from "../io/hub-sync.js";
import { pushSaved, type CommitInfo, type PushOptions } from "../io/hub-upload.js";
import { writeFileAtomic, writeFolderAtomic } from "../io/atomic.js";
import { pythonJson } from "../io/json.js";
import { TaskType, checkConfigValues, type PeftConfig } from "./config.js";
import { configFromJson, methodFor } from "./registry.js";
import { checkAdapterFitsInMemory } from "./memory.js";
import { TASK_HEADS } from "./mapping.js";
import { BASE_ROW, withAdapterNames } from "./mixed-batch.js";
import type { Generative } from "../generation/index.js";
import {
  HOST_NAME,
  type AdapterHost,
  type Merging,
  type PeftInputs,
  type PeftTask,
  type WeightedAdapterOptions,
} from "./contract.js";
import { adapterModelCard } from "./model-card.js";
import { ConfigError } from "../errors.js";
import { mutatedAdapterAsLora } from "./tuners/lora/convert.js";

/** Inputs of PeftModel.forward: the model's, plus one adapter name per batch row (peft's adapter_names; LoRA only). */

/** GenerateOptions plus one adapter name per batch row ("__base__" for none). */
export type PeftGenerateOptions = GenerateOptions & { adapterNames?: readonly string[]; taskIds?: Tensor };

/** Options of savePretrained. */
export interface SaveOptions {
  /** Only safetensors is supported (the default in HF peft). */
  safeSerialization?: boolean;
  /** Adapters to save (all by default). */
  selectedAdapters?: string[];
  /**
   * The folder where a PiSSA/OLoRA adapter was saved right after getPeftModel: each adapter is saved converted to a
   * plain LoRA of rank 2r that applies to the original base weights (peft's path_initial_model_for_weight_conversion).
   */
  pathInitialModelForWeightConversion?: string;
}

/** Options of fromPretrained / loadAdapter (the Hub options apply when the adapter is named by repo id). */
export interface LoadOptions extends HubOptions {
  adapterName?: string;
  /** Load with trainable adapter weights (frozen by default, as in HF). */
  isTrainable?: boolean;
}

/** [trainable, all] parameter counts of any module (peft's get_nb_trainable_parameters; shared tensors counted once). */
export function countTrainableParameters(module: Module): [number, number] {
  let trainable = 0,
    all = 0;
  for (const p of module.parameters()) {
    all += p.size;
    if (p.requiresGrad) trainable += p.size;
  }
  return [trainable, all + quantizedWeightElements(module)]; // quantised weights are no parameters; peft counts them unpacked
}

/** Where a config enters a model: its values are checked again (it may have been edited), then its memory need. */
function checkBeforeInjecting(model: PreTrainedModel, config: PeftConfig): void {
  checkConfigValues(config);
  checkAdapterFitsInMemory(model, config);
}

/**
 * A model with adapters. `base_model` is the method's host (contract.ts; HF's LoraModel), whose `model` is the
 * transformers model: for injected-layers methods with adapter layers in it, for virtual-tokens methods untouched,
 * with the prompt encoders beside it. The task subclasses choose which of peft's task forwards the host runs.
 * Everything beyond the basics (merging, weighted combination, the per-step hook) is asked of the host's declared
 * capabilities.
 */
export class PeftModel extends Module {
  base_model: AdapterHost;
  readonly peftConfig: Record<string, PeftConfig> = {};
  activeAdapter: string;
  /** Which of peft's task forwards the host runs (the task subclasses set theirs). */
  protected readonly peftTask: PeftTask = "feature-extraction";

  constructor(model: PreTrainedModel, config: PeftConfig, adapterName = "default") {
    super();
    checkBeforeInjecting(model, config);
    const prepared = this.prepareConfig(config);
    this.base_model = this.registerModule(
      HOST_NAME,
      methodFor(prepared.peft_type).createHost(model, prepared, adapterName),
    );
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

  /** The method's host (HF's `peft_model.base_model`). */
  get baseModel(): AdapterHost {
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

  /**
   * Run the model with the active adapters (prompt learning: with the active prompt, unless disabled), or with one
   * LoRA adapter per batch row when adapterNames is given.
   */
  forward(inputs: PeftInputs): ModelOutput {
    const { adapterNames, ...modelInputs } = inputs;
    if (!adapterNames) return this.base_model.forwardTask(this.peftTask, modelInputs);
    this.checkAdapterNames(adapterNames);
    return withAdapterNames(adapterNames, () => this.base_model.forwardTask(this.peftTask, modelInputs));
  }

  /** Generate with the active adapters, or one adapter per row (see GenerateOptions, PeftGenerateOptions). */
  generate(opts: PeftGenerateOptions): Tensor {
    const { taskIds, ...rest } = opts;
    return generate(this.generativeFor(rest.adapterNames, taskIds), rest);
  }

  /** generate with each token's log-probability and each row's finish reason. */
  generateDetailed(opts: PeftGenerateOptions): GenerateOutput {
    const { taskIds, ...rest } = opts;
    return generateDetailed(this.generativeFor(rest.adapterNames, taskIds), rest);
  }

  /** generate as an async iterator of steps (streaming). */
  generateStream(opts: PeftGenerateOptions): AsyncGenerator<GenerationStep, void> {
    const { taskIds, ...rest } = opts;
    return generateStream(this.generativeFor(rest.adapterNames, taskIds), rest);
  }

  /**
   * The model that generate drives: the host's (with the rows' tasks, for multitask prompt tuning and Poly), with every
   * forward run under the row adapter names when given.
   */
  generativeFor(adapterNames: readonly string[] | undefined, taskIds?: Tensor): Generative {
    const inner = this.base_model.generative(taskIds);
    if (!adapterNames) return inner;
    this.checkAdapterNames(adapterNames);
    const encode = inner.encode;
    return {
      get config() {
        return inner.config;
      },
      get isEncoderDecoder() {
        return inner.isEncoderDecoder;
      },
      get training() {
        return inner.training;
      },
      forward: (i) => withAdapterNames(adapterNames, () => inner.forward(i)),
      ...(encode ? { encode: (i: Seq2SeqInputs) => withAdapterNames(adapterNames, () => encode.call(inner, i)) } : {}),
      eval: () => inner.eval(),
      train: (mode?: boolean) => inner.train(mode),
    };
  }

  /** Row adapter names must be loaded LoRA adapters or "__base__" (peft's adapter_names rules). */
  private checkAdapterNames(names: readonly string[]): void {
    for (const name of new Set(names)) {
      if (name === BASE_ROW) continue;
      const config = this.peftConfig[name];
      if (!config)
        throw new ConfigError(
          `adapterNames: no adapter named "${name}"`,
          `loaded adapters: ${Object.keys(this.peftConfig).join(", ")}; "${BASE_ROW}" means none`,
        );
      if (config.peft_type !== "LORA")
        throw new ConfigError(
          `adapterNames: adapter "${name}" is ${config.peft_type}; mixed-adapter batches work with LoRA adapters only`,
          "run it alone with setAdapter",
        );
    }
  }

  /**
   * Call after every optimizer step, before the gradients are zeroed, with the 0-based global step: methods that
   * declare a per-step hook (AdaLoRA's rank allocation) run it; for the others it does nothing. The Trainer calls it.
   */
  afterOptimizerStep(globalStep: number): void {
    this.base_model.capabilities.optimizerStepHook?.afterOptimizerStep(globalStep);
  }

  /** [trainable, all] parameter counts (HF's get_nb_trainable_parameters; shared tensors counted once). */
  getNbTrainableParameters(): [number, number] {
    return countTrainableParameters(this);
  }

  /** The line HF peft prints: "trainable params: 2,048 || all params: 122,624 || trainable%: 1.6701". */
  trainableParametersLine(): string {
    const [trainable, all] = this.getNbTrainableParameters();
    const fmt = (n: number) => n.toLocaleString("en-US");
    return (
      `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ` +
      `${((100 * trainable) / all).toFixed(4)}`
    );
  }

  /** Print the trainable-parameter line. */
  printTrainableParameters(): void {
    console.log(this.trainableParametersLine());
  }

  /** Add another adapter (not made active). */
  addAdapter(adapterName: string, config: PeftConfig): void {
    if (config.peft_type !== this.activePeftConfig.peft_type) {
      throw new Error(
        `cannot add a ${config.peft_type} adapter to a model whose adapters are ${this.activePeftConfig.peft_type}`,
      );
    }
    checkBeforeInjecting(this.getBaseModel(), config);
    const prepared = this.base_model.injectAdapter(this.prepareConfig(config), adapterName);
    prepared.base_model_name_or_path ??= this.getBaseModel().nameOrPath;
    this.peftConfig[adapterName] = prepared;
  }

  /** Make an adapter the active one. */
  setAdapter(adapterName: string): void {
    if (!(adapterName in this.peftConfig))
      throw new Error(`adapter "${adapterName}" not found; adapters: ${Object.keys(this.peftConfig).join(", ")}`);
    this.base_model.setAdapter(adapterName);
    this.activeAdapter = adapterName;
  }

  /**
   * Make the named adapters' parameters (layers and modules_to_save copies) trainable, or frozen with false,
   * whichever adapters are active (peft's set_requires_grad).
   */
  setRequiresGrad(adapterNames: string | string[], requiresGrad = true): void {
    const names = typeof adapterNames === "string" ? [adapterNames] : adapterNames;
    const unknown = names.filter((n) => !(n in this.peftConfig));
    if (unknown.length > 0)
      throw new ConfigError(
        `setRequiresGrad: no adapter named ${unknown.map((n) => `"${n}"`).join(", ")}`,
        `adapters: ${Object.keys(this.peftConfig).join(", ")}`,
      );
    for (const n of names) for (const p of this.base_model.adapterParameters(n)) p.requiresGrad = requiresGrad;
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
  addWeightedAdapter(
    adapters: string[],
    weights: number[],
    adapterName: string,
    opts: WeightedAdapterOptions = {},
  ): void {
    const combiner = this.base_model.capabilities.weightedCombination;
    if (!combiner) {
      throw new Error(
        `addWeightedAdapter combines LoRA adapters only (and IA3 adapters); this model's adapters ` +
          `are ${this.activePeftConfig.peft_type}`,
      );
    }
    this.peftConfig[adapterName] = combiner.addWeightedAdapter(adapters, weights, adapterName, opts);
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

  /** The host's merging capability, or an error naming the method that has none. */
  private merging(): Merging {
    const merging = this.base_model.capabilities.merge;
    if (!merging) {
      const type = this.activePeftConfig.peft_type;
      throw new Error(
        `${type} adapters cannot be merged into the weights: they are extra inputs or attention, ` +
          `not weight changes; use unload() to remove them`,
      );
    }
    return merging;
  }

  /** Fold the active adapters into the base weights (outputs unchanged, faster inference). */
  mergeAdapter(adapterNames?: string[]): void {
    this.merging().merge(adapterNames);
  }

  /** Undo mergeAdapter (nothing to undo for methods that cannot merge). */
  unmergeAdapter(): void {
    this.base_model.capabilities.merge?.unmerge();
  }

  /** Merge the adapters and return the plain transformers model (save it with savePretrained). */
  mergeAndUnload(adapterNames?: string[]): PreTrainedModel {
    return this.merging().mergeAndUnload(adapterNames);
  }

  /** Remove the adapter layers without merging; returns the original transformers model. */
  unload(): PreTrainedModel {
    return this.base_model.unload();
  }

  /** The tensors saved for an adapter, keyed as in adapter_model.safetensors. */
  adapterStateDict(adapterName = this.activeAdapter): Map<string, Tensor> {
    if (!this.peftConfig[adapterName]) throw new Error(`adapter "${adapterName}" not found`);
    return this.base_model.saveAdapter(adapterName).tensors;
  }

  /**
   * Write each adapter as HF peft does: adapter_config.json (sorted keys, inference_mode true),
   * adapter_model.safetensors and a README.md model card; adapters other than "default" go to a subfolder.
   * Files are written atomically.
   */
  savePretrained(dir: string, opts: SaveOptions = {}): void {
    if (opts.safeSerialization === false)
      throw new Error("only safetensors serialization is supported (safeSerialization: true)");
    const names = opts.selectedAdapters ?? Object.keys(this.peftConfig);
    for (const name of names) {
      const config = this.peftConfig[name];
      if (!config)
        throw new Error(
          `cannot save adapter "${name}": no such adapter; adapters: ${Object.keys(this.peftConfig).join(", ")}`,
        );
      const out = name === "default" ? dir : join(dir, name);
      const state = this.base_model.saveAdapter(name);
      const initialDir = opts.pathInitialModelForWeightConversion;
      const { config: savedConfig, tensors } = initialDir
        ? mutatedAdapterAsLora(config, state.tensors, initialDir)
        : { config, tensors: state.tensors };
      // The folder is replaced as a whole (weights and config never from two saves); other files in it are kept.
      writeFolderAtomic(
        out,
        (tmp) => {
          writeSafetensors(join(tmp, "adapter_model.safetensors"), tensors, { format: "pt" });
          // Side files (P-tuning / projected prefixes: the encoder network's weights, so that training can resume
          // exactly; Python peft ignores them).
          for (const [file, tensors] of state.sideFiles) writeSafetensors(join(tmp, file), tensors, { format: "pt" });
          const saved = {
            ...savedConfig,
            inference_mode: true,
            base_model_name_or_path: config.base_model_name_or_path ?? this.getBaseModel().nameOrPath,
          };
          writeFileAtomic(join(tmp, "adapter_config.json"), pythonJson(saved));
          if (!existsSync(join(out, "README.md")))
            writeFileAtomic(join(tmp, "README.md"), adapterModelCard(saved.base_model_name_or_path));
        },
        { carryOver: (f) => !/^adapter_(config\.json|model\.(safetensors|bin))$/.test(f) && !state.sideFiles.has(f) },
      );
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
    const loaded = [loadSafetensors(file)];
    const sideFile = (name: string) => {
      const path = join(dir, name);
      if (!existsSync(path)) return null;
      loaded.push(loadSafetensors(path));
      return loaded[loaded.length - 1]!;
    };
    try {
      this.base_model.loadAdapter(adapterName, { tensors: loaded[0]!, sideFile, where: file });
    } finally {
      for (const t of loaded.flatMap((m) => [...m.values()])) t.dispose();
    }
  }

  /** Upload the adapter files savePretrained writes to a Hub repo, created if needed (peft's push_to_hub). */
  pushToHub(repoId: string, opts: PushOptions & SaveOptions = {}): Promise<CommitInfo> {
    return pushSaved(repoId, (dir) => this.savePretrained(dir, opts), { commitMessage: "Upload model", ...opts });
  }

  /** A PeftModel from a base model and a saved adapter folder (frozen unless isTrainable, as in HF). */
  static fromPretrained(model: PreTrainedModel, nameOrPath: string, opts: LoadOptions = {}): PeftModel {
    const dir = resolvePretrainedSync(nameOrPath, "adapter", opts);
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
  protected override readonly peftTask: PeftTask = "causal-lm";
}
/** Encoder-decoder language modelling (SEQ_2_SEQ_LM). Prompt learning: prompts go before the encoder input. */
export class PeftModelForSeq2SeqLM extends PeftModel {
  protected override readonly peftTask: PeftTask = "seq2seq-lm";
}
/**
 * Sequence classification (SEQ_CLS): the classifier/score head is trained and saved as modules_to_save (not with
 * prompt learning, as in peft 0.15: the prompt alone is trained).
 */
export class PeftModelForSequenceClassification extends PeftModel {
  protected override readonly peftTask: PeftTask = "sequence-classification";
}
/** Token classification (TOKEN_CLS). Prompt learning: the logits of the virtual tokens are dropped. */
export class PeftModelForTokenClassification extends PeftModel {
  protected override readonly peftTask: PeftTask = "token-classification";
}
/**
 * Extractive question answering (QUESTION_ANS). Prompt/P-tuning, as in peft 0.15: the start/end logits cover the
 * virtual tokens too ([batch, P + length]) and the loss is computed over them with the positions as given.
 */
export class PeftModelForQuestionAnswering extends PeftModel {
  protected override readonly peftTask: PeftTask = "question-answering";
}
/** Feature extraction (FEATURE_EXTRACTION). */
export class PeftModelForFeatureExtraction extends PeftModel {
  protected override readonly peftTask: PeftTask = "feature-extraction";
}

const TASK_CLASSES: Record<string, new (model: PreTrainedModel, config: PeftConfig, adapterName: string) => PeftModel> =
  {
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

/**
 * Inject a new adapter's layers into `model` in place, without a PeftModel around it (peft's inject_adapter_in_model);
 * returns the model. Injected-layers methods only (not LLaMA-Adapter, as in peft).
 */
export function injectAdapterInModel(
  config: PeftConfig,
  model: PreTrainedModel,
  adapterName = "default",
): PreTrainedModel {
  const method = methodFor(config.peft_type);
  if (method.family !== "injected-layers" || config.peft_type === "ADAPTION_PROMPT") {
    throw new ConfigError(
      `injectAdapterInModel does not support ${config.peft_type}: prompt learning methods and ` +
        `adaption prompt need a PeftModel`,
      "use getPeftModel(model, config)",
    );
  }
  checkBeforeInjecting(model, config);
  const host = injectedHosts.get(model);
  if (host && host.peftConfig.values().next().value?.peft_type !== config.peft_type) {
    throw new ConfigError(
      `injectAdapterInModel: this model already has adapters of another method; cannot add a ` +
        `${config.peft_type} adapter`,
    );
  }
  if (host) host.injectAdapter(config, adapterName);
  else injectedHosts.set(model, method.createHost(model, config, adapterName));
  return model;
}

/** The hosts of models given adapters by injectAdapterInModel (peft keeps the configs on the model as `peft_config`). */
const injectedHosts = new WeakMap<PreTrainedModel, AdapterHost>();

/** The host holding the adapters injectAdapterInModel put into `model`, if any. */
export function injectedHost(model: PreTrainedModel): AdapterHost | undefined {
  return injectedHosts.get(model);
}

/** Read and parse adapter_config.json; inference_mode follows isTrainable. */
export function readAdapterConfig(dir: string, isTrainable: boolean): PeftConfig {
  const path = join(dir, "adapter_config.json");
  if (!existsSync(path)) {
    const found = existsSync(dir)
      ? readdirSync(dir).join(", ") || "an empty folder"
      : "nothing (the folder does not exist)";
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
  for (const candidate of [
    resolve(recorded),
    resolve(adapterDir, recorded),
    resolve(adapterDir, "..", recorded),
    resolve(adapterDir, "../..", recorded),
  ]) {
    if (existsSync(join(candidate, "config.json"))) return candidate;
  }
  if (isRepoId(recorded)) return recorded; // a Hub id: fromPretrained downloads it
  throw new Error(
    `the adapter's base model "${recorded}" was not found (looked relative to the working ` +
      `directory and to ${adapterDir}); pass the base model explicitly with ` +
      `PeftModel.fromPretrained(model, dir)`,
  );
}

function autoPeft(task: Task) {
  return {
    /**
     * Load the base model named in adapter_config.json's base_model_name_or_path (a folder or a Hub id), then the
     * adapter; dtype and quantizationConfig are the base model's (as peft passes torch_dtype on to it).
     */
    fromPretrained(
      nameOrPath: string,
      options: LoadOptions & { baseModelPath?: string } & Pick<
          FromPretrainedOptions,
          "dtype" | "quantizationConfig"
        > = {},
    ): PeftModel {
      const { dtype, quantizationConfig, ...opts } = options;
      const dir = resolvePretrainedSync(nameOrPath, "adapter", opts);
      const config = readJsonObject(join(dir, "adapter_config.json"));
      const recorded = opts.baseModelPath ?? config["base_model_name_or_path"];
      if (typeof recorded !== "string")
        throw new Error(
          `${dir}/adapter_config.json has no base_model_name_or_path; load the base model yourself ` +
            `and use PeftModel.fromPretrained`,
        );
      const taskType = config["task_type"];
      const wanted = typeof taskType === "string" ? (TASK_OF_TYPE[taskType] ?? task) : task;
      // The base model's revision is the config's "revision" (peft's AutoPeftModel), not the adapter's.
      const { revision: _adapterRevision, ...hub } = opts;
      const baseRevision = typeof config["revision"] === "string" ? { revision: config["revision"] } : {};
      const base = loadModel(opts.baseModelPath ?? resolveBasePath(dir, recorded), wanted, {
        ...hub,
        ...baseRevision,
        ...(dtype ? { dtype } : {}),
        ...(quantizationConfig ? { quantizationConfig } : {}),
      });
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
