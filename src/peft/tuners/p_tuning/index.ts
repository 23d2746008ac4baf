/** P-tuning: registration of the method and its public names. */
import { makeConfig, PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { PROMPT_ENCODER_DEFAULTS, validatePromptEncoderFields, type PromptEncoderConfig } from "./config.js";
import { PromptEncoder } from "./model.js";

export { PromptEncoderConfig, PromptEncoderReparameterizationType } from "./config.js";
export { PromptEncoder } from "./model.js";

registerMethod<PromptEncoderConfig>({
  kind: "prompt",
  peftType: PeftType.P_TUNING,
  prefix: "prompt_encoder",
  configFromJson(fields) {
    const c = makeConfig<PromptEncoderConfig>(PeftType.P_TUNING, PROMPT_ENCODER_DEFAULTS as unknown as Omit<PromptEncoderConfig, "peft_type">, fields, true);
    validatePromptEncoderFields(c);
    return c;
  },
  createPromptEncoder: (config) => new PromptEncoder(config),
});
