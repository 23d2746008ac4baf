/** PrefixTuningConfig (prefix tuning / P-tuning v2): peft 0.15's fields and defaults, validated. */
import { check, configBuilder, PeftType } from "../../config.js";
import { PROMPT_LEARNING_DEFAULTS, validatePromptLearningFields, type PromptLearningConfig } from "../prompt-learning.js";

/** Prefix tuning configuration (HF field names). */
export interface PrefixTuningConfig extends PromptLearningConfig {
  /** Hidden size of the projection MLP (token_dim when null). */
  encoder_hidden_size: number | null;
  /** Embedding → Linear-Tanh-Linear (prefix tuning) instead of a plain Embedding (P-tuning v2). */
  prefix_projection: boolean;
}

/** Defaults of every prefix-tuning field (peft 0.15.2). */
export const PREFIX_TUNING_DEFAULTS = { ...PROMPT_LEARNING_DEFAULTS, encoder_hidden_size: null, prefix_projection: false } as const;

/** Checks of a prefix-tuning config. */
export function validatePrefixTuningFields(c: PrefixTuningConfig): void {
  validatePromptLearningFields(c);
  check(c.encoder_hidden_size === null || (Number.isInteger(c.encoder_hidden_size) && c.encoder_hidden_size > 0), `encoder_hidden_size must be a positive integer or null (token_dim), got ${String(c.encoder_hidden_size)}`);
  check(typeof c.prefix_projection === "boolean", `prefix_projection must be true or false, got ${String(c.prefix_projection)}`);
}

/** Build a prefix-tuning config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makePrefixTuningConfig = configBuilder<PrefixTuningConfig>(PeftType.PREFIX_TUNING, PREFIX_TUNING_DEFAULTS, validatePrefixTuningFields);

/** A prefix-tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function PrefixTuningConfig(fields: Partial<PrefixTuningConfig> = {}): PrefixTuningConfig {
  return makePrefixTuningConfig(fields, false);
}
