/** Prompt tuning: registration of the method and its public names. */
import { makeConfig, PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { PROMPT_TUNING_DEFAULTS, validatePromptTuningFields, type PromptTuningConfig } from "./config.js";
import { PromptEmbedding } from "./model.js";

export { PromptTuningConfig, PromptTuningInit } from "./config.js";
export { PromptEmbedding } from "./model.js";

registerMethod<PromptTuningConfig>({
  kind: "prompt",
  peftType: PeftType.PROMPT_TUNING,
  prefix: "prompt_encoder",
  configFromJson(fields) {
    const c = makeConfig<PromptTuningConfig>(PeftType.PROMPT_TUNING, PROMPT_TUNING_DEFAULTS as unknown as Omit<PromptTuningConfig, "peft_type">, fields, true);
    validatePromptTuningFields(c);
    return c;
  },
  createPromptEncoder: (config, { wordEmbeddings }) => new PromptEmbedding(config, wordEmbeddings),
});
