/** MultitaskPromptTuningConfig: peft 0.15.2's fields and defaults (prompt tuning's, plus the task factors and source inits). */
import { check, configBuilder, PeftType, type MethodFields } from "../../config.js";
import { field, integer, nullable, oneOf, string } from "../../../io/config-fields.js";
import { PROMPT_LEARNING_FOREIGN, type PromptLearningConfig } from "../prompt-learning.js";
import { PROMPT_TUNING_FIELDS, validatePromptTuningFields, type PromptTuningConfig } from "../prompt_tuning/config.js";

/** How a multitask prompt starts (peft's MultitaskPromptTuningInit). */
export const MultitaskPromptTuningInit = {
  TEXT: "TEXT",
  RANDOM: "RANDOM",
  /** The source's shared prompt, and its task factors averaged over the source tasks. */
  AVERAGE_SOURCE_TASKS: "AVERAGE_SOURCE_TASKS",
  /** The source's shared prompt, and the task factors of source task prompt_tuning_init_task. */
  EXACT_SOURCE_TASK: "EXACT_SOURCE_TASK",
  /** The source's shared prompt only; the task factors start random. */
  ONLY_SOURCE_SHARED: "ONLY_SOURCE_SHARED",
} as const;
/** A multitask prompt tuning initialisation. */
export type MultitaskPromptTuningInit = (typeof MultitaskPromptTuningInit)[keyof typeof MultitaskPromptTuningInit];

/** The inits that read a source adapter. */
export const SOURCE_INITS: readonly string[] = ["AVERAGE_SOURCE_TASKS", "EXACT_SOURCE_TASK", "ONLY_SOURCE_SHARED"];

/** Multitask prompt tuning configuration (HF field names). */
export interface MultitaskPromptTuningConfig extends PromptLearningConfig {
  prompt_tuning_init: MultitaskPromptTuningInit;
  prompt_tuning_init_text: string | null;
  tokenizer_name_or_path: string | null;
  tokenizer_kwargs: Record<string, unknown> | null;
  /** The source adapter's adapter_model.safetensors (source inits). */
  prompt_tuning_init_state_dict_path: string | null;
  /** The source task EXACT_SOURCE_TASK starts from. */
  prompt_tuning_init_task: number | null;
  /** Rank of each task's factor cols·rows. */
  num_ranks: number | null;
  num_tasks: number | null;
}

/** Every MultitaskPromptTuning field (peft 0.15.2). */
export const MULTITASK_PROMPT_TUNING_FIELDS: MethodFields<MultitaskPromptTuningConfig> = {
  ...PROMPT_TUNING_FIELDS,
  prompt_tuning_init: field<MultitaskPromptTuningInit>(
    oneOf(...Object.values(MultitaskPromptTuningInit)),
    "RANDOM",
    "How the prompt starts: TEXT, RANDOM, or from a source adapter (AVERAGE_SOURCE_TASKS, " +
      "EXACT_SOURCE_TASK, ONLY_SOURCE_SHARED).",
  ),
  prompt_tuning_init_state_dict_path: field<string | null>(
    nullable(string),
    null,
    "The source adapter's adapter_model.safetensors (source inits).",
  ),
  prompt_tuning_init_task: field<number | null>(
    nullable(integer({ min: 0 })),
    0,
    "The source task EXACT_SOURCE_TASK starts from.",
  ),
  num_ranks: field<number | null>(nullable(integer({ min: 1 })), 1, "Rank of each task's prompt factor."),
  num_tasks: field<number | null>(nullable(integer({ min: 1 })), 1, "Number of tasks."),
};

/** Prompt tuning's checks, and a source path for the source inits (peft checks it when the encoder is built). */
function validateMultitaskFields(c: MultitaskPromptTuningConfig): void {
  validatePromptTuningFields(c as unknown as PromptTuningConfig);
  check(
    !SOURCE_INITS.includes(c.prompt_tuning_init) || c.prompt_tuning_init_state_dict_path !== null,
    `prompt_tuning_init_state_dict_path needs to be specified with ${c.prompt_tuning_init} init method`,
  );
}

/** Build a multitask prompt tuning config from fields over the defaults. */
export const makeMultitaskPromptTuningConfig = configBuilder<MultitaskPromptTuningConfig>(
  PeftType.MULTITASK_PROMPT_TUNING,
  MULTITASK_PROMPT_TUNING_FIELDS,
  validateMultitaskFields,
  PROMPT_LEARNING_FOREIGN,
);

/** A multitask prompt tuning config from user fields — defaults filled in, validated. */
export function MultitaskPromptTuningConfig(
  fields: Partial<MultitaskPromptTuningConfig> = {},
): MultitaskPromptTuningConfig {
  return makeMultitaskPromptTuningConfig(fields, false);
}
