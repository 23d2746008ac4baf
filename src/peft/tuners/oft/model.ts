/**
 * OFTModel (peft 0.15.2): OFT layers injected into Linear targets (LoRA's default targets by model type). GPT-2's
 * Conv1D is refused, as peft 0.15.2 refuses it.
 */
import { Linear, type Module } from "../../../nn/index.js";
import { LinearTuner } from "../linear-tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makeOFTConfig, type OFTConfig } from "./config.js";
import { OFTLinear, type OFTSettings } from "./layer.js";

/** The layer settings of an OFT config. */
function settingsOf(c: OFTConfig): OFTSettings {
  return { r: c.r, blockSize: c.oft_block_size, moduleDropout: c.module_dropout, coft: c.coft, eps: c.eps, blockShare: c.block_share, initWeights: c.init_weights };
}

/** OFT injected into a model. */
export class OFTModel extends LinearTuner<OFTConfig> {
  readonly prefix = "oft_";
  protected readonly methodName = "OFT";
  protected readonly defaultTargets = LORA_TARGETS;
  protected readonly ownBias = "oft_only";

  /** Add an adapter; plain config objects (not made by OFTConfig()) get the defaults and checks too. */
  override injectAdapter(fields: OFTConfig, adapterName: string): OFTConfig {
    return super.injectAdapter(makeOFTConfig(fields, false), adapterName);
  }

  /** Only Linear layers (or OFT layers, which get another adapter): peft 0.15.2 refuses GPT-2's Conv1D. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof OFTLinear || target instanceof Linear) return;
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported. Currently, only \`torch.nn.Linear\` and \`torch.nn.Conv2d\` are supported` +
      ` (peft 0.15.2's OFT refuses GPT-2's Conv1D too); use LoRA, IA3, VeRA or FourierFT for GPT-2, or target Linear layers.`,
    );
  }

  protected createOrUpdate(config: OFTConfig, adapterName: string, target: Module, key: string): void {
    if (target instanceof OFTLinear) {
      target.updateLayer(adapterName, settingsOf(config));
      return;
    }
    if (config.fan_in_fan_out) {
      process.emitWarning("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.");
      config.fan_in_fan_out = false;
    }
    const layer = new OFTLinear(target as Linear);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, settingsOf(config));
    this.model.setSubmodule(key, layer);
  }
}
