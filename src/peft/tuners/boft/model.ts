/**
 * BOFTModel (peft 0.15.2): BOFT layers injected into Linear targets (LoRA's default targets by model type). GPT-2's
 * Conv1D is refused, as peft 0.15.2 refuses it.
 */
import { Linear, type Module } from "../../../nn/index.js";
import { ConfigError } from "../../../errors.js";
import { LinearTuner } from "../linear-tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makeBOFTConfig, type BOFTConfig } from "./config.js";
import { BOFTLinear, type BOFTSettings } from "./layer.js";

/** The layer settings of a BOFT config. */
function settingsOf(c: BOFTConfig): BOFTSettings {
  return { blockSize: c.boft_block_size, blockNum: c.boft_block_num, nButterflyFactor: c.boft_n_butterfly_factor, dropout: c.boft_dropout, initWeights: c.init_weights };
}

/** BOFT injected into a model. */
export class BOFTModel extends LinearTuner<BOFTConfig> {
  readonly prefix = "boft_";
  protected readonly methodName = "BOFT";
  protected readonly defaultTargets = LORA_TARGETS;
  protected readonly ownBias = "boft_only";

  /** Add an adapter (peft's check: a bias setting only with a single adapter); plain config objects get the defaults and checks too. */
  override injectAdapter(fields: BOFTConfig, adapterName: string): BOFTConfig {
    const config = makeBOFTConfig(fields, false);
    if (this.peftConfig.size > 0 && config.bias !== "none") throw new ConfigError("BOFTModel supports only 1 adapter with bias. When using multiple adapters, set bias to 'none' for all adapters.");
    return super.injectAdapter(config, adapterName);
  }

  /** Only Linear layers (or BOFT layers, which get another adapter): peft 0.15.2 refuses GPT-2's Conv1D. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof BOFTLinear || target instanceof Linear) return;
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported. Currently, only \`torch.nn.Linear\` and \`torch.nn.Conv2d\` are supported` +
      ` (peft 0.15.2's BOFT refuses GPT-2's Conv1D too); use LoRA, IA3, VeRA or FourierFT for GPT-2, or target Linear layers.`,
    );
  }

  protected createOrUpdate(config: BOFTConfig, adapterName: string, target: Module, key: string): void {
    if (target instanceof BOFTLinear) {
      target.updateLayer(adapterName, settingsOf(config));
      return;
    }
    if (config.fan_in_fan_out) {
      process.emitWarning("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.");
      config.fan_in_fan_out = false;
    }
    const layer = new BOFTLinear(target as Linear);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, settingsOf(config));
    this.model.setSubmodule(key, layer);
  }
}
