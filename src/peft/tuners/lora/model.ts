/** LoraModel: LoRA's injection rules (which layers, which rank/alpha per layer, GPT-2's fan_in_fan_out). */
import type { Module } from "../../../nn/index.js";
import type {
  AdapterCapabilities,
  CombinationType,
  WeightedAdapterOptions,
  WeightedCombination,
} from "../../contract.js";
import { BaseTuner } from "../tuner.js";
import { allLinearTargets, defaultTargets, patternKey } from "../../targets.js";
import { LORA_TARGETS } from "../../mapping.js";
import { LoraEmbedding, LoraLayer, LoraLinear, type LoraSettings } from "./layer.js";
import { dispatchLora } from "./dispatch.js";
import { loftqSettings } from "./init.js";
import type { LoraConfig } from "./config.js";
import { PeftType } from "../../config.js";
import { replicateLayers } from "../../layer-replication.js";
import { trainableTokensState, wrapTrainableTokens } from "../../trainable-tokens-wrapper.js";
import { HOST_NAME } from "../../contract.js";
import { ConfigError } from "../../../errors.js";
import type { PreTrainedModel } from "../../../models/pretrained.js";
import { noGrad, tensor, fmtShape, type Tensor, type TorchGenerator } from "../../../tensor/index.js";
import {
  combineCat,
  combineFactorwise,
  combineSvd,
  replaysInitDraws,
  seededBernoulliMask,
  skipNewAdapterInitDraws,
  torchBernoulliMask,
  type CombinedFactors,
  type LoraPart,
  type TaskMerge,
  type TaskMergeOptions,
} from "./weighted.js";

/** The combination types that merge A and B each on its own (equal ranks, weights √(w·s)). */
const FACTORWISE_TYPES: readonly string[] = ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"];
/** The combination types ending in an SVD, by the merge of the dense deltas before it. */
const SVD_TYPES: Readonly<Record<string, TaskMerge>> = {
  svd: "linear",
  ties_svd: "ties",
  dare_linear_svd: "dare_linear",
  dare_ties_svd: "dare_ties",
  magnitude_prune_svd: "magnitude_prune",
};
const COMBINATION_TYPES: readonly string[] = [...FACTORWISE_TYPES, "cat", ...Object.keys(SVD_TYPES)];

/** LoRA injected into a model. */
export class LoraModel extends BaseTuner<LoraConfig> implements WeightedCombination {
  readonly prefix = "lora_";
  override readonly capabilities: AdapterCapabilities = {
    merge: this,
    weightedCombination: this,
    optimizerStepHook: null,
  };

