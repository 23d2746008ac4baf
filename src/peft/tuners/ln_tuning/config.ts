/**
 * LNTuningConfig: peft 0.15.2's fields and defaults. LN tuning trains a copy of each targeted normalisation layer
 * (LayerNorm, RMSNorm) and runs the copy in place of the original.
 */
import { configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { defaultsOf, pick } from "../../../io/config-fields.js";

/** LN tuning configuration (HF field names). */
export interface LNTuningConfig extends PeftConfig {
  /** Modules to copy and train (list: exact name or "."-suffix; string: full-match regex); null: the model type's norms. */
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  modules_to_save: string[] | null;
}

/** Every LN tuning field (peft 0.15.2). */
export const LN_TUNING_FIELDS: MethodFields<LNTuningConfig> = pick(
  TARGETING_FIELDS,
  "target_modules",
  "exclude_modules",
  "modules_to_save",
);

/** Defaults of every LN tuning field (peft 0.15.2). */
export const LN_TUNING_DEFAULTS = defaultsOf(LN_TUNING_FIELDS);

/** Build an LN tuning config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeLNTuningConfig = configBuilder<LNTuningConfig>(PeftType.LN_TUNING, LN_TUNING_FIELDS, () => {});

/** An LN tuning config from user fields (TypeScript users) — defaults filled in, validated. */
export function LNTuningConfig(fields: Partial<LNTuningConfig> = {}): LNTuningConfig {
  return makeLNTuningConfig(fields, false);
}
