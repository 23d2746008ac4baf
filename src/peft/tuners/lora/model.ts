/** LoraModel: LoRA's injection rules (which layers, which rank/alpha per layer, GPT-2's fan_in_fan_out). */
import { Conv1D, Embedding, Linear, type Module } from "../../../nn/index.js";
import { BaseTuner } from "../tuner.js";
import { allLinearTargets, defaultTargets } from "../../targets.js";
import { LORA_TARGETS } from "../../mapping.js";
import { LoraEmbedding, LoraLinear, type LoraSettings } from "./layer.js";
import type { LoraConfig } from "./config.js";

/** HF's get_pattern_key: the rank_pattern/alpha_pattern key matching a module path, if any. */
export function patternKey(keys: readonly string[], modulePath: string): string | null {
  return keys.find((k) => new RegExp(`^(.*\\.)?(${k})$`).test(modulePath)) ?? null;
}

/** LoRA injected into a model. */
export class LoraModel extends BaseTuner<LoraConfig> {
  readonly prefix = "lora_";

  protected prepareConfig(config: LoraConfig): LoraConfig {
    const c: LoraConfig = { ...config };
    if (c.target_modules === null) c.target_modules = defaultTargets(LORA_TARGETS, this.model.config.model_type, "LoRA");
    else if (c.target_modules === "all-linear") c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** Rank, alpha and init of the adapter for one module (rank_pattern / alpha_pattern override r / lora_alpha). */
  protected settingsFor(config: LoraConfig, key: string): LoraSettings {
    const keys = [...Object.keys(config.rank_pattern ?? {}), ...Object.keys(config.alpha_pattern ?? {})];
    const k = patternKey(keys, key);
    return {
      r: (k !== null ? config.rank_pattern?.[k] : undefined) ?? config.r,
      alpha: (k !== null ? config.alpha_pattern?.[k] : undefined) ?? config.lora_alpha,
      dropout: config.lora_dropout,
      initWeights: config.init_lora_weights,
      useRslora: config.use_rslora,
      useDora: config.use_dora,
    };
  }

  protected createOrUpdate(config: LoraConfig, adapterName: string, target: Module, key: string): void {
    const settings = this.settingsFor(config, key);
    if (target instanceof LoraLinear || target instanceof LoraEmbedding) {
      target.updateLayer(adapterName, settings);
      return;
    }
    let layer: LoraLinear | LoraEmbedding;
    if (target instanceof Conv1D) {
      if (!config.fan_in_fan_out) {
        process.emitWarning("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.");
        config.fan_in_fan_out = true;
      }
      layer = new LoraLinear(target, true);
    } else if (target instanceof Linear) {
      if (config.fan_in_fan_out) {
        process.emitWarning("fan_in_fan_out is set to True but the target module is `Linear`. Setting fan_in_fan_out to False.");
        config.fan_in_fan_out = false;
      }
      layer = new LoraLinear(target, false);
    } else if (target instanceof Embedding) {
      layer = new LoraEmbedding(target);
    } else {
      throw new Error(`Target module ${key} (${target.constructor.name}) is not supported. Currently, only Linear, Embedding and GPT-2's Conv1D are supported.`);
    }
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, settings);
    this.model.setSubmodule(key, layer);
  }
}
