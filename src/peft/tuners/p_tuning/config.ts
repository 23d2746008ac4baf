/** PromptEncoderConfig (P-tuning): peft 0.15's fields and defaults, validated. */
import { check, configBuilder, PeftType } from "../../config.js";
import { PROMPT_LEARNING_DEFAULTS, validatePromptLearningFields, type PromptLearningConfig } from "../prompt-learning.js";

/** The prompt encoder's network (HF's PromptEncoderReparameterizationType). */
export const PromptEncoderReparameterizationType = {
  /** Linear-ReLU-Linear-ReLU-Linear. */
  MLP: "MLP",
  /** Bidirectional LSTM, then Linear-ReLU-Linear. */
  LSTM: "LSTM",
} as const;
/** A P-tuning encoder type. */
export type PromptEncoderReparameterizationType = (typeof PromptEncoderReparameterizationType)[keyof typeof PromptEncoderReparameterizationType];

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

/** Defaults of every P-tuning field (peft 0.15.2). */
export const PROMPT_ENCODER_DEFAULTS = {
  ...PROMPT_LEARNING_DEFAULTS,
  encoder_reparameterization_type: "MLP",
  encoder_hidden_size: null,
  encoder_num_layers: 2,
  encoder_dropout: 0.0,
} as const;

/** Checks of a P-tuning config. */
export function validatePromptEncoderFields(c: PromptEncoderConfig): void {
  validatePromptLearningFields(c);
  check(Object.values(PromptEncoderReparameterizationType).includes(c.encoder_reparameterization_type), `Prompt encoder type not recognized: "${String(c.encoder_reparameterization_type)}". Please use one of MLP (recommended) or LSTM.`);
  check(c.encoder_hidden_size === null || (Number.isInteger(c.encoder_hidden_size) && c.encoder_hidden_size > 0), `encoder_hidden_size must be a positive integer or null (token_dim), got ${String(c.encoder_hidden_size)}`);
  check(Number.isInteger(c.encoder_num_layers) && c.encoder_num_layers > 0, `encoder_num_layers must be a positive integer, got ${String(c.encoder_num_layers)}`);
  check(c.encoder_dropout >= 0 && c.encoder_dropout < 1, `encoder_dropout must be in [0, 1), got ${c.encoder_dropout}`);
}

/** Build a P-tuning config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makePromptEncoderConfig = configBuilder<PromptEncoderConfig>(PeftType.P_TUNING, PROMPT_ENCODER_DEFAULTS, validatePromptEncoderFields);

/** A P-tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function PromptEncoderConfig(fields: Partial<PromptEncoderConfig> = {}): PromptEncoderConfig {
  return makePromptEncoderConfig(fields, false);
}
