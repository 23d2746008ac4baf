/** PromptTuningConfig: peft 0.15's fields and defaults (plus SAMPLE_VOCAB init from later peft), validated. */
import { check, configBuilder, PeftType } from "../../config.js";
import { PROMPT_LEARNING_DEFAULTS, validatePromptLearningFields, type PromptLearningConfig } from "../prompt-learning.js";

/** How the virtual-token embeddings start (HF's PromptTuningInit). */
export const PromptTuningInit = {
  /** N(0, 1), like a fresh torch Embedding. */
  RANDOM: "RANDOM",
  /** The word embeddings of prompt_tuning_init_text's tokens, cut or repeated to the number of virtual tokens. */
  TEXT: "TEXT",
  /** The word embeddings of tokens drawn uniformly from the vocabulary. */
  SAMPLE_VOCAB: "SAMPLE_VOCAB",
} as const;
/** A prompt-tuning initialisation. */
export type PromptTuningInit = (typeof PromptTuningInit)[keyof typeof PromptTuningInit];

/** Prompt tuning configuration (HF field names). */
export interface PromptTuningConfig extends PromptLearningConfig {
  prompt_tuning_init: PromptTuningInit;
  prompt_tuning_init_text: string | null;
  /** Tokenizer folder for TEXT init. */
  tokenizer_name_or_path: string | null;
  /** Options for the tokenizer (transformers' AutoTokenizer keyword arguments, snake_case). */
  tokenizer_kwargs: Record<string, unknown> | null;
}

/** Defaults of every prompt-tuning field (peft 0.15.2). */
export const PROMPT_TUNING_DEFAULTS = {
  ...PROMPT_LEARNING_DEFAULTS,
  prompt_tuning_init: "RANDOM",
  prompt_tuning_init_text: null,
  tokenizer_name_or_path: null,
  tokenizer_kwargs: null,
} as const;

/** peft's PromptTuningConfig.__post_init__ checks. */
export function validatePromptTuningFields(c: PromptTuningConfig): void {
  validatePromptLearningFields(c);
  check(Object.values(PromptTuningInit).includes(c.prompt_tuning_init), `prompt_tuning_init must be one of ${Object.values(PromptTuningInit).join(", ")}, got "${String(c.prompt_tuning_init)}"`);
  if (c.prompt_tuning_init === PromptTuningInit.TEXT) {
    check(!!c.tokenizer_name_or_path, `When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be ${String(c.tokenizer_name_or_path)}.`);
    check(c.prompt_tuning_init_text !== null && c.prompt_tuning_init_text !== undefined, `When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be ${String(c.prompt_tuning_init_text)}.`);
  }
  check(!(c.tokenizer_kwargs && Object.keys(c.tokenizer_kwargs).length > 0 && c.prompt_tuning_init !== PromptTuningInit.TEXT), "tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'.");
}

/** Build a prompt-tuning config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makePromptTuningConfig = configBuilder<PromptTuningConfig>(PeftType.PROMPT_TUNING, PROMPT_TUNING_DEFAULTS, validatePromptTuningFields);

/** A prompt-tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function PromptTuningConfig(fields: Partial<PromptTuningConfig> = {}): PromptTuningConfig {
  return makePromptTuningConfig(fields, false);
}
