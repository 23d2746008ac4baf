/**
 * PreTrainedModel: what every architecture shares — its config, loading HF checkpoint folders (single or
 * sharded safetensors, half-precision converted on load), saving them back, and the key rules HF uses
 * (tied weights not stored twice, base-model prefixes added or stripped).
 */
import { join } from "node:path";
import { Conv1D, Embedding, LayerNorm, Linear, Module, RMSNorm, type EmbeddingLayer, type LoadResult } from "../nn/index.js";
import { Generator, Tensor, defaultGenerator, noGrad, ones, zeros } from "../tensor/index.js";
import { readJsonObject, writeJsonAtomic } from "../io/json.js";
import { loadModelWeights, writeSafetensors } from "../io/safetensors.js";
import type { HubOptions } from "../io/hub.js";
import { pushSaved, type CommitInfo, type PushOptions } from "../io/hub-upload.js";
import { writeFolderAtomic } from "../io/atomic.js";
import { checkModelConfig, checkModelFitsInMemory, type PretrainedConfig } from "./config.js";
import type { BaseModelOutput, ModelOutput, Seq2SeqInputs } from "./outputs.js";

/** Options of fromPretrained (the Hub options apply when the name is a repo id rather than a local folder). */
export interface FromPretrainedOptions extends HubOptions {
  /** Compute dtype; weights stored as float16/bfloat16 are converted. Only float32 is supported for compute. */
  dtype?: "float32";
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
   * embeddings) are far too large for a tied LM head.
   */
  initWeights(gen: Generator = defaultGenerator): this {
    // initializer_range, or OPT's name for it.
    const given = this.config["initializer_range"] ?? this.config["init_std"];
    const std = typeof given === "number" ? given : 0.02;
    noGrad(() => {
      for (const [, m] of this.namedModules()) {
        if (m instanceof Linear || m instanceof Conv1D || m instanceof Embedding) {
          const w = m.weight;
          w.copy_(gen.normal(w.shape, 0, std));
          const b = m.ownParameter("bias");
          if (b) b.copy_(zeros(b.shape));
        } else if (m instanceof LayerNorm || m instanceof RMSNorm) {
          const w = m.ownParameter("weight"), b = m.ownParameter("bias");
          // Gemma's norms scale by (1 + weight): their neutral weight is 0.
          if (w) w.copy_(m instanceof RMSNorm && m.unitOffset ? zeros(w.shape) : ones(w.shape));
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
    const tied = new Set(this.tiedWeightKeys());
    const tensors = new Map([...this.stateDict()].filter(([k]) => !tied.has(k)));
    const dtype = opts.dtype ?? "float32";
    const onDisk = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;
    // The folder is replaced as a whole (weights and config never from two saves); files other than weights are kept.
    writeFolderAtomic(dir, (tmp) => {
      writeSafetensors(join(tmp, "model.safetensors"), tensors, { format: "pt" }, { dtype: onDisk[dtype] });
      writeJsonAtomic(join(tmp, "config.json"), { ...this.config, architectures: [this.architecture], torch_dtype: dtype });
    }, { carryOver: (f) => !/^(config\.json|(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?)$/.test(f) });
  }

  /** Upload the model as savePretrained writes it (e.g. a merged model) to a Hub repo, created if needed (transformers' push_to_hub). */
  pushToHub(repoId: string, opts: PushOptions & { dtype?: "float32" | "float16" | "bfloat16" } = {}): Promise<CommitInfo> {
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
  if (opts.dtype && opts.dtype !== "float32") throw new Error(`dtype "${opts.dtype}" is not supported for compute; use "float32"`);
  const config = parseConfig(readJsonObject(join(dir, "config.json")));
  const model = new cls(config);
  const weights = loadModelWeights(dir);
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
  model.nameOrPath = dir;
  return model.eval();
}
