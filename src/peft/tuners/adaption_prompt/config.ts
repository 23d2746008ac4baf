/** AdaptionPromptConfig (LLaMA-Adapter): peft 0.15's fields, validated. */
import { check, configBuilder, PeftType, type MethodFields, type PeftConfig } from "../../config.js";
import { checkFields, field, integer, nullable, string } from "../../../io/config-fields.js";

/** LLaMA-Adapter configuration (HF field names). */
export interface AdaptionPromptConfig extends PeftConfig {
  /** Name of the attention submodules that get adaption prompts ("self_attn" for the LLaMA family when null). */
  target_modules: string | null;
  /** Number of learned prompt tokens per adapted layer. */
  adapter_len: number | null;
  /** Number of adapted layers, counted from the top. */
  adapter_layers: number | null;
}

/** Every adaption-prompt field (peft 0.15.2: adapter_len and adapter_layers must be given before use). */
export const ADAPTION_PROMPT_FIELDS: MethodFields<AdaptionPromptConfig> = {
  target_modules: field<string | null>(
    nullable(string),
    null,
    'The name of the attention submodules that get adaption prompts; null: "self_attn" (LLaMA family).',
  ),
  adapter_len: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "The number of learned prompt tokens per adapted layer (required).",
  ),
  adapter_layers: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "The number of adapted layers, counted from the top (required).",
  ),
};

/**
 * The checks of an adaption-prompt config given as a plain object. adapter_len and adapter_layers may be null in a
 * config (peft's defaults, so that defaults can be listed); a model needs them (`complete`).
 */
export function validateAdaptionPromptFields(c: AdaptionPromptConfig, complete = false): void {
  checkFields("ADAPTION_PROMPT config", ADAPTION_PROMPT_FIELDS, c);
  if (!complete) return;
  for (const name of ["adapter_len", "adapter_layers"] as const) {
    check(
      c[name] !== null && c[name] !== undefined,
      `ADAPTION_PROMPT: ${name} must be a positive integer, got ${String(c[name])}`,
    );
  }
}

/** Build an adaption-prompt config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeAdaptionPromptConfig = configBuilder<AdaptionPromptConfig>(
  PeftType.ADAPTION_PROMPT,
  ADAPTION_PROMPT_FIELDS,
  () => {},
);

/** An adaption-prompt config from user fields (TypeScript users) — defaults filled in, validated. */
export function AdaptionPromptConfig(fields: Partial<AdaptionPromptConfig> = {}): AdaptionPromptConfig {
  return makeAdaptionPromptConfig(fields, false);
}
