/**
 * FreezeConfig (peft-ts's own method; no Python peft config exists): freeze tuning — the top N layers of the
 * model's layer list(s) and any named modules train entirely, everything else is frozen.
 */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { field, integer, moduleNames, nullable, pick, string } from "../../../io/config-fields.js";

/** Freeze configuration (peft-style field names). */
export interface FreezeConfig extends PeftConfig {
  /** How many of the last layers of each layer list train (0: none, only trainable_modules). */
  num_trainable_layers: number;
  /** The name of the layer list ("layers", "h", "block"); null: every list of numbered layers found. */
  layers_pattern: string | null;
  /** Further modules that train entirely (list: exact name or "."-suffix; string: full-match regex). */
  trainable_modules: string | string[] | null;
  /** Modules trained and saved besides (the task head is added for classification tasks, as in peft). */
  modules_to_save: string[] | null;
}

/** Every Freeze field: type and range, default, and what it does. */
export const FREEZE_FIELDS: MethodFields<FreezeConfig> = {
  num_trainable_layers: field(
    integer({ min: 0 }),
    2,
    "How many of the last layers of each layer list train (0: only trainable_modules).",
  ),
  layers_pattern: field<string | null>(
    nullable(string),
    null,
    'The name of the layer list ("layers", "h", "block"); null: every list of numbered layers.',
  ),
  trainable_modules: field<string | string[] | null>(
    nullable(moduleNames),
    null,
    "Further modules that train entirely: a list of names or a full-match regex.",
  ),
  ...pick(TARGETING_FIELDS, "modules_to_save"),
};

/** Something must train. */
function validateFreezeFields(c: FreezeConfig): void {
  const named = c.trainable_modules !== null && c.trainable_modules.length > 0;
  check(
    c.num_trainable_layers > 0 || named || (c.modules_to_save?.length ?? 0) > 0,
    "FREEZE config trains nothing: set num_trainable_layers above 0 or name trainable_modules",
  );
}

/** Build a Freeze config from fields over the defaults. */
export const makeFreezeConfig = configBuilder<FreezeConfig>(PeftType.FREEZE, FREEZE_FIELDS, validateFreezeFields);

/** A Freeze config from user fields (TypeScript users) — defaults filled in, validated. */
export function FreezeConfig(fields: Partial<FreezeConfig> = {}): FreezeConfig {
  return makeFreezeConfig(fields, false);
}
