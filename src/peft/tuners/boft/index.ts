/** BOFT: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeBOFTConfig, type BOFTConfig } from "./config.js";
import { BOFTModel } from "./model.js";

export { BOFTConfig, BOFT_DEFAULTS } from "./config.js";
export { BOFTModel } from "./model.js";
export { BOFTLinear, blockButterflyPerm } from "./layer.js";

registerMethod<BOFTConfig>({
  peftType: PeftType.BOFT,
  prefix: "boft_",
  configFromJson: makeBOFTConfig,
  family: "injected-layers",
  createHost: hostFactory(BOFTModel),
});
