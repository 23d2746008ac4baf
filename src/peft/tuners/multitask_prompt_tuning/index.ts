/** Multitask prompt tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { PromptLearningModel } from "../prompt-learning.js";
import { makeMultitaskPromptTuningConfig, type MultitaskPromptTuningConfig } from "./config.js";
import { MultitaskPromptEmbedding } from "./model.js";

export { MultitaskPromptTuningConfig, MultitaskPromptTuningInit } from "./config.js";
export { MultitaskPromptEmbedding } from "./model.js";

registerMethod<MultitaskPromptTuningConfig>({
  family: "virtual-tokens",
  createHost: hostFactory(PromptLearningModel),
  peftType: PeftType.MULTITASK_PROMPT_TUNING,
  prefix: "prompt_encoder",
  configFromJson: makeMultitaskPromptTuningConfig,
  createPromptEncoder: (config, { wordEmbeddings }) => new MultitaskPromptEmbedding(config, wordEmbeddings),
});
