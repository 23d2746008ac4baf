/**
 * BOFTConfig: peft 0.15.2's fields and defaults. BOFT (butterfly OFT) rotates a layer's input space by a product
 * of boft_n_butterfly_factor sparse orthogonal factors, each a permuted block-diagonal of Cayley blocks.
 */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, integer, number, oneOf, pick } from "../../../io/config-fields.js";

/** BOFT configuration (HF field names). */
export interface BOFTConfig extends PeftConfig {
  /** Size of each block (0: derived from boft_block_num). Exactly one of the two is non-zero. */
  boft_block_size: number;
  /** Number of blocks per factor (0: derived from boft_block_size). */
  boft_block_num: number;
  /** Number of butterfly factors (1: one block-diagonal rotation, i.e. OFT). */
  boft_n_butterfly_factor: number;
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  /** Probability of replacing blocks of a random factor by the identity while training (multiplicative dropout). */
  boft_dropout: number;
  fan_in_fan_out: boolean;
  /** Which biases train: "none", "all", or "boft_only" (those of the adapted layers). */
  bias: "none" | "all" | "boft_only";
  modules_to_save: string[] | null;
  /** true: identity rotation and unit scale (a fresh adapter changes nothing); false: random. */
  init_weights: boolean;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
}

/** Every BOFT field (peft 0.15.2): type and range, default, and what it does. */
export const BOFT_FIELDS: MethodFields<BOFTConfig> = {
  ...pick(
    TARGETING_FIELDS,
    "target_modules",
    "exclude_modules",
    "fan_in_fan_out",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
  ),
  boft_block_size: field(
    integer({ min: 0 }),
    4,
    "Size of each BOFT block (0: derived from boft_block_num); give exactly one of the two.",
  ),
  boft_block_num: field(integer({ min: 0 }), 0, "Number of BOFT blocks per factor (0: derived from boft_block_size)."),
  boft_n_butterfly_factor: field(
    integer({ min: 1 }),
    1,
    "Number of butterfly factors (1: a single block-diagonal rotation).",
  ),
  boft_dropout: field(
    number({ min: 0, max: 1 }),
    0.0,
    "Probability of replacing blocks of a random factor by the identity while training.",
  ),
  bias: field<"none" | "all" | "boft_only">(
    oneOf("none", "all", "boft_only"),
    "none",
    "Which biases train: none, all, or those of the adapted layers.",
  ),
  init_weights: field(
    bool,
    true,
    "true: identity rotation and unit scale (a fresh adapter changes nothing); false: random.",
  ),
};

/** Defaults of every BOFT field (peft 0.15.2). */
export const BOFT_DEFAULTS = defaultsOf(BOFT_FIELDS);

/** BOFTConfig.__post_init__'s checks that span fields, with clear errors. */
export function validateBOFTFields(c: BOFTConfig): void {
  const noLayers =
    c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(
    !(c.layers_pattern && noLayers),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
  check(
    !(c.boft_block_size === 0 && c.boft_block_num === 0),
    `Either \`boft_block_size\` or \`boft_block_num\` must be non-zero. Currently, ` +
      `boft_block_size = ${c.boft_block_size} and boft_block_num = ${c.boft_block_num}.`,
  );
  check(
    (c.boft_block_size !== 0) !== (c.boft_block_num !== 0),
    `You can only specify either boft_block_size (${c.boft_block_size}) or boft_block_num ` +
      `(${c.boft_block_num}), but not both simultaneously, because boft_block_size x ` +
      `boft_block_num == in_features.`,
  );
}

/** Build a BOFT config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeBOFTConfig = configBuilder<BOFTConfig>(PeftType.BOFT, BOFT_FIELDS, validateBOFTFields);

/** A BOFT config from user fields (TypeScript users) — defaults filled in, validated. */
export function BOFTConfig(fields: Partial<BOFTConfig> = {}): BOFTConfig {
  return makeBOFTConfig(fields, false);
}
