/** LoRA: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeLoraConfig, type LoraConfig } from "./config.js";
import { LoraModel } from "./model.js";

export { LoraConfig } from "./config.js";
export { LoraModel } from "./model.js";
export { LoraLayer, LoraLinear, LoraEmbedding } from "./layer.js";
export { DoraLayer, DoraLinearVariant, plainLora } from "./variants.js";
export type { LoraVariant } from "./variants.js";
export { LORA_DISPATCHERS, dispatchLinear, dispatchEmbedding } from "./dispatch.js";
export type { LoraDispatcher } from "./dispatch.js";
export { hotswapAdapter, hotswapAdapterFromStateDict, checkHotswapConfigsCompatible } from "./hotswap.js";

registerMethod<LoraConfig>({
  peftType: PeftType.LORA,
  prefix: "lora_",
  configFromJson: makeLoraConfig,
  family: "injected-layers",
  createHost: hostFactory(LoraModel),
  // DoRA's magnitude is a module holding "weight" in the model but a bare tensor in the file (as in peft).
  renameOnSave: (key, adapter) =>
    key.endsWith(`lora_magnitude_vector.${adapter}.weight`) ? key.slice(0, -".weight".length) : key,
  // trainable_token_indices' rows: "<embedding>.token_adapter.trainable_tokens_delta" in the file.
  renameOnLoad: (key, adapter) =>
    key.endsWith(`lora_magnitude_vector.${adapter}`)
      ? `${key}.weight`
      : key.endsWith("token_adapter.trainable_tokens_delta")
        ? `${key}.${adapter}`
        : key,
});
