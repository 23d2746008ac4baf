/** (IA)³: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeIA3Config, type IA3Config } from "./config.js";
import { IA3Model } from "./model.js";

export { IA3Config, IA3_DEFAULTS } from "./config.js";
export { IA3Model, isFeedforwardModule } from "./model.js";
export { IA3Linear } from "./layer.js";

registerMethod<IA3Config>({
  peftType: PeftType.IA3,
  prefix: "ia3_",
  configFromJson: makeIA3Config,
  family: "injected-layers",
  createHost: hostFactory(IA3Model),
});
