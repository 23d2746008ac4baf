/**
 * LNTuningModel (peft 0.15.2): trainable copies of the model's normalisation layers (default targets by model type).
 * Any module can be targeted, as in peft; the copy runs instead of the original.
 */
import type { Module, TensorLayer } from "../../../nn/index.js";
import { ConfigError } from "../../../errors.js";
import { LN_TUNING_TARGETS } from "../../mapping.js";
import { BaseTuner } from "../tuner.js";
import { makeLNTuningConfig, type LNTuningConfig } from "./config.js";
import { LNTuningLayer } from "./layer.js";

/** LN tuning injected into a model. */
export class LNTuningModel extends BaseTuner<LNTuningConfig> {
  readonly prefix = "ln_tuning_";

  /** Add an adapter; plain config objects (not made by LNTuningConfig()) get the defaults and checks too. */
  override injectAdapter(fields: LNTuningConfig, adapterName: string): LNTuningConfig {
    return super.injectAdapter(makeLNTuningConfig(fields, false), adapterName);
  }

  /** peft's _prepare_adapter_config: the model type's norms when target_modules is not given. */
  protected prepareConfig(config: LNTuningConfig): LNTuningConfig {
    if (config.target_modules !== null) return { ...config };
    const modelType = this.model.config.model_type;
    const targets = LN_TUNING_TARGETS[modelType];
    if (!targets)
      throw new ConfigError(
        `Please specify \`target_modules\` in the LN_TUNING config: there is no default for model_type "${modelType}"`,
      );
    return { ...config, target_modules: [...targets] };
  }

  /** A module without a forward of its own (a list of layers) cannot be run in its copy's place. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (typeof (target as unknown as Partial<TensorLayer>).forward !== "function") {
      throw new Error(
        `Target module ${key} (${target.constructor.name}) cannot be LN-tuned: it has no forward; ` +
          `target the normalisation layers themselves`,
      );
    }
  }

  protected createOrUpdate(_config: LNTuningConfig, adapterName: string, target: Module, key: string): void {
    if (target instanceof LNTuningLayer) {
      target.updateLayer(adapterName);
      return;
    }
    const layer = new LNTuningLayer(target as TensorLayer);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName);
    this.model.setSubmodule(key, layer);
  }
}
