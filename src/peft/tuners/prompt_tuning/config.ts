/** PromptTuningConfig: peft 0.15's fields and defaults (plus SAMPLE_VOCAB init from later peft), validated. */
import { check, configBuilder, PeftType, type MethodFields } from "../../config.js";
import { anyObject, field, nullable, oneOf, string } from "../../../io/config-fields.js";
import { PROMPT_LEARNING_FIELDS, PROMPT_LEARNING_FOREIGN, type PromptLearningConfig } from "../prompt-learning.js";

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

/** Every prompt-tuning field (peft 0.15.2, plus SAMPLE_VOCAB). */
export const PROMPT_TUNING_FIELDS: MethodFields<PromptTuningConfig> = {
  ...PROMPT_LEARNING_FIELDS,
  prompt_tuning_init: field<PromptTuningInit>(
    oneOf(...Object.values(PromptTuningInit)),
    "RANDOM",
    "How the virtual-token embeddings start: RANDOM, TEXT (the embeddings of prompt_tuning_init_text) or SAMPLE_VOCAB.",
  ),
  prompt_tuning_init_text: field<string | null>(
    nullable(string),
    null,
    "The text whose token embeddings start the prompt (TEXT init).",
  ),
  tokenizer_name_or_path: field<string | null>(
    nullable(string),
    null,
    "The tokenizer folder that tokenizes prompt_tuning_init_text (TEXT init).",
  ),
  tokenizer_kwargs: field<Record<string, unknown> | null>(
    nullable(anyObject),
    null,
    "Options for that tokenizer (TEXT init only).",
  ),
};

/** peft's PromptTuningConfig.__post_init__ checks that span several fields. */
export function validatePromptTuningFields(c: PromptTuningConfig): void {
  if (c.prompt_tuning_init === PromptTuningInit.TEXT) {
    check(
      !!c.tokenizer_name_or_path,
      `When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be ${String(c.tokenizer_name_or_path)}.`,
    );
    check(
      c.prompt_tuning_init_text !== null,
      `When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be ${String(c.prompt_tuning_init_text)}.`,
    );
  }
  check(
    !(
      c.tokenizer_kwargs &&
      Object.keys(c.tokenizer_kwargs).length > 0 &&
      c.prompt_tuning_init !== PromptTuningInit.TEXT
    ),
    "tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'.",
  );
}

/** Build a prompt-tuning config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makePromptTuningConfig = configBuilder<PromptTuningConfig>(
  PeftType.PROMPT_TUNING,
  PROMPT_TUNING_FIELDS,
  validatePromptTuningFields,
  PROMPT_LEARNING_FOREIGN,
);

/** A prompt-tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function PromptTuningConfig(fields: Partial<PromptTuningConfig> = {}): PromptTuningConfig {
  return makePromptTuningConfig(fields, false);
}
