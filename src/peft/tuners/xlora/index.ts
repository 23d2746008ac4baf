/** X-LoRA: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeXLoraConfig, type XLoraConfig } from "./config.js";
import { XLoraModel } from "./model.js";

export { XLoraConfig, XLORA_DEFAULTS } from "./config.js";
export { XLoraModel } from "./model.js";
export { XLoraClassifier } from "./layer.js";

registerMethod<XLoraConfig>({
  peftType: PeftType.XLORA,
  prefix: "internal_xlora_classifier",
  configFromJson: makeXLoraConfig,
  family: "injected-layers",
  createHost: hostFactory(XLoraModel),
});
