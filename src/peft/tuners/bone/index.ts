/** Bone (block-affine adaptation, and Bat): registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeBoneConfig, type BoneConfig } from "./config.js";
import { BoneModel } from "./model.js";

export { BoneConfig, BONE_DEFAULTS } from "./config.js";
export { BoneModel } from "./model.js";
export { BoneLinear } from "./layer.js";

registerMethod<BoneConfig>({
  peftType: PeftType.BONE,
  prefix: "bone_",
  configFromJson: makeBoneConfig,
  family: "injected-layers",
  createHost: hostFactory(BoneModel),
});