  protected prepareConfig(config: LoraConfig): LoraConfig {
    const c: LoraConfig = { ...config };
    if (c.target_modules === null)
      c.target_modules = defaultTargets(LORA_TARGETS, this.model.config.model_type, "LoRA");
    else if (c.target_modules === "all-linear") c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /**
   * peft's _prepare_model: layer_replication rebuilds the layer stack before the targets are matched; afterwards
   * (peft's add_adapter) trainable_token_indices wraps the embeddings.
   */
  override injectAdapter(config: LoraConfig, adapterName: string): LoraConfig {
    if (config.layer_replication) replicateLayers(this.model, config.layer_replication);
    const prepared = super.injectAdapter(config, adapterName);
    if (prepared.trainable_token_indices) {
      wrapTrainableTokens(this.model, adapterName, prepared.trainable_token_indices, prepared.modules_to_save);
      this.setAdapter(this.activeAdapters);
      if (prepared.inference_mode) for (const p of this.adapterParameters(adapterName)) p.requiresGrad = false;
    }
    return prepared;
  }

  /** The trainable tokens' rows are saved beside the LoRA tensors. */
  protected override finalizeSavedState(adapterName: string, state: Map<string, Tensor>): Map<string, Tensor> {
    return new Map([...state, ...trainableTokensState(this, adapterName, `${HOST_NAME}.`)]);
  }

  /** Merging into weights shared by replicated layers would fold every copy's adapter into all of them. */
  private refuseMergeWhenReplicated(): void {
    const replicated = [...this.peftConfig].filter(([, c]) => c.layer_replication).map(([name]) => name);
    if (replicated.length > 0) {
      throw new ConfigError(
        `Cannot merge LORA layers when base model layers are replicated (adapter ` +
          `${replicated.join(", ")} has layer_replication)`,
        "run the model unmerged, or train without layer_replication to merge",
      );
    }
  }

  override merge(names?: string[]): void {
    this.refuseMergeWhenReplicated();
    super.merge(names);
  }

  override mergeAndUnload(names?: string[]): PreTrainedModel {
    this.refuseMergeWhenReplicated();
    return super.mergeAndUnload(names);
  }

  /** Rank, alpha and init of the adapter for one module (rank_pattern / alpha_pattern override r / lora_alpha). */
  settingsFor(config: LoraConfig, key: string): LoraSettings {
    // Each pattern is searched on its own, as in peft (a module may match one key of rank_pattern and another of alpha_pattern).
    const rKey = patternKey(Object.keys(config.rank_pattern ?? {}), key);
    const alphaKey = patternKey(Object.keys(config.alpha_pattern ?? {}), key);
    return {
      r: (rKey !== null ? config.rank_pattern?.[rKey] : undefined) ?? config.r,
      alpha: (alphaKey !== null ? config.alpha_pattern?.[alphaKey] : undefined) ?? config.lora_alpha,
      dropout: config.lora_dropout,
      initWeights: config.init_lora_weights,
      useRslora: config.use_rslora,
      useDora: config.use_dora,
      loraBias: config.lora_bias,
      key,
      ...(config.init_lora_weights === "loftq" ? { loftq: loftqSettings(config.loftq_config) } : {}),
    };
  }

  /**
   * peft's add_weighted_adapter: a new adapter `adapterName` combining `adapters` with `weights` (see weighted.ts
   * for the math of every combination type). Its config is a copy of the first adapter's with r and lora_alpha
   * set to the new rank (scaling 1) and target_modules the union of the adapters' (for string targets, the
   * regexes joined as "(a)|(b)"). It is added inactive and frozen, like in peft. Returns the new config.
   *
   * Where this differs from peft 0.15.2: an existing `adapterName` is an error (peft silently does nothing);
   * use_rslora is switched off in the new config so its scaling really is 1 (peft copies it, and the result's
   * scale would be off by √r); DoRA adapters are refused (peft ignores their magnitudes); with rank_pattern,
   * per-layer ranks are honoured and recorded in the new config's rank_pattern/alpha_pattern; an "svd" rank above
   * a layer's min(out, in) pads with zeros instead of failing.
   */
  addWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
    opts: WeightedAdapterOptions = {},
  ): LoraConfig {
    const { combinationType, newRank, config, merge } = this.checkWeightedAdapter(adapters, weights, adapterName, opts);
    const clamp = opts.svdClamp ?? null;
    const factorwise = FACTORWISE_TYPES.includes(combinationType);

    // Per layer: the adapters present there and the new adapter's rank (peft's global rank unless rank_pattern
    // makes the adapters' layer ranks differ).
    const plans = new Map<string, { present: number[]; rank: number }>();
    for (const [key, layer] of this.loraLayers()) {
      const present = adapters.map((_, i) => i).filter((i) => layer.hasAdapter(adapters[i]!));
      if (present.length === 0) continue;
      let rank: number;
      if (factorwise) {
        const ranks = [...new Set(present.map((i) => layer.r.get(adapters[i]!)!))];
        if (ranks.length > 1)
          throw new Error(
            `addWeightedAdapter: combination_type "${combinationType}" needs equal ranks, but in ` +
              `${key} the adapters have ranks ` +
              `${present.map((i) => `${adapters[i]}: ${layer.r.get(adapters[i]!)}`).join(", ")}; use ` +
              `"cat" or "svd"`,
          );
        rank = ranks[0]!;
        for (const i of present) {
          const ws = weights[i]! * layer.scaling.get(adapters[i]!)!;
          if (ws < 0)
            throw new Error(
              `addWeightedAdapter: combination_type "${combinationType}" takes √(weight·scaling), but ` +
                `adapter "${adapters[i]}" has weight ${weights[i]} and scaling ` +
                `${layer.scaling.get(adapters[i]!)} in ${key}; use "cat" or "svd" for negative weights`,
            );
        }
      } else if (combinationType === "cat") {
        rank = adapters.reduce(
          (sum, a) => sum + (layer.hasAdapter(a) ? layer.r.get(a)! : this.settingsFor(this.peftConfig.get(a)!, key).r),
          0,
        );
      } else {
        rank = newRank;
      }
      plans.set(key, { present, rank });
    }
    for (const [key, { rank }] of plans) {
      if (rank === newRank) continue;
      config.rank_pattern[key] = rank;
      config.alpha_pattern[key] = rank;
    }

    this.injectAdapter(config, adapterName);
    try {
      // peft's inject_adapter draws every new layer's initial factors before any mask.
      if (opts.generator) this.skipInitDraws(opts.generator, adapterName, config.init_lora_weights);
      noGrad(() => {
        for (const [key, layer] of this.loraLayers()) {
          if (!layer.hasAdapter(adapterName)) continue;
          const plan = plans.get(key);
          if (!plan)
            throw new Error(
              `addWeightedAdapter: none of the adapters ${adapters.join(", ")} is in ${key}, where the ` +
                `new adapter's config puts "${adapterName}" (do the adapters use different ` +
                `layers_to_transform or exclude_modules?)`,
            );
          const target = layer.loraFactors(adapterName);
          const [m, rank] = target.B.shape as [number, number];
          const n = target.A.shape[1]!;
          const parts: LoraPart[] = plan.present.map((i) => {
            const { A, B } = layer.loraFactors(adapters[i]!);
            return {
              a: A.dataSync(),
              b: B.dataSync(),
              r: layer.r.get(adapters[i]!)!,
              weight: weights[i]!,
              scaling: layer.scaling.get(adapters[i]!)!,
            };
          });
          let combined: CombinedFactors;
          if (factorwise) combined = combineFactorwise(combinationType as TaskMerge, parts, merge);
          else if (combinationType === "cat") combined = combineCat(parts, m, n, rank);
          else
            combined = combineSvd(
              SVD_TYPES[combinationType]!,
              parts,
              m,
              n,
              rank,
              clamp,
              merge,
              layer instanceof LoraEmbedding || (layer instanceof LoraLinear && layer.fanInFanOut),
            );
          writeInto(target.A, combined.a, [rank, n], key);
          writeInto(target.B, combined.b, [m, rank], key);
        }
      });
    } catch (err) {
      this.deleteAdapter(adapterName);
      throw err;
    }
    // peft's _freeze_adapter: the combined adapter is not trainable.
    for (const p of this.adapterParameters(adapterName)) p.requiresGrad = false;
    return this.peftConfig.get(adapterName)!;
  }

