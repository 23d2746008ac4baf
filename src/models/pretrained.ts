/**
 * PreTrainedModel: what every architecture shares — its config, loading HF checkpoint folders (single or
 * sharded safetensors, half-precision converted on load), saving them back, and the key rules HF uses
 * (tied weights not stored twice, base-model prefixes added or stripped).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  Conv1D, Embedding, LayerNorm, Linear, Module, QuantizedLinear, RMSNorm, isDeferredWeight, withDeferredLinearWeights, type LoadResult,
} from "../nn/index.js";
import { Generator, Tensor, defaultGenerator, noGrad, ones, parameter, zeros } from "../tensor/index.js";
import { readJsonObject, writeJsonAtomic } from "../io/json.js";
import { loadModelWeights, rawToTensor, readSafetensorsFolder, writeSafetensors, type RawTensor } from "../io/safetensors.js";
import { linear4bitFromTensors, linear8bitFromTensors, quantizedLayerTensors } from "../io/bnb.js";
import type { PretrainedConfig } from "./config.js";
import type { BaseModelOutput, ModelOutput, Seq2SeqInputs } from "./outputs.js";
import {
  isConverted, modulesToNotConvert, parseQuantizationConfig, quantizeModel, type BitsAndBytesConfig, type QuantizationSettings,
} from "./quantization.js";

/** Options of fromPretrained. */
export interface FromPretrainedOptions {
  /** Compute dtype; weights stored as float16/bfloat16 are converted. Only float32 is supported for compute. */
  dtype?: "float32";
  /** Quantise the Linear layers on load (transformers' BitsAndBytesConfig fields: load_in_4bit, bnb_4bit_quant_type, …). */
  quantizationConfig?: BitsAndBytesConfig;
}

/**
 * A constructor of a concrete model class from its config. Each family takes its own config type, which the
 * family's parseConfig produced, so the parameter is typed loosely here.
 */
export type ModelClass<M extends PreTrainedModel = PreTrainedModel> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  new (config: any): M;
};

/** Base class of the architectures: config, checkpoint loading and saving. */
export abstract class PreTrainedModel extends Module {
  /** The folder this model was loaded from (adapters record it as base_model_name_or_path). */
  nameOrPath: string | null = null;
  /** Keys of the last weight load that the model did not have / the checkpoint did not have. */
  loadReport: LoadResult = { missingKeys: [], unexpectedKeys: [] };

  constructor(readonly config: PretrainedConfig) {
    super();
  }

  /** Run the model (see ModelInputs / Seq2SeqInputs); base models return hidden states, task models logits. */
  abstract forward(inputs: Seq2SeqInputs): BaseModelOutput | ModelOutput;

  /** Name of the attribute holding the base model in task models ("transformer", "model", "bert", …; "" for none). */
  abstract get baseModelPrefix(): string;

