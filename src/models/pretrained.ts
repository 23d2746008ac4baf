/**
 * PreTrainedModel: what every architecture shares — its config, loading HF checkpoint folders (single or
 * sharded safetensors, half-precision converted on load), saving them back, and the key rules HF uses
 * (tied weights not stored twice, base-model prefixes added or stripped).
 */
import { join } from "node:path";
import {
  Conv1D,
  Embedding,
  LayerNorm,
  Linear,
  Module,
  QuantizedLinear,
  RMSNorm,
  buildModules,
  isDeferredWeight,
  zeroParameter,
  withDeferredLinearWeights,
  type EmbeddingLayer,
  type LoadResult,
  type ParameterDType,
} from "../nn/index.js";
import {
  type Generator,
  Tensor,
  checkpoint,
  defaultGenerator,
  isGradEnabled,
  noGrad,
  ones,
  tidy,
  toDtype,
  zeros,
} from "../tensor/index.js";
import { DTYPE_BYTES, isHalf } from "../backend/backend.js";
import { backend } from "../backend/index.js";
import { CpuStorage } from "../backend/pool.js";
import { readJsonObject, writeJsonAtomic } from "../io/json.js";
import {
  loadModelWeights,
  rawToTensor,
  readSafetensorsFolder,
  readSafetensorsHeader,
  resolveCheckpointFiles,
  writeSafetensors,
  type RawTensor,
} from "../io/safetensors.js";
import { linear4bitFromTensors, linear8bitFromTensors, quantizedLayerTensors } from "../io/bnb.js";
import { DTYPES } from "../io/dtypes.js";
import { ConfigError } from "../errors.js";
import type { HubOptions } from "../io/hub.js";
import { pushSaved, type CommitInfo, type PushOptions } from "../io/hub-upload.js";
import { writeFolderAtomic } from "../io/atomic.js";
import { checkModelConfig, checkModelFitsInMemory, type PretrainedConfig } from "./config.js";
import type { BaseModelOutput, ModelOutput, Seq2SeqInputs } from "./outputs.js";
import {
  convertLinear,
  isConverted,
  modulesToNotConvert,
  parseQuantizationConfig,
  type BitsAndBytesConfig,
  type QuantizationSettings,
} from "./quantization.js";

/** What `dtype` of fromPretrained accepts: a parameter dtype, or "auto" for the checkpoint's own. */
export type ModelDType = ParameterDType | "auto";

/** The values `dtype` accepts, for validation and help texts. */
export const MODEL_DTYPES: readonly ModelDType[] = ["auto", "float32", "bfloat16", "float16"];

/** Options of fromPretrained (the Hub options apply when the name is a repo id rather than a local folder). */
export interface FromPretrainedOptions extends HubOptions {
  /**
   * HF's torch_dtype: the dtype the weights are kept in (default float32). bfloat16/float16 weights stay half in
   * memory and are frozen (products accumulate in float32; adapters added later train in float32). "auto" takes
   * config.json's torch_dtype, else the dtype of the checkpoint's first float tensor.
   */
  dtype?: ModelDType;
  /** Quantise the Linear layers on load (transformers' BitsAndBytesConfig fields: load_in_4bit, bnb_4bit_quant_type, …). */
  quantizationConfig?: BitsAndBytesConfig;
}

/**
 * A constructor of a concrete model class from its config. Each family takes its own config type, which the
 * family's parseConfig produced, so the parameter is typed loosely here.
 */
export type ModelClass<M extends PreTrainedModel = PreTrainedModel> = {
  // biome-ignore lint/suspicious/noExplicitAny: each family takes its own config type (see above)
  new (config: any): M;
};

/** Base class of the architectures: config, checkpoint loading and saving. */
export abstract class PreTrainedModel extends Module {
  /** The folder this model was loaded from (adapters record it as base_model_name_or_path). */
  nameOrPath: string | null = null;
  /** Keys of the last weight load that the model did not have / the checkpoint did not have. */
  loadReport: LoadResult = { missingKeys: [], unexpectedKeys: [] };
  private checkpointing = false;

  constructor(readonly config: PretrainedConfig) {
    super();
    // Before any layer allocates: a config built by hand skips resolveConfig's checks.
    checkModelConfig(config);
    checkModelFitsInMemory(config);
  }

