/** PromptEncoderConfig (P-tuning): peft 0.15's fields and defaults, validated. */
import { configBuilder, PeftType, type MethodFields } from "../../config.js";
import { field, integer, nullable, number, oneOf } from "../../../io/config-fields.js";
import { PROMPT_LEARNING_FIELDS, PROMPT_LEARNING_FOREIGN, type PromptLearningConfig } from "../prompt-learning.js";

/** The prompt encoder's network (HF's PromptEncoderReparameterizationType). */
export const PromptEncoderReparameterizationType = {
  /** Linear-ReLU-Linear-ReLU-Linear. */
  MLP: "MLP",
  /** Bidirectional LSTM, then Linear-ReLU-Linear. */
  LSTM: "LSTM",
} as const;
/** A P-tuning encoder type. */
export type PromptEncoderReparameterizationType =
  (typeof PromptEncoderReparameterizationType)[keyof typeof PromptEncoderReparameterizationType];

/** P-tuning configuration (HF field names). */
export interface PromptEncoderConfig extends PromptLearningConfig {
  encoder_reparameterization_type: PromptEncoderReparameterizationType;
  /** Hidden size of the encoder network (token_dim when null). */
  encoder_hidden_size: number | null;
  /** LSTM layers (the MLP always has 3 linear layers). */
  encoder_num_layers: number;
  /** Dropout between LSTM layers. */
  encoder_dropout: number;
}

/** Every P-tuning field (peft 0.15.2). */
export const PROMPT_ENCODER_FIELDS: MethodFields<PromptEncoderConfig> = {
  ...PROMPT_LEARNING_FIELDS,
  encoder_reparameterization_type: field<PromptEncoderReparameterizationType>(
    oneOf(...Object.values(PromptEncoderReparameterizationType)),
    "MLP",
    "The prompt encoder's network: MLP (recommended) or LSTM.",
  ),
  encoder_hidden_size: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "Hidden size of the encoder network; null: token_dim.",
  ),
  encoder_num_layers: field(integer({ min: 1 }), 2, "LSTM layers (the MLP always has 3 linear layers)."),
  encoder_dropout: field(number({ min: 0, below: 1 }), 0, "Dropout between LSTM layers."),
};

/** Build a P-tuning config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makePromptEncoderConfig = configBuilder<PromptEncoderConfig>(
  PeftType.P_TUNING,
  PROMPT_ENCODER_FIELDS,
  () => {},
  PROMPT_LEARNING_FOREIGN,
);

/** A P-tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function PromptEncoderConfig(fields: Partial<PromptEncoderConfig> = {}): PromptEncoderConfig {
  return makePromptEncoderConfig(fields, false);
}
