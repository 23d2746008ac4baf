/** AdaLoRA: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeAdaLoraConfig, type AdaLoraConfig } from "./config.js";
import { AdaLoraModel } from "./model.js";

export { AdaLoraConfig, ADALORA_DEFAULTS } from "./config.js";
export { AdaLoraModel, ADALORA_TARGETS } from "./model.js";
export { AdaLoraLinear } from "./layer.js";
export { RankAllocator, budgetSchedule } from "./allocator.js";
export type { RankPattern } from "./allocator.js";

registerMethod<AdaLoraConfig>({
  peftType: PeftType.ADALORA,
  prefix: "lora_",
  configFromJson: makeAdaLoraConfig,
  family: "injected-layers",
  createHost: hostFactory(AdaLoraModel),
});
