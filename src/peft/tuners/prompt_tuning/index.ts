/** Prompt tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { PromptLearningModel } from "../prompt-learning.js";
import { makePromptTuningConfig, type PromptTuningConfig } from "./config.js";
import { PromptEmbedding } from "./model.js";

export { PromptTuningConfig, PromptTuningInit } from "./config.js";
export { PromptEmbedding } from "./model.js";

registerMethod<PromptTuningConfig>({
  family: "virtual-tokens",
  createHost: hostFactory(PromptLearningModel),
  peftType: PeftType.PROMPT_TUNING,
  prefix: "prompt_encoder",
  configFromJson: makePromptTuningConfig,
  createPromptEncoder: (config, { wordEmbeddings }) => new PromptEmbedding(config, wordEmbeddings),
});
