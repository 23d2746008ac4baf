/** LoHaConfig: peft 0.15.2's fields and defaults (LyCORIS's shared fields plus init_weights). */
import { configBuilder, PeftType, type MethodFields } from "../../config.js";
import { bool, defaultsOf, field } from "../../../io/config-fields.js";
import { LYCORIS_FIELDS, validateLycorisFields, type LycorisConfig } from "../lycoris.js";

/** LoHa configuration (HF field names). */
export interface LoHaConfig extends LycorisConfig {
  /** true: hada_w2_b starts at 0 (a fresh adapter changes nothing), the other factors Kaiming-uniform; false: all four random. */
  init_weights: boolean;
}

/** Every LoHa field (peft 0.15.2). */
export const LOHA_FIELDS: MethodFields<LoHaConfig> = {
  ...LYCORIS_FIELDS,
  init_weights: field(
    bool,
    true,
    "true: hada_w2_b starts at 0, so a fresh adapter changes nothing; false: all four factors random.",
  ),
};

/** Defaults of every LoHa field (peft 0.15.2). */
export const LOHA_DEFAULTS = defaultsOf(LOHA_FIELDS);

/** Build a LoHa config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeLoHaConfig = configBuilder<LoHaConfig>(PeftType.LOHA, LOHA_FIELDS, validateLycorisFields);

/** A LoHa config from user fields (TypeScript users) — defaults filled in, validated. */
export function LoHaConfig(fields: Partial<LoHaConfig> = {}): LoHaConfig {
  return makeLoHaConfig(fields, false);
}
