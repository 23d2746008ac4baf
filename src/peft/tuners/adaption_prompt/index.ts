/** LLaMA-Adapter (adaption prompt): registration of the method and its public names. */
import { makeConfig, PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { ADAPTION_PROMPT_DEFAULTS, validateAdaptionPromptFields, type AdaptionPromptConfig } from "./config.js";
import { AdaptionPromptModel } from "./model.js";

export { AdaptionPromptConfig } from "./config.js";
export { AdaptionPromptModel } from "./model.js";
export { AdaptedAttention } from "./layer.js";

registerMethod<AdaptionPromptConfig>({
  peftType: PeftType.ADAPTION_PROMPT,
  prefix: "adaption_",
  configFromJson(fields) {
    const c = makeConfig<AdaptionPromptConfig>(PeftType.ADAPTION_PROMPT, ADAPTION_PROMPT_DEFAULTS as unknown as Omit<AdaptionPromptConfig, "peft_type">, fields, true);
    validateAdaptionPromptFields(c);
    return c;
  },
  createTuner(model, config, adapterName) {
    const tuner = new AdaptionPromptModel(model);
    tuner.injectAdapter(config, adapterName);
    return tuner;
  },
});
