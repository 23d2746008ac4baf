/** LoKrConfig: peft 0.15.2's fields and defaults (LyCORIS's shared fields plus the Kronecker options). */
import { check, configBuilder, PeftType } from "../../config.js";
import { LYCORIS_DEFAULTS, validateLycorisFields, type LycorisConfig } from "../lycoris.js";

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

/** Defaults of every LoKr field (peft 0.15.2). */
export const LOKR_DEFAULTS = { ...LYCORIS_DEFAULTS, decompose_both: false, decompose_factor: -1, rank_dropout_scale: false, init_weights: true } as const;

/** The LyCORIS checks plus LoKr's own fields, with clear errors. */
export function validateLoKrFields(c: LoKrConfig): void {
  validateLycorisFields(c);
  check(c.init_weights === true || c.init_weights === false || c.init_weights === "lycoris", `\`init_weights\` must be true, false or "lycoris" for LoKr, got ${JSON.stringify(c.init_weights)}`);
  check(typeof c.decompose_both === "boolean", `\`decompose_both\` must be true or false, got ${JSON.stringify(c.decompose_both)}`);
  check(typeof c.rank_dropout_scale === "boolean", `\`rank_dropout_scale\` must be true or false, got ${JSON.stringify(c.rank_dropout_scale)}`);
  check(Number.isInteger(c.decompose_factor) && (c.decompose_factor === -1 || c.decompose_factor > 0), `\`decompose_factor\` must be -1 or a positive integer, got ${JSON.stringify(c.decompose_factor)}`);
}

/** Build a LoKr config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeLoKrConfig = configBuilder<LoKrConfig>(PeftType.LOKR, LOKR_DEFAULTS, validateLoKrFields);

/** A LoKr config from user fields (TypeScript users) — defaults filled in, validated. */
export function LoKrConfig(fields: Partial<LoKrConfig> = {}): LoKrConfig {
  return makeLoKrConfig(fields, false);
}
