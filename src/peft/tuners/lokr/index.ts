/** LoKr: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeLoKrConfig, type LoKrConfig } from "./config.js";
import { LoKrModel } from "./model.js";

export { LoKrConfig, LOKR_DEFAULTS } from "./config.js";
export { LoKrModel } from "./model.js";
export { LoKrLinear, factorization, kron, lokrShape } from "./layer.js";
export type { LoKrShape, LoKrSettings } from "./layer.js";

registerMethod<LoKrConfig>({
  peftType: PeftType.LOKR,
  prefix: "lokr_",
  configFromJson: makeLoKrConfig,
  family: "injected-layers",
  createHost: hostFactory(LoKrModel),
});
