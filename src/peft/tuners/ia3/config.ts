/**
 * IA3Config: peft 0.15.2's fields and defaults. (IA)³ learns one vector per adapted layer that rescales the layer's
 * output (attention projections) or its input (the feed-forward modules listed in feedforward_modules).
 */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, moduleNames, nullable, pick } from "../../../io/config-fields.js";

/** (IA)³ configuration (HF field names). */
export interface IA3Config extends PeftConfig {
  /** Modules to adapt (list: exact name or "."-suffix; string: full-match regex; "all-linear"); null: the model type's default. */
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  /**
   * Which targets are feed-forward modules, scaled on their input instead of their output (list: plain name suffix,
   * as peft matches them; string: full-match regex). null: the model type's default. A list must be a subset of a
   * target_modules list.
   */
  feedforward_modules: string | string[] | null;
  /** The layer stores its weight as [in, out] (GPT-2's Conv1D; forced true for Conv1D targets, false for Linear ones). */
  fan_in_fan_out: boolean;
  modules_to_save: string[] | null;
  /** Start the vectors at 1 (the adapter then changes nothing); false draws them from N(0, 1). */
  init_ia3_weights: boolean;
}

/** Every IA3 field (peft 0.15.2): type and range, default, and what it does. */
export const IA3_FIELDS: MethodFields<IA3Config> = {
  ...pick(TARGETING_FIELDS, "target_modules", "exclude_modules", "fan_in_fan_out", "modules_to_save"),
  feedforward_modules: field<string | string[] | null>(
    nullable(moduleNames),
    null,
    "Which targets are feed-forward modules, scaled on their input (a subset of target_modules).",
  ),
  init_ia3_weights: field(
    bool,
    true,
    "Start the vectors at 1 (the adapter then changes nothing); false draws them from N(0, 1).",
  ),
};

/** Defaults of every IA3 field (peft 0.15.2). */
export const IA3_DEFAULTS = defaultsOf(IA3_FIELDS);

/** IA3Config.__post_init__'s check that spans two fields, with a clear error. */
export function validateIA3Fields(c: IA3Config): void {
  if (Array.isArray(c.feedforward_modules) && Array.isArray(c.target_modules)) {
    const targets = c.target_modules;
    const extra = c.feedforward_modules.filter((f) => !targets.includes(f));
    check(
      extra.length === 0,
      `\`feedforward_modules\` should be a subset of \`target_modules\` (not in target_modules: ` +
        `${JSON.stringify(extra)})`,
    );
  }
}

/** Build an IA3 config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeIA3Config = configBuilder<IA3Config>(PeftType.IA3, IA3_FIELDS, validateIA3Fields);

/** An (IA)³ config from user fields (TypeScript users) — defaults filled in, validated. */
export function IA3Config(fields: Partial<IA3Config> = {}): IA3Config {
  return makeIA3Config(fields, false);
}
