/** Prefix tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { makePrefixTuningConfig, type PrefixTuningConfig } from "./config.js";
import { PrefixEncoder } from "./model.js";

export { PrefixTuningConfig } from "./config.js";
export { PrefixEncoder } from "./model.js";

registerMethod<PrefixTuningConfig>({
  kind: "prompt",
  peftType: PeftType.PREFIX_TUNING,
  prefix: "prompt_encoder",
  configFromJson: makePrefixTuningConfig,
  createPromptEncoder: (config) => new PrefixEncoder(config),
});
