/** P-tuning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { PromptLearningModel } from "../prompt-learning.js";
import { makePromptEncoderConfig, type PromptEncoderConfig } from "./config.js";
import { PromptEncoder } from "./model.js";

export { PromptEncoderConfig, PromptEncoderReparameterizationType } from "./config.js";
export { PromptEncoder } from "./model.js";

registerMethod<PromptEncoderConfig>({
  family: "virtual-tokens",
  createHost: hostFactory(PromptLearningModel),
  peftType: PeftType.P_TUNING,
  prefix: "prompt_encoder",
  configFromJson: makePromptEncoderConfig,
  createPromptEncoder: (config) => new PromptEncoder(config),
});
