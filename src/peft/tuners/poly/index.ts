/** Poly (Polytropon): registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makePolyConfig, type PolyConfig } from "./config.js";
import { PolyModel } from "./model.js";

export { PolyConfig, POLY_DEFAULTS } from "./config.js";
export { PolyModel } from "./model.js";
export { PolyLinear, PolyRouter } from "./layer.js";

registerMethod<PolyConfig>({
  peftType: PeftType.POLY,
  prefix: "poly_",
  configFromJson: makePolyConfig,
  family: "injected-layers",
  createHost: hostFactory(PolyModel),
});
