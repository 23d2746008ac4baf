/**
 * OFTModel (peft 0.15.2): OFT layers injected into Linear targets (LoRA's default targets by model type). GPT-2's
 * Conv1D is refused, as peft 0.15.2 refuses it. OrthogonalTuner is what OFT and BOFT share.
 */
import { Linear, type Module } from "../../../nn/index.js";
import { LinearTuner } from "../linear-tuner.js";
import type { TunerConfig } from "../tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makeOFTConfig, type OFTConfig } from "./config.js";
import { OFTLinear, type OrthogonalLayer, type OFTSettings } from "./layer.js";

/** A rotation method's layer: built around a Linear, given an adapter by its settings. */
interface RotationLayer<S> extends OrthogonalLayer {
  updateLayer(name: string, settings: S): void;
}

/** OFT and BOFT injected into a model: Linear targets only (peft 0.15.2 refuses GPT-2's Conv1D), LoRA's default targets. */
export abstract class OrthogonalTuner<
  C extends TunerConfig & { target_modules: string | string[] | null; fan_in_fan_out: boolean },
  S,
> extends LinearTuner<C> {
  protected readonly defaultTargets = LORA_TARGETS;
  /** This method's layer class. */
  protected abstract readonly layerClass: new (
    base: Linear,
  ) => RotationLayer<S>;
  /** The layer settings of a config. */
  protected abstract settingsOf(config: C): S;

  /** Only Linear layers (or this method's layers, which get another adapter). */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof this.layerClass || target instanceof Linear) return;
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported. Currently, only ` +
        `\`torch.nn.Linear\` and \`torch.nn.Conv2d\` are supported` +
        ` (peft 0.15.2's ${this.methodName} refuses GPT-2's Conv1D too); use LoRA, IA3, VeRA or ` +
        `FourierFT for GPT-2, or target Linear layers.`,
    );
  }

  protected createOrUpdate(config: C, adapterName: string, target: Module, key: string): void {
    if (target instanceof this.layerClass) {
      target.updateLayer(adapterName, this.settingsOf(config));
      return;
    }
    if (config.fan_in_fan_out) {
      process.emitWarning(
        "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.",
      );
      config.fan_in_fan_out = false;
    }
    const layer = new this.layerClass(target as Linear);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, this.settingsOf(config));
    this.model.setSubmodule(key, layer);
  }
}

/** OFT injected into a model. */
export class OFTModel extends OrthogonalTuner<OFTConfig, OFTSettings> {
  readonly prefix = "oft_";
  protected readonly methodName = "OFT";
  protected readonly ownBias = "oft_only";
  protected readonly layerClass = OFTLinear;

  /** Add an adapter; plain config objects (not made by OFTConfig()) get the defaults and checks too. */
  override injectAdapter(fields: OFTConfig, adapterName: string): OFTConfig {
    return super.injectAdapter(makeOFTConfig(fields, false), adapterName);
  }

  protected settingsOf(c: OFTConfig): OFTSettings {
    return {
      r: c.r,
      blockSize: c.oft_block_size,
      moduleDropout: c.module_dropout,
      coft: c.coft,
      eps: c.eps,
      blockShare: c.block_share,
      initWeights: c.init_weights,
    };
  }
}
