/** Prompt tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { makePromptTuningConfig, type PromptTuningConfig } from "./config.js";
import { PromptEmbedding } from "./model.js";

export { PromptTuningConfig, PromptTuningInit } from "./config.js";
export { PromptEmbedding } from "./model.js";

registerMethod<PromptTuningConfig>({
  kind: "prompt",
  peftType: PeftType.PROMPT_TUNING,
  prefix: "prompt_encoder",
  configFromJson: makePromptTuningConfig,
  createPromptEncoder: (config, { wordEmbeddings }) => new PromptEmbedding(config, wordEmbeddings),
});
