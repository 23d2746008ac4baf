/**
 * FourierFTModel (peft 0.15.2): FourierFT layers injected into Linear and GPT-2 Conv1D targets, n_frequency per
 * module from n_frequency_pattern, default targets by model type, and bias "fourier_only".
 */
import { Conv1D, Linear, type Module } from "../../../nn/index.js";
import { fanInFanOutFor } from "../tuner.js";
import { LinearTuner } from "../linear-tuner.js";
import { FOURIERFT_TARGETS } from "../../mapping.js";
import { makeFourierFTConfig, type FourierFTConfig } from "./config.js";
import { FourierFTLinear } from "./layer.js";

/** peft's n_frequency_pattern lookup: the first key k with `.*\.k$` matching the module path. */
export function nFrequencyFor(config: FourierFTConfig, key: string): number {
  const hit = Object.keys(config.n_frequency_pattern ?? {}).find((k) => new RegExp(`^.*\\.${k}$`).test(key));
  return hit !== undefined ? config.n_frequency_pattern[hit]! : config.n_frequency;
}

/** FourierFT injected into a model. */
export class FourierFTModel extends LinearTuner<FourierFTConfig> {
  readonly prefix = "fourierft_";
  protected readonly methodName = "FourierFT";
  protected readonly defaultTargets = FOURIERFT_TARGETS;
  protected readonly ownBias = "fourier_only";

  /** Add an adapter; plain config objects (not made by FourierFTConfig()) get the defaults and checks too. */
  override injectAdapter(fields: FourierFTConfig, adapterName: string): FourierFTConfig {
    return super.injectAdapter(makeFourierFTConfig(fields, false), adapterName);
  }

  /** Only Linear and GPT-2's Conv1D (or FourierFT layers, which get another adapter) can be adapted. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof FourierFTLinear || target instanceof Linear || target instanceof Conv1D) return;
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported. Currently, only the ` +
        `following modules are supported: \`torch.nn.Linear\`.`,
    );
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
}
