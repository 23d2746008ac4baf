/**
 * FourierFTModel (peft 0.15.2): FourierFT layers injected into Linear and GPT-2 Conv1D targets, n_frequency per
 * module from n_frequency_pattern, default targets by model type, and bias "fourier_only".
 */
import { Conv1D, Linear, type Module } from "../../../nn/index.js";
import { BaseTuner, fanInFanOutFor } from "../tuner.js";
import { allLinearTargets } from "../../targets.js";
import { FOURIERFT_TARGETS } from "../../mapping.js";
import { makeFourierFTConfig, type FourierFTConfig } from "./config.js";
import { FourierFTLinear } from "./layer.js";

/** peft's n_frequency_pattern lookup: the first key k with `.*\.k$` matching the module path. */
export function nFrequencyFor(config: FourierFTConfig, key: string): number {
  const hit = Object.keys(config.n_frequency_pattern ?? {}).find((k) => new RegExp(`^.*\\.${k}$`).test(key));
  return hit !== undefined ? config.n_frequency_pattern[hit]! : config.n_frequency;
}

/** FourierFT injected into a model. */
export class FourierFTModel extends BaseTuner<FourierFTConfig> {
  readonly prefix = "fourierft_";

  /** Add an adapter; plain config objects (not made by FourierFTConfig()) get the defaults and checks too. */
  override injectAdapter(fields: FourierFTConfig, adapterName: string): FourierFTConfig {
    return super.injectAdapter(makeFourierFTConfig(fields, false), adapterName);
  }

  /** Default targets by model type, "all-linear" expanded. */
  protected prepareConfig(config: FourierFTConfig): FourierFTConfig {
    const c: FourierFTConfig = { ...config };
    const modelType = this.model.config.model_type;
    if (c.target_modules === null) {
      const t = FOURIERFT_TARGETS[modelType];
      if (!t) throw new Error(`Please specify \`target_modules\` in \`peft_config\`: FourierFT has no default for model_type "${modelType}"`);
      c.target_modules = [...t];
    }
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear") c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** Only Linear and GPT-2's Conv1D (or FourierFT layers, which get another adapter) can be adapted. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof FourierFTLinear || target instanceof Linear || target instanceof Conv1D) return;
    throw new Error(`Target module ${key} (${target.constructor.name}) is not supported. Currently, only the following modules are supported: \`torch.nn.Linear\`.`);
  }

  protected createOrUpdate(config: FourierFTConfig, adapterName: string, target: Module, key: string): void {
    const n = nFrequencyFor(config, key);
    if (target instanceof FourierFTLinear) {
      target.updateLayer(adapterName, n, config.scaling, config.init_weights, config.random_loc_seed);
      return;
    }
    const base = target as Linear | Conv1D;
    fanInFanOutFor(config, base, "torch.nn.Linear");
    const layer = new FourierFTLinear(base);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, n, config.scaling, config.init_weights, config.random_loc_seed);
    this.model.setSubmodule(key, layer);
  }

  /** bias "fourier_only" trains the biases of the adapted layers (the generic "lora_only"). */
  protected override markOnlyAdaptersTrainable(config: FourierFTConfig): void {
    super.markOnlyAdaptersTrainable({ ...config, bias: config.bias === "fourier_only" ? "lora_only" : config.bias } as FourierFTConfig);
  }
}
