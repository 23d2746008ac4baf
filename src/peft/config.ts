/**
 * PEFT configs: plain objects with the exact snake_case field names of HF's adapter_config.json, so that a config
 * round-trips without a mapping table. Each method extends PeftConfig with its own fields and defaults.
 */

/** PEFT methods (HF string values). */
export const PeftType = {
  LORA: "LORA",
  ADALORA: "ADALORA",
  IA3: "IA3",
  LOHA: "LOHA",
  LOKR: "LOKR",
  PROMPT_TUNING: "PROMPT_TUNING",
  P_TUNING: "P_TUNING",
  PREFIX_TUNING: "PREFIX_TUNING",
  ADAPTION_PROMPT: "ADAPTION_PROMPT",
  MULTITASK_PROMPT_TUNING: "MULTITASK_PROMPT_TUNING",
} as const;
/** A PEFT method name. */
export type PeftType = (typeof PeftType)[keyof typeof PeftType];

/** Task types (HF string values); they select the PeftModel subclass. */
export const TaskType = {
  SEQ_CLS: "SEQ_CLS",
  SEQ_2_SEQ_LM: "SEQ_2_SEQ_LM",
  CAUSAL_LM: "CAUSAL_LM",
  TOKEN_CLS: "TOKEN_CLS",
  QUESTION_ANS: "QUESTION_ANS",
  FEATURE_EXTRACTION: "FEATURE_EXTRACTION",
} as const;
/** A task type name. */
export type TaskType = (typeof TaskType)[keyof typeof TaskType];

/** Fields every PEFT config has. */
export interface PeftConfig {
  peft_type: PeftType;
  task_type: TaskType | null;
  base_model_name_or_path: string | null;
  revision: string | null;
  inference_mode: boolean;
  auto_mapping: Record<string, unknown> | null;
  /** Fields of newer peft releases are kept as they are. */
  [field: string]: unknown;
}

/** The defaults of the common fields. */
export const COMMON_DEFAULTS = {
  task_type: null,
  base_model_name_or_path: null,
  revision: null,
  inference_mode: false,
  auto_mapping: null,
} as const;

/**
 * Build a config from user fields over defaults. `known` lists the method's field names: other fields are kept
 * (configs written by newer peft versions must load) but warned about when `warnUnknown`.
 */
export function makeConfig<C extends PeftConfig>(peftType: PeftType, defaults: Omit<C, "peft_type" | keyof typeof COMMON_DEFAULTS>, fields: Partial<C> | Record<string, unknown>, warnUnknown: boolean): C {
  const known = new Set([...Object.keys(defaults), ...Object.keys(COMMON_DEFAULTS), "peft_type"]);
  const unknown = Object.keys(fields).filter((k) => !known.has(k));
  if (warnUnknown && unknown.length > 0) {
    process.emitWarning(`Unexpected keyword arguments ${JSON.stringify(unknown.sort())} for ${peftType} config; they are kept but ignored (written by a newer peft?)`);
  }
  if (fields["peft_type"] !== undefined && fields["peft_type"] !== peftType) {
    throw new Error(`this is a ${peftType} config but the fields say peft_type "${String(fields["peft_type"])}"`);
  }
  const taskType = fields["task_type"];
  if (taskType !== undefined && taskType !== null && !Object.values(TaskType).includes(taskType as TaskType)) {
    throw new Error(`task_type "${String(taskType)}" is not one of ${Object.values(TaskType).join(", ")}`);
  }
  return { ...COMMON_DEFAULTS, ...structuredClone(defaults), ...fields, peft_type: peftType } as unknown as C;
}

/** A method's config builder (fields, warnUnknown) → config: makeConfig over `defaults`, then the method's checks. */
export function configBuilder<C extends PeftConfig>(peftType: PeftType, defaults: object, validate: (c: C) => void): (fields: Partial<C> | Record<string, unknown>, warnUnknown: boolean) => C {
  return (fields, warnUnknown) => {
    const c = makeConfig<C>(peftType, defaults as Omit<C, "peft_type" | keyof typeof COMMON_DEFAULTS>, fields, warnUnknown);
    validate(c);
    return c;
  };
}

/** Throw a clear config error unless `ok`. */
export function check(ok: boolean, message: string): void {
  if (!ok) throw new Error(message);
}
