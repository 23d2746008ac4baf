/** VeRA: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeVeraConfig, type VeraConfig } from "./config.js";
import { VeraModel, projectionKeyOnLoad } from "./model.js";

export { VeraConfig, VERA_DEFAULTS } from "./config.js";
export { VeraModel } from "./model.js";
export { VeraLinear } from "./layer.js";

registerMethod<VeraConfig>({
  peftType: PeftType.VERA,
  prefix: "vera_lambda_",
  configFromJson: makeVeraConfig,
  family: "injected-layers",
  createHost: hostFactory(VeraModel),
  renameOnLoad: projectionKeyOnLoad,
});
