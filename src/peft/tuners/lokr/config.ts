/** LoKrConfig: peft 0.15.2's fields and defaults (LyCORIS's shared fields plus the Kronecker options). */
import { configBuilder, PeftType, type MethodFields } from "../../config.js";
import { bool, defaultsOf, either, field, integer, oneOf } from "../../../io/config-fields.js";
import { LYCORIS_FIELDS, validateLycorisFields, type LycorisConfig } from "../lycoris.js";

/** LoKr configuration (HF field names). */
export interface LoKrConfig extends LycorisConfig {
  /** Also factor the left Kronecker factor w1 as w1_a·w1_b when r < max(its dims) / 2. */
  decompose_both: boolean;
  /** Split in/out dims as factor × dim/factor when factor divides them; −1 (default): the split closest to a square. */
  decompose_factor: number;
  /** Divide the rows kept by rank dropout by their fraction. */
  rank_dropout_scale: boolean;
  /**
   * true: w1 (or w1_a) starts at 0 so a fresh adapter changes nothing, the rest Kaiming-uniform; "lycoris": w2 (or
   * w2_b) starts at 0 instead, as in the LyCORIS repository; false: every factor random.
   */
  init_weights: boolean | "lycoris";
}

/** Every LoKr field (peft 0.15.2). */
export const LOKR_FIELDS: MethodFields<LoKrConfig> = {
  ...LYCORIS_FIELDS,
  decompose_both: field(bool, false, "Also factor the left Kronecker factor w1 as w1_a·w1_b."),
  decompose_factor: field(
    either(oneOf(-1), integer({ min: 1 })),
    -1,
    "Split the dimensions as factor × dim/factor; -1: the split closest to a square.",
  ),
  rank_dropout_scale: field(bool, false, "Divide the rows kept by rank dropout by their fraction."),
  init_weights: field<boolean | "lycoris">(
    either(bool, oneOf("lycoris")),
    true,
    'true: w1 starts at 0 (a fresh adapter changes nothing); "lycoris": w2 starts at 0; false: all random.',
  ),
};

/** Defaults of every LoKr field (peft 0.15.2). */
export const LOKR_DEFAULTS = defaultsOf(LOKR_FIELDS);

/** Build a LoKr config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeLoKrConfig = configBuilder<LoKrConfig>(PeftType.LOKR, LOKR_FIELDS, validateLycorisFields);

/** A LoKr config from user fields (TypeScript users) — defaults filled in, validated. */
export function LoKrConfig(fields: Partial<LoKrConfig> = {}): LoKrConfig {
  return makeLoKrConfig(fields, false);
}
