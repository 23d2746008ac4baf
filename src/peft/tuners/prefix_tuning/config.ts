/** PrefixTuningConfig (prefix tuning / P-tuning v2): peft 0.15's fields and defaults, validated. */
import { configBuilder, PeftType, type MethodFields } from "../../config.js";
import { bool, field, integer, nullable, type ForeignField } from "../../../io/config-fields.js";
import { PROMPT_LEARNING_FIELDS, PROMPT_LEARNING_FOREIGN, type PromptLearningConfig } from "../prompt-learning.js";

/** Prefix tuning configuration (HF field names). */
export interface PrefixTuningConfig extends PromptLearningConfig {
  /** Hidden size of the projection MLP (token_dim when null). */
  encoder_hidden_size: number | null;
  /** Embedding → Linear-Tanh-Linear (prefix tuning) instead of a plain Embedding (P-tuning v2). */
  prefix_projection: boolean;
}

/** Every prefix-tuning field (peft 0.15.2). */
export const PREFIX_TUNING_FIELDS: MethodFields<PrefixTuningConfig> = {
  ...PROMPT_LEARNING_FIELDS,
  encoder_hidden_size: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "Hidden size of the projection MLP; null: token_dim.",
  ),
  prefix_projection: field(
    bool,
    false,
    "Embedding → Linear-Tanh-Linear (prefix tuning) instead of a plain Embedding (P-tuning v2).",
  ),
};

/** Fields of other peft versions that prefix tuning here does not implement. */
const PREFIX_TUNING_FOREIGN: Record<string, ForeignField> = {
  ...PROMPT_LEARNING_FOREIGN,
  init_weights: { versions: "≥ 0.19", default: null },
  postprocess_past_key_value_function: { versions: "0.0.1–0.0.2", default: null },
};

/** Build a prefix-tuning config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makePrefixTuningConfig = configBuilder<PrefixTuningConfig>(
  PeftType.PREFIX_TUNING,
  PREFIX_TUNING_FIELDS,
  () => {},
  PREFIX_TUNING_FOREIGN,
);

/** A prefix-tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function PrefixTuningConfig(fields: Partial<PrefixTuningConfig> = {}): PrefixTuningConfig {
  return makePrefixTuningConfig(fields, false);
}