  /** peft's _check_add_weighted_adapter plus argument checks: the combination type, the new rank and config. */
  private checkWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
    opts: WeightedAdapterOptions,
  ): { combinationType: CombinationType; newRank: number; config: LoraConfig; merge: TaskMergeOptions } {
    this.checkWeightedAdapterArguments(adapters, weights, adapterName);
    const configs = adapters.map((a) => this.peftConfig.get(a)!);
    configs.forEach((c, i) => {
      if (c.peft_type !== PeftType.LORA)
        throw new Error(
          `addWeightedAdapter: adapter "${adapters[i]}" is a ${c.peft_type} adapter; only LoRA ` +
            `adapters can be combined`,
        );
      if (c.use_dora)
        throw new Error(
          `addWeightedAdapter: adapter "${adapters[i]}" uses DoRA, whose magnitude vectors cannot be ` +
            `combined this way; combine plain LoRA adapters`,
        );
    });
    const wrappers = this.savedModules().filter(([, w]) => adapters.filter((a) => w.modules_to_save.has(a)).length > 1);
    if (wrappers.length > 0) {
      throw new Error(
        `addWeightedAdapter: cannot add weighted adapters if they target the same module with ` +
          `modules_to_save, but found ${wrappers.length} such instance(s): ` +
          `${wrappers.map(([k]) => k).join(", ")}`,
      );
    }

    const requested = opts.combinationType ?? "svd";
    if (!COMBINATION_TYPES.includes(requested))
      throw new ConfigError(
        `addWeightedAdapter: invalid combination_type "${String(requested)}"`,
        `use one of ${COMBINATION_TYPES.join(", ")}`,
      );
    // With a single adapter, peft only does linear merging.
    const combinationType: CombinationType = adapters.length === 1 ? "linear" : (requested as CombinationType);
    const svdRank = opts.svdRank ?? null;
    if (svdRank !== null && !(Number.isInteger(svdRank) && svdRank > 0))
      throw new Error(`addWeightedAdapter: svdRank must be a positive integer, got ${svdRank}`);
    const svdClamp = opts.svdClamp ?? null;
    if (svdClamp !== null && !(typeof svdClamp === "number" && svdClamp >= 0 && svdClamp <= 1))
      throw new Error(`addWeightedAdapter: svdClamp is a quantile and must be in [0, 1], got ${svdClamp}`);

    const merge = this.taskMergeOptions(combinationType, opts);

    const ranks = configs.map((c) => c.r);
    let newRank: number;
    if (FACTORWISE_TYPES.includes(combinationType)) {
      if (new Set(ranks).size !== 1) {
        throw new Error(
          `addWeightedAdapter: all adapters must have the same r value when using combination_type ` +
            `"${combinationType}" (got ${adapters.map((a, i) => `${a}: r=${ranks[i]}`).join(", ")}); ` +
            `use "cat" or "svd"`,
        );
      }
      newRank = ranks[0]!;
    } else if (combinationType === "cat") {
      newRank = ranks.reduce((a, b) => a + b, 0);
    } else {
      newRank = svdRank ?? Math.max(...ranks);
    }

    const targets = configs.map((c) => c.target_modules);
    const kinds = new Set(targets.map((t) => (typeof t === "string" ? "string" : Array.isArray(t) ? "list" : "none")));
    if (kinds.has("none"))
      throw new Error(
        `addWeightedAdapter: adapter ` +
          `"${adapters[targets.findIndex((t) => typeof t !== "string" && !Array.isArray(t))]}" has ` +
          `no target_modules`,
      );
    if (kinds.size > 1) {
      throw new Error(
        "addWeightedAdapter: all adapter configs should follow the same target modules type. " +
          "Combining adapters with `target_modules` type being a mix of list and string is not " +
          "supported.",
      );
    }
    const targetModules = kinds.has("string")
      ? (targets as string[]).map((t) => `(${t})`).join("|")
      : [...new Set((targets as string[][]).flat())];

    const first = configs[0]!;
    // peft's _check_new_adapter_config: only one adapter may train biases.
    if (first.bias !== "none") {
      throw new Error(
        `addWeightedAdapter: the new adapter would copy bias="${first.bias}" from ` +
          `"${adapters[0]}", but LoRA supports only 1 adapter with bias; when using multiple ` +
          `adapters, set bias to "none" for all adapters`,
      );
    }
    const config: LoraConfig = {
      ...structuredClone(first),
      r: newRank,
      lora_alpha: newRank,
      target_modules: targetModules,
      rank_pattern: {},
      alpha_pattern: {},
      use_rslora: false,
    };
    if (opts.generator && !replaysInitDraws(config.init_lora_weights)) {
      throw new ConfigError(
        `addWeightedAdapter: the generator option follows torch's draws for a new adapter with ` +
          `init_lora_weights true, false or "gaussian", but "${adapters[0]}" (whose config the new ` +
          `adapter copies) has ${JSON.stringify(config.init_lora_weights)}`,
        "combine without a generator, or list an adapter with one of those init_lora_weights first",
      );
    }
    return { combinationType, newRank, config, merge };
  }

  /** density, majority_sign_method and DARE's mask source, checked for the combination types that use them. */
  private taskMergeOptions(combinationType: CombinationType, opts: WeightedAdapterOptions): TaskMergeOptions {
    const density = opts.density ?? null;
    const majoritySignMethod = opts.majoritySignMethod ?? "total";
    const prunes = combinationType !== "linear" && combinationType !== "cat" && combinationType !== "svd";
    if (prunes && (density === null || typeof density !== "number" || !(density >= 0))) {
      throw new ConfigError(
        `addWeightedAdapter: combination_type "${combinationType}" needs a density ≥ 0, got ${String(density)}`,
        "pass density, the fraction of values kept (e.g. 0.5; 1 keeps all)",
      );
    }
    if (prunes && density! >= 1)
      process.emitWarning(`The density ${density} is greater than or equal to 1, no pruning will be performed.`);
    if (majoritySignMethod !== "total" && majoritySignMethod !== "frequency") {
      throw new ConfigError(
        `addWeightedAdapter: invalid majoritySignMethod "${String(majoritySignMethod)}"`,
        'use "total" or "frequency"',
      );
    }
    return {
      density,
      majoritySignMethod,
      mask: opts.generator ? torchBernoulliMask(opts.generator) : seededBernoulliMask,
    };
  }

  /** Moves `generator` past what torch draws while peft creates adapter `name` in each of its layers, in module order. */
  private skipInitDraws(
    generator: TorchGenerator,
    name: string,
    initLoraWeights: LoraConfig["init_lora_weights"],
  ): void {
    for (const [, layer] of this.loraLayers()) {
      if (!layer.hasAdapter(name)) continue;
      const { A, B } = layer.loraFactors(name);
      const bias = layer instanceof LoraLinear ? layer.lora_B.get(name).bias : null;
      skipNewAdapterInitDraws(generator, {
        embedding: layer instanceof LoraEmbedding,
        aSize: A.size,
        bSize: B.size,
        biasSize: bias?.size ?? 0,
        initLoraWeights,
      });
    }
  }

  /** The LoRA layers (Linear, Conv1D, Embedding) by path. */
  private loraLayers(): [string, LoraLayer][] {
    return this.tunerLayers().filter((e): e is [string, LoraLayer] => e[1] instanceof LoraLayer);
  }

  /** A module that already carries LoRA gets another adapter; any other goes through the dispatcher list. */
  protected createOrUpdate(config: LoraConfig, adapterName: string, target: Module, key: string): void {
    const settings = this.settingsFor(config, key);
    if (target instanceof LoraLayer) {
      target.updateLayer(adapterName, settings);
      return;
    }
    const layer = dispatchLora(target, config, key);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, settings);
    this.model.setSubmodule(key, layer);
  }
}

/** Copy computed values into an adapter parameter, checking the shape the new adapter got at injection. */
function writeInto(param: Tensor, values: Float32Array, shape: number[], key: string): void {
  if (param.shape.length !== shape.length || param.shape.some((d, i) => d !== shape[i])) {
    throw new Error(
      `addWeightedAdapter: internal shape mismatch in ${key}: the new adapter's parameter is ` +
        `${fmtShape(param.shape)} but the combination is ${fmtShape(shape)}`,
    );
  }
  const t = tensor(values, shape);
  try {
    param.copy_(t);
  } finally {
    t.dispose();
  }
}
