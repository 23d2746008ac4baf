/** Prefix tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { PromptLearningModel } from "../prompt-learning.js";
import { makePrefixTuningConfig, type PrefixTuningConfig } from "./config.js";
import { PrefixEncoder } from "./model.js";

export { PrefixTuningConfig } from "./config.js";
export { PrefixEncoder } from "./model.js";

registerMethod<PrefixTuningConfig>({
  family: "virtual-tokens",
  createHost: hostFactory(PromptLearningModel),
  peftType: PeftType.PREFIX_TUNING,
  prefix: "prompt_encoder",
  configFromJson: makePrefixTuningConfig,
  createPromptEncoder: (config) => new PrefixEncoder(config),
});
