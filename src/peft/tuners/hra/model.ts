/** HRAModel (peft 0.15.2): Householder reflections injected into Linear targets (LoRA's default targets). */
import type { Linear } from "../../../nn/index.js";
import { LinearTuner } from "../linear-tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makeHRAConfig, type HRAConfig } from "./config.js";
import { HRALinear } from "./layer.js";

/** HRA injected into a model. */
export class HRAModel extends LinearTuner<HRAConfig, HRALinear> {
  readonly prefix = "hra_";
  protected readonly methodName = "HRA";
  protected readonly defaultTargets = LORA_TARGETS;
  protected readonly layerClass = HRALinear;
  protected readonly buildConfig = makeHRAConfig;

  protected makeLayer(base: Linear): HRALinear {
    return new HRALinear(base);
  }

  protected addAdapter(layer: HRALinear, config: HRAConfig, adapterName: string): void {
    layer.updateLayer(adapterName, config.r, config.apply_GS, config.init_weights);
  }
}