  /** Run the model (see ModelInputs / Seq2SeqInputs); base models return hidden states, task models logits. */
  abstract forward(inputs: Seq2SeqInputs): BaseModelOutput | ModelOutput;

  /** Name of the attribute holding the base model in task models ("transformer", "model", "bert", …; "" for none). */
  abstract get baseModelPrefix(): string;

  /**
   * The token embedding table (prompt tuning and LoRA on embeddings use it). Base models override this; task
   * models find it in their base model, the child named baseModelPrefix.
   */
  getInputEmbeddings(): EmbeddingLayer {
    const base = this.namedChildren().find(([name]) => name === this.baseModelPrefix)?.[1];
    if (!(base instanceof PreTrainedModel)) throw new Error(`${this.constructor.name} has no input embeddings`);
    return base.getInputEmbeddings();
  }

  /** The output head that maps hidden states to the vocabulary (LM heads), or null. */
  getOutputEmbeddings(): Module | null {
    return null;
  }

  /** Whether this is an encoder-decoder model (T5). */
  get isEncoderDecoder(): boolean {
    return this.config.is_encoder_decoder === true;
  }

  /** The class name written to config.json "architectures". */
  get architecture(): string {
    return this.constructor.name;
  }

  /**
   * Checkpoint key → this model's state-dict key, with HF's key handling: the base-model prefix is added or stripped
   * when the checkpoint was saved from a model with/without a task head.
   */
  stateDictNames(checkpointKeys: readonly string[]): Map<string, string> {
    const own = this.stateDict();
    const prefix = this.baseModelPrefix ? `${this.baseModelPrefix}.` : "";
    const ownHasPrefix = prefix !== "" && [...own.keys()].some((k) => k.startsWith(prefix));
    const fileHasPrefix = prefix !== "" && checkpointKeys.some((k) => k.startsWith(prefix));
    const names = new Map<string, string>();
    for (const k of checkpointKeys) {
      let key = k;
      if (ownHasPrefix && !fileHasPrefix && !own.has(k)) key = prefix + k;
      else if (!ownHasPrefix && fileHasPrefix && k.startsWith(prefix)) key = k.slice(prefix.length);
      names.set(k, key);
    }
    return names;
  }

  /**
   * Load weights from a state dict with HF's key handling: the base-model prefix is added or stripped when the
   * checkpoint was saved from a model with/without a task head, and tied weights may be absent.
   */
  loadWeights(weights: ReadonlyMap<string, Tensor>): LoadResult {
    const names = this.stateDictNames([...weights.keys()]);
    const renamed = new Map<string, Tensor>();
    for (const [k, t] of weights) renamed.set(names.get(k)!, t);
    const tied = new Set(this.tiedWeightKeys());
    const result = noGrad(() => this.loadStateDict(renamed, { strict: false }));
    this.loadReport = {
      missingKeys: result.missingKeys.filter((k) => !tied.has(k)),
      unexpectedKeys: result.unexpectedKeys,
    };
    return this.loadReport;
  }

  /**
   * transformers' default initialisation of a fresh model (_init_weights): Linear/Conv1D weights and embeddings
   * ~ N(0, initializer_range²), biases 0, norm weights 1. Layers' own PyTorch defaults (Kaiming-uniform, N(0, 1)
   * embeddings) are far too large for a tied LM head. `only` limits it to the modules owning these state-dict keys.
   * Deferred Linear weights (withDeferredLinearWeights) get their values here, and `afterLinear` sees each
   * Linear/Conv1D right after its initialisation (to quantise it).
   */
  initWeights(
    gen: Generator = defaultGenerator,
    only?: ReadonlySet<string>,
    afterLinear?: (path: string, m: Linear | Conv1D) => void,
  ): this {
    // initializer_range, or OPT's name for it.
    const given = this.config["initializer_range"] ?? this.config["init_std"];
    const std = typeof given === "number" ? given : 0.02;
    const prefixOf = (k: string) => k.slice(0, Math.max(k.lastIndexOf("."), 0));
    const owners = only && new Set([...only].map(prefixOf));
    noGrad(() => {
      for (const [name, m] of this.namedModules()) {
        if (owners && !owners.has(name)) continue;
        // One module at a time in its own scope: the float32 values drawn for a half weight never pile up.
        tidy(() => initModule(m, gen, std, () => afterLinear?.(name, m as Linear | Conv1D)));
      }
    });
    return this;
  }

