/**
 * The dispatcher list (peft's dispatch_default and friends): each entry says "I can wrap this module kind" and
 * builds the LoRA layer for it. LoraModel tries them in order; adding a module kind (a 4-bit Linear, a fused
 * qkv_proj) means adding an entry here, not editing a switch.
 */
import { Conv1D, Embedding, Linear, QuantizedLinear, type Module } from "../../../nn/index.js";
import { fanInFanOutFor } from "../tuner.js";
import type { LoraConfig } from "./config.js";
import { LoraEmbedding, LoraLinear, type LoraLayer } from "./layer.js";

/** A LoRA layer around `target` (at path `key`) without adapters yet, or null when the module kind is not this entry's. */
export type LoraDispatcher = (target: Module, config: LoraConfig, key: string) => LoraLayer | null;

/** Linear ([out, in] weight) and GPT-2's Conv1D ([in, out] weight, which forces fan_in_fan_out). */
export const dispatchLinear: LoraDispatcher = (target, config) =>
  target instanceof Linear || target instanceof Conv1D ? new LoraLinear(target, fanInFanOutFor(config, target)) : null;

/** bitsandbytes' Linear4bit / Linear8bitLt (peft's dispatch_bnb_4bit / dispatch_bnb_8bit): merging re-quantises. */
export const dispatchQuantized: LoraDispatcher = (target) =>
  target instanceof QuantizedLinear ? new LoraLinear(target, false) : null;

/** Token embeddings. */
export const dispatchEmbedding: LoraDispatcher = (target) =>
  target instanceof Embedding ? new LoraEmbedding(target) : null;

/** The module kinds LoRA adapts, tried in order. */
export const LORA_DISPATCHERS: LoraDispatcher[] = [dispatchLinear, dispatchQuantized, dispatchEmbedding];

/** The LoRA layer for a target module, or an error naming the supported kinds. */
export function dispatchLora(target: Module, config: LoraConfig, key: string): LoraLayer {
  for (const dispatch of LORA_DISPATCHERS) {
    const layer = dispatch(target, config, key);
    if (layer) return layer;
  }
  throw new Error(
    `Target module ${key} (${target.constructor.name}) is not supported. Currently, only ` +
      `Linear, Embedding and GPT-2's Conv1D are supported.`,
  );
}
