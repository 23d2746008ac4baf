/** LoHaConfig: peft 0.15.2's fields and defaults (LyCORIS's shared fields plus init_weights). */
import { check, configBuilder, PeftType } from "../../config.js";
import { LYCORIS_DEFAULTS, validateLycorisFields, type LycorisConfig } from "../lycoris.js";

/** LoHa configuration (HF field names). */
export interface LoHaConfig extends LycorisConfig {
  /** true: hada_w2_b starts at 0 (a fresh adapter changes nothing), the other factors Kaiming-uniform; false: all four random. */
  init_weights: boolean;
}

/** Defaults of every LoHa field (peft 0.15.2). */
export const LOHA_DEFAULTS = { ...LYCORIS_DEFAULTS, init_weights: true } as const;

/** The LyCORIS checks plus LoHa's init_weights, with clear errors. */
export function validateLoHaFields(c: LoHaConfig): void {
  validateLycorisFields(c);
  check(typeof c.init_weights === "boolean", `\`init_weights\` must be true or false for LoHa, got ${JSON.stringify(c.init_weights)}`);
}

/** Build a LoHa config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeLoHaConfig = configBuilder<LoHaConfig>(PeftType.LOHA, LOHA_DEFAULTS, validateLoHaFields);

/** A LoHa config from user fields (TypeScript users) — defaults filled in, validated. */
export function LoHaConfig(fields: Partial<LoHaConfig> = {}): LoHaConfig {
  return makeLoHaConfig(fields, false);
}
