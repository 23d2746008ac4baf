/** BoneModel (peft 0.15.2): Bone or Bat blocks injected into Linear targets (LoRA's default targets). */
import type { Linear } from "../../../nn/index.js";
import { LinearTuner } from "../linear-tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makeBoneConfig, type BoneConfig } from "./config.js";
import { BoneLinear } from "./layer.js";

/** Bone injected into a model. */
export class BoneModel extends LinearTuner<BoneConfig, BoneLinear> {
  readonly prefix = "bone_";
  protected readonly methodName = "Bone";
  protected readonly defaultTargets = LORA_TARGETS;
  protected readonly layerClass = BoneLinear;
  protected readonly buildConfig = makeBoneConfig;

  protected makeLayer(base: Linear): BoneLinear {
    return new BoneLinear(base);
  }

  protected addAdapter(layer: BoneLinear, config: BoneConfig, adapterName: string): void {
    layer.updateLayer(adapterName, config.r, config.init_weights);
  }
}
