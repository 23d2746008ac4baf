/**
 * PEFT configs: plain objects with the exact snake_case field names of HF's adapter_config.json, so that a config
 * round-trips without a mapping table. Each method declares its fields in one table (type, range, default, help) that
 * builds and checks its configs.
 */
import {
  anyObject,
  bool,
  checkFieldNames,
  checkFields,
  defaultsOf,
  either,
  field,
  integer,
  listOf,
  moduleNames,
  nullable,
  oneOf,
  showValue,
  string,
  type FieldSpec,
  type FieldTable,
  type ForeignField,
} from "../io/config-fields.js";
import { ConfigError } from "../errors.js";

/** PEFT methods (HF string values). */
export const PeftType = {
  LORA: "LORA",
  ADALORA: "ADALORA",
  IA3: "IA3",
  LOHA: "LOHA",
  LOKR: "LOKR",
  TRAINABLE_TOKENS: "TRAINABLE_TOKENS",
  PROMPT_TUNING: "PROMPT_TUNING",
  P_TUNING: "P_TUNING",
  PREFIX_TUNING: "PREFIX_TUNING",
  ADAPTION_PROMPT: "ADAPTION_PROMPT",
  MULTITASK_PROMPT_TUNING: "MULTITASK_PROMPT_TUNING",
  HRA: "HRA",
  BONE: "BONE",
  LN_TUNING: "LN_TUNING",
  POLY: "POLY",
  FOURIERFT: "FOURIERFT",
  VERA: "VERA",
  OFT: "OFT",
  BOFT: "BOFT",
  BITFIT: "BITFIT",
  FREEZE: "FREEZE",
  DIFF_PRUNING: "DIFF_PRUNING",
  BOTTLENECK: "BOTTLENECK",
  XLORA: "XLORA",
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

/** The names of an interface's declared fields (without its index signature). */
type DeclaredKeys<T> = keyof { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] };

/** A method's own fields (those of PeftConfig excluded), each with its spec: the table must list every one. */
export type MethodFields<C extends PeftConfig> = {
  readonly [K in Exclude<DeclaredKeys<C>, DeclaredKeys<PeftConfig>>]-?: FieldSpec<C[K]>;
};

/** The fields every method shares (peft's PeftConfig), but peft_type, which the method fixes. */
export const COMMON_FIELDS = {
  task_type: field<TaskType | null>(
    nullable(oneOf(...Object.values(TaskType))),
    null,
    "The task the model is adapted for; it selects the PeftModel class.",
  ),
  base_model_name_or_path: field<string | null>(
    nullable(string),
    null,
    "The base model the adapter was made for (filled in on save).",
  ),
  revision: field<string | null>(nullable(string), null, "The Hub revision of the base model."),
  inference_mode: field(bool, false, "Load the adapter frozen, for inference only (set to true on save)."),
  auto_mapping: field<Record<string, unknown> | null>(
    nullable(anyObject),
    null,
    "Which classes saved the base model (written by peft for custom models).",
  ),
} as const;

/** The fields several injected-layer methods share (LoRA, AdaLoRA, IA3, LoHa, LoKr): one spec each. */
export const TARGETING_FIELDS = {
  target_modules: field<string | string[] | null>(
    nullable(moduleNames),
    null,
    "Modules to adapt: a list of names (matched at the end of module paths), a full-match " +
      'regex string, or "all-linear"; null: the model type\'s default.',
  ),
  exclude_modules: field<string | string[] | null>(
    nullable(moduleNames),
    null,
    "Modules not to adapt: a list of names or a full-match regex string.",
  ),
  modules_to_save: field<string[] | null>(
    nullable(listOf(string)),
    null,
    'Modules besides the adapter to train and save, as a list of names (e.g. ["lm_head"] or ["classifier"]).',
  ),
  layers_to_transform: field<number | number[] | null>(
    nullable(either(integer({ min: 0 }), listOf(integer({ min: 0 })))),
    null,
    "Adapt only the layers with these indices (with layers_pattern naming the layer list).",
  ),
  layers_pattern: field<string | string[] | null>(
    nullable(moduleNames),
    null,
    'The name of the layer list that layers_to_transform indexes ("layers", "h").',
  ),
  fan_in_fan_out: field(
    bool,
    false,
    "The layer stores its weight as [in, out] (GPT-2's Conv1D; forced to true there).",
  ),
} as const;

/** Fields every config of newer peft releases may hold that change nothing here. */
const COMMON_FOREIGN: Record<string, ForeignField> = {
  peft_version: { versions: "≥ 0.18", default: null, inert: true },
};

/** Each method's check of the field values a config holds, by peft_type. */
const CHECKS = new Map<string, (c: PeftConfig) => void>();

/**
 * Check the values a config holds again where it enters a model: a config object may have been edited, or spread
 * from a built one, after its builder checked it. Missing fields are left to the method, which fills its defaults.
 */
export function checkConfigValues(config: PeftConfig): void {
  CHECKS.get(config.peft_type)?.(config);
}

/** A method's config builder: fields (from code, a CLI config or a file) → a complete, checked config. */
export type ConfigBuilder<C extends PeftConfig> = (
  fields: Partial<C> | Record<string, unknown>,
  fromFile: boolean,
) => C;

/**
 * The builder of a method's config from its field table: the fields' names are checked (unknown ones are an error
 * from code, a warning from a file; see checkFieldNames), the defaults filled in, every field's type and range
 * checked, then `validate` runs the checks that span several fields. `foreign` lists the fields of other peft
 * versions that this method does not implement.
 */
export function configBuilder<C extends PeftConfig>(
  peftType: PeftType,
  fields: MethodFields<C>,
  validate: (c: C) => void,
  foreign: Readonly<Record<string, ForeignField>> = {},
): ConfigBuilder<C> {
  const table: FieldTable = { ...COMMON_FIELDS, ...(fields as FieldTable) };
  const allForeign = { ...COMMON_FOREIGN, ...foreign };
  const owner = `${peftType} config`;
  CHECKS.set(peftType, (c) => checkFields(owner, table, c, true));
  return (given, fromFile) => {
    const { peft_type: claimed, ...rest } = given as Record<string, unknown>;
    if (claimed !== undefined && claimed !== peftType) {
      throw new ConfigError(
        `this is a ${peftType} config but the fields say peft_type ${showValue(claimed)}`,
        `set peft_type to "${peftType}" or use that method's config`,
      );
    }
    checkFieldNames(owner, "peft", table, allForeign, rest, fromFile ? "file" : "code");
    const c = { ...defaultsOf(table), ...structuredClone(rest), peft_type: peftType } as unknown as C;
    checkFields(owner, table, c);
    validate(c);
    return c;
  };
}

/** Throw a clear config error unless `ok`. */
export function check(ok: boolean, message: string): void {
  if (!ok) throw new ConfigError(message);
}
