/** LLaMA-Adapter (adaption prompt): registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeAdaptionPromptConfig, type AdaptionPromptConfig } from "./config.js";
import { AdaptionPromptModel } from "./model.js";

export { AdaptionPromptConfig } from "./config.js";
export { AdaptionPromptModel } from "./model.js";
export { AdaptedAttention } from "./layer.js";

registerMethod<AdaptionPromptConfig>({
  peftType: PeftType.ADAPTION_PROMPT,
  prefix: "adaption_",
  configFromJson: makeAdaptionPromptConfig,
  family: "injected-layers",
  createHost: hostFactory(AdaptionPromptModel),
});
