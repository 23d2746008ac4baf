/** AdaptionPromptConfig (LLaMA-Adapter): peft 0.15's fields, validated. */
import { check, configBuilder, PeftType, type PeftConfig } from "../../config.js";

/** LLaMA-Adapter configuration (HF field names). */
export interface AdaptionPromptConfig extends PeftConfig {
  /** Name of the attention submodules that get adaption prompts ("self_attn" for the LLaMA family when null). */
  target_modules: string | null;
  /** Number of learned prompt tokens per adapted layer. */
  adapter_len: number | null;
  /** Number of adapted layers, counted from the top. */
  adapter_layers: number | null;
}

/** Defaults of every adaption-prompt field (peft 0.15.2: adapter_len and adapter_layers must be given). */
export const ADAPTION_PROMPT_DEFAULTS = { target_modules: null, adapter_len: null, adapter_layers: null } as const;

/**
 * Checks of an adaption-prompt config. adapter_len and adapter_layers may be null in a config (peft's defaults, so
 * that defaults can be listed); a model needs them (`complete`).
 */
export function validateAdaptionPromptFields(c: AdaptionPromptConfig, complete = false): void {
  for (const field of ["adapter_len", "adapter_layers"] as const) {
    const v = c[field];
    if (!complete && (v === null || v === undefined)) continue;
    check(typeof v === "number" && Number.isInteger(v) && v > 0, `ADAPTION_PROMPT: ${field} must be a positive integer, got ${String(v)}`);
  }
  check(c.target_modules === null || typeof c.target_modules === "string", `ADAPTION_PROMPT: target_modules must be the name of the attention submodules (a string such as "self_attn"), got ${JSON.stringify(c.target_modules)}`);
}

/** Build an adaption-prompt config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeAdaptionPromptConfig = configBuilder<AdaptionPromptConfig>(PeftType.ADAPTION_PROMPT, ADAPTION_PROMPT_DEFAULTS, validateAdaptionPromptFields);

/** An adaption-prompt config from user fields (TypeScript users) — defaults filled in, validated. */
export function AdaptionPromptConfig(fields: Partial<AdaptionPromptConfig> = {}): AdaptionPromptConfig {
  return makeAdaptionPromptConfig(fields, false);
}
