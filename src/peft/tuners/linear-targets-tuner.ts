/**
 * The host of methods that adapt plain Linear layers only (HRA, Bone, Poly in peft 0.15.2): LoRA's default targets
 * per model type, and GPT-2's Conv1D and quantised layers refused with a clear error, as peft refuses them.
 */
import { Conv1D, Linear, QuantizedLinear, type Module } from "../../nn/index.js";
import { ConfigError } from "../../errors.js";
import type { ConfigBuilder, PeftConfig } from "../config.js";
import { LORA_TARGETS } from "../mapping.js";
import { BaseTuner } from "./tuner.js";
import { BaseTunerLayer } from "./tuner-layer.js";

/** The config fields this host reads. */
export type LinearTargetsConfig = PeftConfig & { target_modules: string | string[] | null };

/** The host of methods that adapt plain Linear layers only, with LoRA's default targets per model type. */
export abstract class LinearTargetsTuner<C extends LinearTargetsConfig> extends BaseTuner<C> {
  /** The method's name in errors ("HRA", "Bone", "Poly"). */
  protected abstract readonly methodName: string;
  /** The method's config builder (defaults and checks). */
  protected abstract readonly buildConfig: ConfigBuilder<C>;

  /** Add an adapter; plain config objects (not made by the method's config function) get the defaults and checks too. */
  override injectAdapter(fields: C, adapterName: string): C {
    return super.injectAdapter(this.buildConfig(fields, false), adapterName);
  }

  /** peft's _prepare_adapter_config: LoRA's default targets when target_modules is not given. */
  protected prepareConfig(config: C): C {
    if (config.target_modules !== null) return { ...config };
    const modelType = this.model.config.model_type;
    const targets = LORA_TARGETS[modelType];
    if (!targets)
      throw new ConfigError(
        `Please specify \`target_modules\` in the ${this.methodName} config: there is no default ` +
          `for model_type "${modelType}"`,
      );
    return { ...config, target_modules: [...targets] };
  }

  /** Only plain Linear layers (peft's torch.nn.Linear check; GPT-2's Conv1D and quantised layers are refused). */
  protected override checkTargetModule(key: string, target: Module): void {
    const base = target instanceof BaseTunerLayer ? target.base_layer : target;
    if (base instanceof Linear) return;
    if (base instanceof Conv1D) {
      throw new Error(
        `Target module ${key} is GPT-2's Conv1D, which ${this.methodName} does not support (peft ` +
          `0.15.2 adapts only torch.nn.Linear here); use LoRA or IA3 for GPT-2, or target Linear ` +
          `layers`,
      );
    }
    if (base instanceof QuantizedLinear)
      throw new Error(
        `Target module ${key} is quantised; ${this.methodName} rewrites the full-precision weight and cannot adapt it`,
      );
    throw new Error(
      `Target module ${key} (${base.constructor.name}) is not supported. Currently, only ` +
        `\`torch.nn.Linear\` is supported by ${this.methodName}.`,
    );
  }

  /** A new adapter layer of this method around a Linear. */
  protected abstract makeLayer(base: Linear): BaseTunerLayer;

  /** Add (or re-create) an adapter in one of this method's layers. */
  protected abstract addAdapter(layer: BaseTunerLayer, config: C, adapterName: string): void;

  protected createOrUpdate(config: C, adapterName: string, target: Module, key: string): void {
    if (target instanceof BaseTunerLayer) {
      this.addAdapter(target, config, adapterName);
      return;
    }
    const layer = this.makeLayer(target as Linear);
    layer.activeAdapters = [...this.activeAdapters];
    this.addAdapter(layer, config, adapterName);
    this.model.setSubmodule(key, layer);
  }
}