  /**
   * The token embedding table (prompt tuning and LoRA on embeddings use it). Base models override this; task
   * models find it in their base model, the child named baseModelPrefix.
   */
  getInputEmbeddings(): Embedding {
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
   * Load weights from a state dict with HF's key handling: the base-model prefix is added or stripped when the
   * checkpoint was saved from a model with/without a task head, and tied weights may be absent.
   */
  loadWeights(weights: ReadonlyMap<string, Tensor>): LoadResult {
    const own = this.stateDict();
    const prefix = this.baseModelPrefix ? `${this.baseModelPrefix}.` : "";
    const ownHasPrefix = prefix !== "" && [...own.keys()].some((k) => k.startsWith(prefix));
    const fileHasPrefix = prefix !== "" && [...weights.keys()].some((k) => k.startsWith(prefix));
    const renamed = new Map<string, Tensor>();
    for (const [k, t] of weights) {
      let key = k;
      if (ownHasPrefix && !fileHasPrefix && !own.has(k)) key = prefix + k;
      else if (!ownHasPrefix && fileHasPrefix && k.startsWith(prefix)) key = k.slice(prefix.length);
      renamed.set(key, t);
    }
    const tied = new Set(this.tiedWeightKeys());
    const result = noGrad(() => this.loadStateDict(renamed, { strict: false }));
    this.loadReport = { missingKeys: result.missingKeys.filter((k) => !tied.has(k)), unexpectedKeys: result.unexpectedKeys };
    return this.loadReport;
  }

  /**
   * transformers' default initialisation of a fresh model (_init_weights): Linear/Conv1D weights and embeddings
   * ~ N(0, initializer_range²), biases 0, norm weights 1. Layers' own PyTorch defaults (Kaiming-uniform, N(0, 1)
   * embeddings) are far too large for a tied LM head. Deferred Linear weights (withDeferredLinearWeights) get their
   * values here, and `afterLinear` sees each Linear/Conv1D right after its initialisation (to quantise it).
   */
  initWeights(gen: Generator = defaultGenerator, afterLinear?: (path: string, m: Linear | Conv1D) => void): this {
    const std = typeof this.config["initializer_range"] === "number" ? (this.config["initializer_range"] as number) : 0.02;
    noGrad(() => {
      for (const [path, m] of this.namedModules()) {
        if (m instanceof Linear || m instanceof Conv1D || m instanceof Embedding) {
          if (isDeferredWeight(m.weight)) {
            m.weight.dispose();
            m.weight = m.registerParameter("weight", parameter(gen.normal(m.weight.shape, 0, std)));
          } else {
            m.weight.copy_(gen.normal(m.weight.shape, 0, std));
          }
          const b = m.ownParameter("bias");
          if (b) b.copy_(zeros(b.shape));
          if (!(m instanceof Embedding)) afterLinear?.(path, m);
        } else if (m instanceof LayerNorm || m instanceof RMSNorm) {
          const w = m.ownParameter("weight"), b = m.ownParameter("bias");
          if (w) w.copy_(ones(w.shape));
          if (b) b.copy_(zeros(b.shape));
        }
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
   * Write config.json and model.safetensors (each tensor once, like HF), atomically; `dtype` stores the weights
   * as float16 or bfloat16 (halving the files; they load back as float32).
   */
  savePretrained(dir: string, opts: { dtype?: "float32" | "float16" | "bfloat16" } = {}): void {
    mkdirSync(dir, { recursive: true });
    const tied = new Set(this.tiedWeightKeys());
    const tensors = new Map<string, Tensor | RawTensor>([...this.stateDict()].filter(([k]) => !tied.has(k)));
    for (const [path, m] of this.namedModules()) {
      if (m instanceof QuantizedLinear) for (const [k, t] of quantizedLayerTensors(path, m)) tensors.set(k, t);
    }
    const dtype = opts.dtype ?? "float32";
    const onDisk = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;
    writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" }, { dtype: onDisk[dtype] });
    writeJsonAtomic(join(dir, "config.json"), { ...this.config, architectures: [this.architecture], torch_dtype: dtype });
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
  if (opts.dtype && opts.dtype !== "float32") throw new Error(`dtype "${opts.dtype}" is not supported for compute; use "float32"`);
  const config = parseConfig(readJsonObject(join(dir, "config.json")));
  const stored = config["quantization_config"] as BitsAndBytesConfig | null | undefined;
  if (stored && opts.quantizationConfig) {
    process.emitWarning(`${dir} holds a quantised checkpoint; its own quantization_config is used and the one passed is ignored`);
  }
  const { model, weights } = stored ? loadQuantizedLayers(cls, config, dir, parseQuantizationConfig(stored)) : { model: new cls(config), weights: loadModelWeights(dir) };
  try {
    const report = model.loadWeights(weights);
    if (report.missingKeys.length > 0) {
      process.emitWarning(`${cls.name}: weights not found in ${dir} (newly initialised): ${report.missingKeys.join(", ")}`);
    }
    if (report.unexpectedKeys.length > 0) {
      process.emitWarning(`${cls.name}: checkpoint weights not used by this model: ${report.unexpectedKeys.join(", ")}`);
    }
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  if (opts.quantizationConfig && !stored) {
    const settings = parseQuantizationConfig(opts.quantizationConfig);
    quantizeModel(model, settings);
    model.config["quantization_config"] = settings.dict;
  }
  model.nameOrPath = dir;
  return model.eval();
}

/**
 * A model whose Linear layers come quantised from a bitsandbytes checkpoint (transformers' pre-quantised loading):
 * the converted layers are built from their packed tensors, never in float32; the other weights are returned to load.
 */
function loadQuantizedLayers<M extends PreTrainedModel>(cls: ModelClass<M>, config: PretrainedConfig, dir: string, s: QuantizationSettings): { model: M; weights: Map<string, Tensor> } {
  const model = withDeferredLinearWeights(() => new cls(config));
  const { tensors } = readSafetensorsFolder(dir);
  const notConvert = modulesToNotConvert(s, model);
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv1D)) continue;
    if (isConverted(path, notConvert)) {
      const [inF, outF] = m instanceof Conv1D ? [m.nx, m.nf] : [m.inFeatures, m.outFeatures];
      const layer = s.bits === 4 ? linear4bitFromTensors(path, tensors, inF, outF) : linear8bitFromTensors(path, tensors, inF, outF, s.threshold);
      const bias = m.ownParameter("bias");
      if (bias) layer.bias = layer.registerParameter("bias", bias); // loaded below with the other weights
      model.setSubmodule(path, layer);
    } else if (isDeferredWeight(m.weight)) {
      m.weight = m.registerParameter("weight", parameter(zeros(m.weight.shape))); // a float layer (lm_head): loaded below
    }
  }
  return { model, weights: new Map([...tensors].map(([k, raw]) => [k, rawToTensor(raw, k)])) };
}