  /** State-dict keys that share their tensor with an earlier key (e.g. lm_head.weight tied to the embeddings). */
  tiedWeightKeys(): string[] {
    const seen = new Set<Tensor>();
    const tied: string[] = [];
    for (const [k, t] of this.stateDict()) {
      if (seen.has(t)) tied.push(k);
      seen.add(t);
    }
    return tied;
  }

  /**
   * Gradient checkpointing (HF's gradient_checkpointing_enable): while training, decoder layers keep only their
   * input and are recomputed during backward, trading a second forward pass for most activation memory. Gradients
   * are bit-identical to a run without it. Applies to every model in this one's module tree (a task model's base).
   */
  gradientCheckpointingEnable(): this {
    if (!this.modules().some((m) => m instanceof PreTrainedModel && m.supportsGradientCheckpointing)) {
      throw new ConfigError(
        `${this.constructor.name} does not support gradient checkpointing`,
        "gradient checkpointing works on the decoder layers of the GPT-2 and LLaMA-family models; " +
          "turn it off for this model",
      );
    }
    return this.setCheckpointing(true);
  }

  /** Whether this model's own forward runs layers through runLayer (HF's supports_gradient_checkpointing). */
  get supportsGradientCheckpointing(): boolean {
    return false;
  }

  /**
   * Rebuild the decoder stack from ranges [start, end) of its layers, the copies sharing their weights (peft's
   * replicate_layers); models whose stack supports it override this.
   */
  replicateLayers(_ranges: readonly (readonly number[])[]): void {
    throw new ConfigError(
      `layer_replication is not supported for ${this.constructor.name}`,
      "peft replicates the layers of LLaMA-style models (model.layers); remove layer_replication for this model",
    );
  }

  /** Turn gradient checkpointing off again (HF's gradient_checkpointing_disable). */
  gradientCheckpointingDisable(): this {
    return this.setCheckpointing(false);
  }

  /** Whether gradient checkpointing is on (HF's is_gradient_checkpointing). */
  get isGradientCheckpointing(): boolean {
    return this.checkpointing;
  }

  private setCheckpointing(on: boolean): this {
    for (const m of this.modules()) if (m instanceof PreTrainedModel) m.checkpointing = on;
    return this;
  }

  /**
   * One decoder layer on `hidden`: without a tape, in its own memory scope (inference holds one layer's activations
   * at a time); while training under gradient checkpointing, recomputed during backward; otherwise recorded as usual
   * (the tape keeps its activations). The KV cache it returns is kept only with `useCache` (never checkpointed, as HF).
   */
  runLayer<P>(
    layer: Module,
    hidden: Tensor,
    forward: (h: Tensor) => { out: Tensor; present: P },
    useCache: boolean,
  ): { out: Tensor; present: P | undefined } {
    const run = () => {
      const r = forward(hidden);
      return useCache ? r : { out: r.out, present: undefined };
    };
    if (!isGradEnabled()) return tidy(run);
    if (!this.checkpointing || !this.training || useCache) return run();
    const trainable = layer.parameters().filter((p) => p.requiresGrad);
    return { out: checkpoint((h) => forward(h).out, [hidden], trainable), present: undefined };
  }

  /** HF's model.dtype: the dtype of the first floating-point parameter (float32 when there is none). */
  get dtype(): ParameterDType {
    for (const [, p] of this.namedParameters()) {
      if (p.dtype === "float32" || p.dtype === "bfloat16" || p.dtype === "float16") return p.dtype;
    }
    return "float32";
  }

  /** HF's get_memory_footprint: bytes held by the parameters and buffers (each tensor counted once). */
  memoryFootprint(): number {
    const seen = new Set<object>();
    let bytes = 0;
    for (const t of [...this.parameters(), ...this.stateDict().values()]) {
      if (seen.has(t.bufferRef)) continue;
      seen.add(t.bufferRef);
      bytes += t.storage.size * DTYPE_BYTES[t.dtype];
    }
    return bytes;
  }

