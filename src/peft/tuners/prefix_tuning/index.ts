/** Prefix tuning: registration of the method and its public names. */
import { makeConfig, PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { PREFIX_TUNING_DEFAULTS, validatePrefixTuningFields, type PrefixTuningConfig } from "./config.js";
import { PrefixEncoder } from "./model.js";

export { PrefixTuningConfig } from "./config.js";
export { PrefixEncoder } from "./model.js";

registerMethod<PrefixTuningConfig>({
  kind: "prompt",
  peftType: PeftType.PREFIX_TUNING,
  prefix: "prompt_encoder",
  configFromJson(fields) {
    const c = makeConfig<PrefixTuningConfig>(PeftType.PREFIX_TUNING, PREFIX_TUNING_DEFAULTS as unknown as Omit<PrefixTuningConfig, "peft_type">, fields, true);
    validatePrefixTuningFields(c);
    return c;
  },
  createPromptEncoder: (config) => new PrefixEncoder(config),
});
