/** OFT: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeOFTConfig, type OFTConfig } from "./config.js";
import { OFTModel } from "./model.js";

export { OFTConfig, OFT_DEFAULTS } from "./config.js";
export { OFTModel } from "./model.js";
export { OFTLinear, cayley, rotateColumns, nearestDivisor } from "./layer.js";

registerMethod<OFTConfig>({
  peftType: PeftType.OFT,
  prefix: "oft_",
  configFromJson: makeOFTConfig,
  family: "injected-layers",
  createHost: hostFactory(OFTModel),
});