  /**
   * Write config.json and model.safetensors (each tensor once, like HF), atomically, in `dtype` (default: the
   * model's own, see `dtype`): float32 weights are rounded into float16/bfloat16 files, and half weights of another
   * dtype converted tensor by tensor.
   */
  savePretrained(dir: string, opts: { dtype?: ParameterDType } = {}): void {
    const tied = new Set(this.tiedWeightKeys());
    const dtype = opts.dtype ?? this.dtype;
    const own = this.stateDict();
    const tensors = new Map<string, Tensor | RawTensor>(
      [...own].filter(([k]) => !tied.has(k)).map(([k, t]) => [k, toSaveDtype(t, dtype)] as const),
    );
    for (const [path, m] of this.namedModules()) {
      if (m instanceof QuantizedLinear) for (const [k, t] of quantizedLayerTensors(path, m)) tensors.set(k, t);
    }
    const onDisk = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;
    // The folder is replaced as a whole (weights and config never from two saves); files other than weights are kept.
    try {
      writeFolderAtomic(
        dir,
        (tmp) => {
          writeSafetensors(join(tmp, "model.safetensors"), tensors, { format: "pt" }, { dtype: onDisk[dtype] });
          writeJsonAtomic(join(tmp, "config.json"), {
            ...this.config,
            architectures: [this.architecture],
            torch_dtype: dtype,
          });
        },
        {
          carryOver: (f) =>
            !/^(config\.json|(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?)$/.test(f),
        },
      );
    } finally {
      for (const [k, t] of tensors) if (t instanceof Tensor && t !== own.get(k)) t.dispose();
    }
  }

  /** Upload the model as savePretrained writes it (e.g. a merged model) to a Hub repo, created if needed (transformers' push_to_hub). */
  pushToHub(repoId: string, opts: PushOptions & { dtype?: ParameterDType } = {}): Promise<CommitInfo> {
    return pushSaved(repoId, (dir) => this.savePretrained(dir, opts), { commitMessage: "Upload model", ...opts });
  }
}

/**
 * Load a model class from an HF folder: config.json, then weights from model.safetensors or the sharded index.
 * The model is returned in eval mode, as transformers does; missing or unexpected keys are reported in
 * `loadReport` and warned about.
 */
export function loadPretrained<M extends PreTrainedModel>(
  cls: ModelClass<M>,
  dir: string,
  parseConfig: (raw: Record<string, unknown>) => PretrainedConfig,
  opts: FromPretrainedOptions = {},
): M {
  const raw = readJsonObject(join(dir, "config.json"));
  const config = parseConfig(raw);
  const dtype = resolveModelDType(opts.dtype ?? "float32", raw, dir);
  const stored = config["quantization_config"] as BitsAndBytesConfig | null | undefined;
  if (stored && opts.quantizationConfig) {
    process.emitWarning(
      `${dir} holds a quantised checkpoint; its own quantization_config is used and the one passed is ignored`,
    );
  }
  // Half models are built in their dtype with zero weights (the checkpoint fills them), as HF's low_cpu_mem_usage.
  const { model, weights } = stored
    ? loadQuantizedLayers(cls, config, dir, parseQuantizationConfig(stored), dtype)
    : opts.quantizationConfig
      ? quantizeOnLoad(cls, config, dir, parseQuantizationConfig(opts.quantizationConfig), dtype)
      : {
          model: dtype === "float32" ? new cls(config) : buildModules({ dtype, init: false }, () => new cls(config)),
          weights: loadModelWeights(dir, { floatDtype: dtype }),
        };
  try {
    const report = model.loadWeights(weights);
    if (dtype !== "float32" && report.missingKeys.length > 0)
      model.initWeights(defaultGenerator, new Set(report.missingKeys));
    if (report.missingKeys.length > 0) {
      process.emitWarning(
        `${cls.name}: weights not found in ${dir} (newly initialised): ${report.missingKeys.join(", ")}`,
      );
    }
    if (report.unexpectedKeys.length > 0) {
      process.emitWarning(
        `${cls.name}: checkpoint weights not used by this model: ${report.unexpectedKeys.join(", ")}`,
      );
    }
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  model.nameOrPath = dir;
  backend().trimPool(); // the load's buffers come in one-off sizes
  return model.eval();
}

/** transformers' _init_weights for one module (see initWeights). */
function initModule(m: Module, gen: Generator, std: number, afterLinear: () => void): void {
  if (m instanceof Linear || m instanceof Conv1D || m instanceof Embedding) {
    if (isDeferredWeight(m.weight)) {
      const shape = m.weight.shape;
      m.weight.dispose();
      m.weight = m.registerParameter("weight", zeroParameter(shape));
    }
    fillNormal(m.weight, gen, std);
    const b = m.ownParameter("bias");
    if (b) b.copy_(zeros(b.shape));
    if (!(m instanceof Embedding)) afterLinear();
  } else if (m instanceof LayerNorm || m instanceof RMSNorm) {
    const w = m.ownParameter("weight"),
      b = m.ownParameter("bias");
    // Gemma's norms scale by (1 + weight): their neutral weight is 0.
    if (w) w.copy_(m instanceof RMSNorm && m.unitOffset ? zeros(w.shape) : ones(w.shape));
    if (b) b.copy_(zeros(b.shape));
  }
}

/** Values drawn per block of fillNormal: the float32 scratch of a half weight stays this small (16 MiB). */
const DRAW_BLOCK = 1 << 22;

/**
 * Overwrite w with N(0, std) values, drawn in blocks of rows: a half (or huge) weight never has a whole float32 copy.
 * The values equal one draw of the whole weight (the generator is counter-based).
 */
function fillNormal(w: Tensor, gen: Generator, std: number): void {
  const rows = w.rank === 0 ? 1 : w.shape[0]!,
    rowSize = rows === 0 ? 1 : w.size / rows;
  const per = Math.max(1, Math.floor(DRAW_BLOCK / Math.max(rowSize, 1)));
  for (let r = 0; r < rows; r += per) {
    tidy(() => {
      const n = Math.min(per, rows - r);
      const block = toDtype(gen.normal([n * rowSize], 0, std), w.dtype);
      const at = w.offset + r * rowSize;
      // Host buffers of one dtype: a plain typed-array copy (the generic assign has no native path for 16-bit floats).
      if (w.storage instanceof CpuStorage && block.storage instanceof CpuStorage)
        (w.storage.data as Float32Array).set(block.storage.data as Float32Array, at);
      else backend().assign(block, { storage: w.storage, shape: [n * rowSize], strides: [1], offset: at }, false);
    });
  }
}

/** Turn gradient checkpointing on or off in every model inside `root` (a PeftModel's base model, say). */
export function setGradientCheckpointing(root: Module, on: boolean): void {
  const models = root.modules().filter((m): m is PreTrainedModel => m instanceof PreTrainedModel);
  if (models.length === 0) {
    throw new ConfigError(
      "gradient checkpointing needs a model with decoder layers",
      "pass a PreTrainedModel or a PeftModel wrapping one",
    );
  }
  const outer = models[0]!;
  if (on) outer.gradientCheckpointingEnable();
  else outer.gradientCheckpointingDisable();
}

/** A half tensor of another dtype than `dtype` converted for saving (a new tensor); anything else as it is. */
function toSaveDtype(t: Tensor, dtype: ParameterDType): Tensor {
  return isHalf(t.dtype) && t.dtype !== dtype ? toDtype(t, dtype) : t;
}

/**
 * The parameter dtype `dtype` asks for, given config.json's fields `raw` and, for "auto" without a torch_dtype there,
 * the checkpoint folder `dir` (no folder: float32). A bad value is a ConfigError.
 */
export function resolveModelDType(dtype: ModelDType, raw: Record<string, unknown>, dir?: string): ParameterDType {
  if (!MODEL_DTYPES.includes(dtype)) {
    throw new ConfigError(
      `dtype ${JSON.stringify(dtype)} is not a model dtype`,
      `use one of ${MODEL_DTYPES.join(", ")}`,
    );
  }
  if (dtype !== "auto") return dtype;
  const fromConfig = raw["torch_dtype"];
  if (fromConfig === "float32" || fromConfig === "bfloat16" || fromConfig === "float16") return fromConfig;
  const names: Partial<Record<string, ParameterDType>> = { F32: "float32", BF16: "bfloat16", F16: "float16" };
  for (const file of dir === undefined ? [] : resolveCheckpointFiles(dir).files) {
    for (const info of readSafetensorsHeader(file).tensors.values()) {
      if (DTYPES[info.dtype].kind === "float") return names[info.dtype] ?? "float32";
    }
  }
  return "float32";
}

/** A model built in `dtype` around deferred Linear weights (each gets its values, or is quantised, in turn). */
export function buildDeferred<M extends PreTrainedModel>(
  cls: ModelClass<M>,
  config: PretrainedConfig,
  dtype: ParameterDType,
): M {
  const build = () => withDeferredLinearWeights(() => new cls(config));
  return dtype === "float32" ? build() : buildModules({ dtype, init: false }, build);
}

/** Give a Linear/Conv1D still holding a deferred placeholder a zero weight in `dtype`, for the checkpoint to fill. */
function materialiseDeferred(m: Linear | Conv1D, dtype: ParameterDType): void {
  if (isDeferredWeight(m.weight))
    m.weight = m.registerParameter(
      "weight",
      buildModules({ dtype }, () => zeroParameter(m.weight.shape)),
    );
}

/**
 * A float checkpoint quantised as it loads (transformers' quantisation on load): each converted Linear's weight is
 * read alone, quantised and dropped, so neither the float model nor the whole checkpoint is ever in memory. The other
 * weights are returned to load; `quantization_config` is recorded in the model's config.
 */
function quantizeOnLoad<M extends PreTrainedModel>(
  cls: ModelClass<M>,
  config: PretrainedConfig,
  dir: string,
  s: QuantizationSettings,
  dtype: ParameterDType,
): { model: M; weights: Map<string, Tensor> } {
  const model = buildDeferred(cls, config, dtype);
  const keys = resolveCheckpointFiles(dir).files.flatMap((f) => [...readSafetensorsHeader(f).tensors.keys()]);
  const fileKeyOf = new Map([...model.stateDictNames(keys)].map(([file, own]) => [own, file]));
  const notConvert = modulesToNotConvert(s, model);
  const quantized = new Set<string>();
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv1D)) continue;
    const key = fileKeyOf.get(`${path}.weight`);
    if (key !== undefined && isConverted(path, notConvert)) {
      m.weight = loadModelWeights(dir, { names: [key], floatDtype: dtype }).get(key)!;
      convertLinear(model, path, m, s, notConvert);
      quantized.add(key);
    } else {
      materialiseDeferred(m, dtype); // kept float (lm_head), or missing from the checkpoint: reported by the load
    }
  }
  model.config["quantization_config"] = s.dict;
  return { model, weights: loadModelWeights(dir, { names: keys.filter((k) => !quantized.has(k)), floatDtype: dtype }) };
}

