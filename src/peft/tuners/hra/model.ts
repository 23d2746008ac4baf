/** HRAModel (peft 0.15.2): Householder reflections injected into Linear targets (LoRA's default targets). */
import type { Linear } from "../../../nn/index.js";
import { LinearTargetsTuner } from "../linear-tuner.js";
import { makeHRAConfig, type HRAConfig } from "./config.js";
import { HRALinear } from "./layer.js";

/** HRA injected into a model. */
export class HRAModel extends LinearTargetsTuner<HRAConfig> {
  readonly prefix = "hra_";
  protected readonly methodName = "HRA";

  /** Add an adapter; plain config objects (not made by HRAConfig()) get the defaults and checks too. */
  override injectAdapter(fields: HRAConfig, adapterName: string): HRAConfig {
    return super.injectAdapter(makeHRAConfig(fields, false), adapterName);
  }

  protected makeLayer(base: Linear): HRALinear {
    return new HRALinear(base);
  }

  protected addAdapter(layer: HRALinear, config: HRAConfig, adapterName: string): void {
    layer.updateLayer(adapterName, config.r, config.apply_GS, config.init_weights);
  }
}
