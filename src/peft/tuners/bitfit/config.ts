/**
 * BitFitConfig (peft-ts's own method; no Python peft config exists): train the model's biases only (Ben Zaken et
 * al., 2021) — every bias, or those of the named modules — plus the task head (modules_to_save), as the paper does.
 */
import { configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { pick } from "../../../io/config-fields.js";

/** BitFit configuration (peft-style field names). */
export interface BitFitConfig extends PeftConfig {
  /** Modules whose bias trains (list: exact name or "."-suffix; string: full-match regex); null: every bias. */
  target_modules: string | string[] | null;
  /** Modules whose bias stays frozen (matched like target_modules). */
  exclude_modules: string | string[] | null;
  /** Modules trained entirely besides the biases (the task head is added for classification tasks). */
  modules_to_save: string[] | null;
}

/** Every BitFit field: type and range, default, and what it does. */
export const BITFIT_FIELDS: MethodFields<BitFitConfig> = {
  ...pick(TARGETING_FIELDS, "target_modules", "exclude_modules", "modules_to_save"),
};

/** Build a BitFit config from fields over the defaults. */
export const makeBitFitConfig = configBuilder<BitFitConfig>(PeftType.BITFIT, BITFIT_FIELDS, () => {});

/** A BitFit config from user fields (TypeScript users) — defaults filled in, validated. */
export function BitFitConfig(fields: Partial<BitFitConfig> = {}): BitFitConfig {
  return makeBitFitConfig(fields, false);
}