/**
 * A model whose Linear layers come quantised from a bitsandbytes checkpoint (transformers' pre-quantised loading):
 * the converted layers are built from their packed tensors, never in float32; the other weights are returned to load.
 */
function loadQuantizedLayers<M extends PreTrainedModel>(
  cls: ModelClass<M>,
  config: PretrainedConfig,
  dir: string,
  s: QuantizationSettings,
  dtype: ParameterDType,
): { model: M; weights: Map<string, Tensor> } {
  const model = buildDeferred(cls, config, dtype);
  const { tensors } = readSafetensorsFolder(dir);
  const notConvert = modulesToNotConvert(s, model);
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv1D)) continue;
    if (isConverted(path, notConvert)) {
      const [inF, outF] = m instanceof Conv1D ? [m.nx, m.nf] : [m.inFeatures, m.outFeatures];
      const layer =
        s.bits === 4
          ? linear4bitFromTensors(path, tensors, inF, outF, s.computeDtype)
          : linear8bitFromTensors(path, tensors, inF, outF, s.threshold);
      const bias = m.ownParameter("bias");
      if (bias) layer.bias = layer.registerParameter("bias", bias); // loaded below with the other weights
      model.setSubmodule(path, layer);
    } else {
      materialiseDeferred(m, dtype); // a float layer (lm_head): loaded below
    }
  }
  return { model, weights: new Map([...tensors].map(([k, raw]) => [k, rawToTensor(raw, k, { floatDtype: dtype })])) };
}
