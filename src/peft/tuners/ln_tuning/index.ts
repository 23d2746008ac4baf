/** LN tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeLNTuningConfig, type LNTuningConfig } from "./config.js";
import { LNTuningModel } from "./model.js";

export { LNTuningConfig, LN_TUNING_DEFAULTS } from "./config.js";
export { LNTuningModel } from "./model.js";
export { LNTuningLayer } from "./layer.js";

registerMethod<LNTuningConfig>({
  peftType: PeftType.LN_TUNING,
  prefix: "ln_tuning_",
  configFromJson: makeLNTuningConfig,
  family: "injected-layers",
  createHost: hostFactory(LNTuningModel),
});
