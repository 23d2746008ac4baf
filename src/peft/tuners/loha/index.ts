/** LoHa: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeLoHaConfig, type LoHaConfig } from "./config.js";
import { LoHaModel } from "./model.js";

export { LoHaConfig, LOHA_DEFAULTS } from "./config.js";
export { LoHaModel } from "./model.js";
export { LoHaLinear } from "./layer.js";

registerMethod<LoHaConfig>({
  peftType: PeftType.LOHA,
  prefix: "hada_",
  configFromJson: makeLoHaConfig,
  family: "injected-layers",
  createHost: hostFactory(LoHaModel),
});
