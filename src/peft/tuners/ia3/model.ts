/**
 * IA3Model (peft 0.15.2): (IA)³ vectors injected into the target layers — default targets and feed-forward modules
 * by model type, GPT-2's Conv1D handled with fan_in_fan_out, and add_weighted_adapter (a weighted sum of the
 * adapters' vectors).
 */
import { Conv1D, Linear, QuantizedLinear, type Module } from "../../../nn/index.js";
import { add, mul, noGrad, tidy, zeros } from "../../../tensor/index.js";
import type { AdapterCapabilities, WeightedAdapterOptions, WeightedCombination } from "../../contract.js";
import { BaseTuner, fanInFanOutFor } from "../tuner.js";
import { allLinearTargets } from "../../targets.js";
import { IA3_FEEDFORWARD, IA3_TARGETS } from "../../mapping.js";
import { makeIA3Config, type IA3Config } from "./config.js";
import { IA3Linear } from "./layer.js";

/** peft's _check_target_module_feedforward: a regex string full-matches, a list matches by plain name suffix. */
export function isFeedforwardModule(feedforward: string | readonly string[] | null, key: string): boolean {
  if (feedforward === null) return false;
  if (typeof feedforward === "string") return new RegExp(`^(?:${feedforward})$`).test(key);
  return feedforward.some((f) => key.endsWith(f));
}

/** (IA)³ injected into a model. */
export class IA3Model extends BaseTuner<IA3Config> implements WeightedCombination {
  readonly prefix = "ia3_";
  override readonly capabilities: AdapterCapabilities = {
    merge: this,
    weightedCombination: this,
    optimizerStepHook: null,
  };

  /** Add an adapter; plain config objects (not made by IA3Config()) get the defaults and checks too. */
  override injectAdapter(fields: IA3Config, adapterName: string): IA3Config {
    return super.injectAdapter(makeIA3Config(fields, false), adapterName);
  }

  /** peft's _prepare_adapter_config (default targets and feed-forward modules), then "all-linear" expansion. */
  protected prepareConfig(config: IA3Config): IA3Config {
    const c: IA3Config = { ...config };
    const modelType = this.model.config.model_type;
    if (c.target_modules === null) {
      const t = IA3_TARGETS[modelType];
      if (!t)
        throw new Error(
          `Please specify \`target_modules\` in the IA3 config: there is no default for model_type "${modelType}"`,
        );
      c.target_modules = [...t];
    }
    if (c.feedforward_modules === null) {
      const f = IA3_FEEDFORWARD[modelType];
      if (!f)
        throw new Error(
          `Please specify \`feedforward_modules\` in the IA3 config: there is no default for ` +
            `model_type "${modelType}" (list the targets that are feed-forward layers, or [] for none)`,
        );
      c.feedforward_modules = [...f];
    }
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear")
      c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** Only Linear and GPT-2's Conv1D layers (or (IA)³ layers, which get another adapter) can be adapted. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (
      target instanceof IA3Linear ||
      target instanceof Linear ||
      target instanceof Conv1D ||
      target instanceof QuantizedLinear
    )
      return;
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported by IA3. Currently, ` +
        `only Linear and GPT-2's Conv1D are supported.`,
    );
  }

  protected createOrUpdate(config: IA3Config, adapterName: string, target: Module, key: string): void {
    if (target instanceof IA3Linear) {
      target.updateLayer(adapterName, config.init_ia3_weights);
      return;
    }
    const isFeedforward = isFeedforwardModule(config.feedforward_modules, key);
    this.checkTargetModule(key, target);
    const base = target as Linear | Conv1D | QuantizedLinear;
    const layer = new IA3Linear(
      base,
      base instanceof QuantizedLinear ? false : fanInFanOutFor(config, base),
      isFeedforward,
    );
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, config.init_ia3_weights);
    this.model.setSubmodule(key, layer);
  }

  /** The (IA)³ layers by module path. */
  ia3Layers(): [string, IA3Linear][] {
    return this.tunerLayers().filter((e): e is [string, IA3Linear] => e[1] instanceof IA3Linear);
  }

  /**
   * peft's add_weighted_adapter for (IA)³: a new adapter whose vector in each layer is Σ weightᵢ · lᵢ over the
   * adapters present there (0 where none is). Its config is the first adapter's with target_modules and
   * feedforward_modules the unions of the adapters' (regex strings joined as "(a)|(b)"). It is added inactive and
   * frozen, as in peft. Where this differs from peft 0.15.2: an existing `adapterName` is an error (peft silently
   * does nothing), and weights must be one finite number per adapter (peft zips, dropping extras). LoRA's options
   * do not apply. Returns the new config.
   */
  addWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
    opts: WeightedAdapterOptions = {},
  ): IA3Config {
    const options = Object.keys(opts);
    if (options.length > 0)
      throw new Error(
        `addWeightedAdapter: options (${options.join(", ")}) apply to LoRA only; IA3 adapters are ` +
          `combined as a weighted sum`,
      );
    const config = this.checkWeightedAdapter(adapters, weights, adapterName);
    this.injectAdapter(config, adapterName);
    noGrad(() => {
      for (const [, layer] of this.ia3Layers()) {
        if (!layer.hasAdapter(adapterName)) continue;
        const target = layer.vector(adapterName);
        tidy(() => {
          let sum = zeros(target.shape);
          adapters.forEach((a, i) => {
            if (layer.hasAdapter(a)) sum = add(sum, mul(layer.vector(a), weights[i]!));
          });
          target.copy_(sum);
        });
      }
    });
    // peft's _freeze_adapter: the combined adapter is not trainable.
    for (const p of this.adapterParameters(adapterName)) p.requiresGrad = false;
    return this.peftConfig.get(adapterName)!;
  }

  /** peft's _check_add_weighted_adapter plus argument checks; the new adapter's config. */
  private checkWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
  ): IA3Config {
    this.checkWeightedAdapterArguments(adapters, weights, adapterName);
    const wrappers = this.savedModules().filter(([, w]) => adapters.filter((a) => w.modules_to_save.has(a)).length > 1);
    if (wrappers.length > 0)
      throw new Error(
        `addWeightedAdapter: cannot add weighted adapters targeting the same module with ` +
          `modules_to_save (${wrappers.map(([k]) => k).join(", ")})`,
      );
    const configs = adapters.map((a) => this.peftConfig.get(a)!);
    const union = (field: "target_modules" | "feedforward_modules"): string | string[] => {
      const specs = configs.map((c) => c[field]);
      const kinds = new Set(specs.map((s) => (typeof s === "string" ? "string" : "list")));
      if (kinds.size > 1)
        throw new Error(
          "addWeightedAdapter: all adapter configs should have the same type for target and " +
            "feedforward modules (all lists or all regex strings).",
        );
      if (kinds.has("string")) return (specs as string[]).map((s) => `(${s})`).join("|");
      return [...new Set((specs as (string[] | null)[]).flatMap((s) => s ?? []))];
    };
    return {
      ...structuredClone(configs[0]!),
      target_modules: union("target_modules"),
      feedforward_modules: union("feedforward_modules"),
    };
  }
}
