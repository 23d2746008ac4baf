/** HRA (Householder reflection adaptation): registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeHRAConfig, type HRAConfig } from "./config.js";
import { HRAModel } from "./model.js";

export { HRAConfig, HRA_DEFAULTS } from "./config.js";
export { HRAModel } from "./model.js";
export { HRALinear } from "./layer.js";

registerMethod<HRAConfig>({
  peftType: PeftType.HRA,
  prefix: "hra_",
  configFromJson: makeHRAConfig,
  family: "injected-layers",
  createHost: hostFactory(HRAModel),
});
