/**
 * FourierFTModel (peft 0.15.2): FourierFT layers injected into Linear and GPT-2 Conv1D targets, n_frequency per
 * module from n_frequency_pattern, default targets by model type, and bias "fourier_only".
 */
import type { Conv1D, Linear } from "../../../nn/index.js";
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
export class FourierFTModel extends LinearTuner<FourierFTConfig, FourierFTLinear> {
  readonly prefix = "fourierft_";
  protected readonly methodName = "FourierFT";
  protected readonly defaultTargets = FOURIERFT_TARGETS;
  protected override readonly ownBias = "fourier_only";
  protected override readonly acceptsConv1D = true;
  protected readonly buildConfig = makeFourierFTConfig;
  protected readonly layerClass = FourierFTLinear;

  protected makeLayer(base: Linear | Conv1D): FourierFTLinear {
    return new FourierFTLinear(base);
  }

  protected addAdapter(layer: FourierFTLinear, config: FourierFTConfig, adapterName: string, key: string): void {
    layer.updateLayer(
      adapterName,
      nFrequencyFor(config, key),
      config.scaling,
      config.init_weights,
      config.random_loc_seed,
    );
  }
}
