/**
 * OFTModel (peft 0.15.2): OFT layers injected into Linear targets (LoRA's default targets by model type). GPT-2's
 * Conv1D is refused, as peft 0.15.2 refuses it. OrthogonalTuner is what OFT and BOFT share.
 */
import type { Linear } from "../../../nn/index.js";
import { LinearTuner, type LinearTunerConfig } from "../linear-tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makeOFTConfig, type OFTConfig } from "./config.js";
import { OFTLinear, type OrthogonalLayer, type OFTSettings } from "./layer.js";

/** A rotation method's layer: built around a Linear, given an adapter by its settings. */
interface RotationLayer<S> extends OrthogonalLayer {
  updateLayer(name: string, settings: S): void;
}

/** OFT and BOFT injected into a model: Linear targets only (peft 0.15.2 refuses GPT-2's Conv1D), LoRA's default targets. */
export abstract class OrthogonalTuner<
  C extends LinearTunerConfig & { fan_in_fan_out: boolean },
  S,
  L extends RotationLayer<S>,
> extends LinearTuner<C, L> {
  protected readonly defaultTargets = LORA_TARGETS;
  /** The layer settings of a config. */
  protected abstract settingsOf(config: C): S;

  protected addAdapter(layer: L, config: C, adapterName: string): void {
    layer.updateLayer(adapterName, this.settingsOf(config));
  }
}

/** OFT injected into a model. */
export class OFTModel extends OrthogonalTuner<OFTConfig, OFTSettings, OFTLinear> {
  readonly prefix = "oft_";
  protected readonly methodName = "OFT";
  protected override readonly ownBias = "oft_only";
  protected readonly buildConfig = makeOFTConfig;
  protected readonly layerClass = OFTLinear;

  protected makeLayer(base: Linear): OFTLinear {
    return new OFTLinear(base);
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
