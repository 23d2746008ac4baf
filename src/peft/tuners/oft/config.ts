/**
 * OFTConfig: peft 0.15.2's fields and defaults. OFT rotates a layer's input space by a learned block-diagonal
 * orthogonal matrix (each block the Cayley transform of a learned matrix) and rescales its outputs.
 */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, integer, number, oneOf, pick } from "../../../io/config-fields.js";

/** OFT configuration (HF field names). */
export interface OFTConfig extends PeftConfig {
  /** Number of blocks per layer (0: derived from oft_block_size). */
  r: number;
  /** Size of each block (0: derived from r). Exactly one of r and oft_block_size is non-zero. */
  oft_block_size: number;
  /** Probability of replacing a block by the identity while training (multiplicative dropout). */
  module_dropout: number;
  target_modules: string | string[] | null;
  fan_in_fan_out: boolean;
  /** Which biases train: "none", "all", or "oft_only" (those of the adapted layers). */
  bias: "none" | "all" | "oft_only";
  exclude_modules: string | string[] | null;
  /** true: the rotation starts as the identity and the scale at 1; false: both random. */
  init_weights: boolean;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
  modules_to_save: string[] | null;
  /** Constrained OFT: each block's matrix is kept within a ball of radius eps around 0. */
  coft: boolean;
  /** COFT's radius (scaled by ceil(out / r)²). */
  eps: number;
  /** One block shared by every block position. */
  block_share: boolean;
}

/** Every OFT field (peft 0.15.2): type and range, default, and what it does. */
export const OFT_FIELDS: MethodFields<OFTConfig> = {
  ...pick(
    TARGETING_FIELDS,
    "target_modules",
    "exclude_modules",
    "fan_in_fan_out",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
  ),
  r: field(integer({ min: 0 }), 8, "Number of OFT blocks per layer (0: derived from oft_block_size)."),
  oft_block_size: field(
    integer({ min: 0 }),
    0,
    "Size of each OFT block (0: derived from r); give exactly one of the two.",
  ),
  module_dropout: field(
    number({ min: 0, max: 1 }),
    0.0,
    "Probability of replacing a block by the identity while training.",
  ),
  bias: field<"none" | "all" | "oft_only">(
    oneOf("none", "all", "oft_only"),
    "none",
    "Which biases train: none, all, or those of the adapted layers.",
  ),
  init_weights: field(
    bool,
    true,
    "true: identity rotation and unit scale (a fresh adapter changes nothing); false: random.",
  ),
  coft: field(bool, false, "Constrained OFT: keep each block's matrix within eps of 0."),
  eps: field(number({ min: 0 }), 6e-5, "COFT's radius (scaled by ceil(out / r)²)."),
  block_share: field(bool, false, "Share one block across all block positions."),
};

/** Defaults of every OFT field (peft 0.15.2). */
export const OFT_DEFAULTS = defaultsOf(OFT_FIELDS);

/** OFTConfig.__post_init__'s checks that span fields, with clear errors. */
export function validateOFTFields(c: OFTConfig): void {
  const noLayers =
    c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(
    !(c.layers_pattern && noLayers),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
  check(
    !(c.r === 0 && c.oft_block_size === 0),
    `Either \`r\` or \`oft_block_size\` must be non-zero. Currently, r = ${c.r} and ` +
      `oft_block_size = ${c.oft_block_size}.`,
  );
  check(
    (c.r !== 0) !== (c.oft_block_size !== 0),
    `You can only specify either r (${c.r}) or oft_block_size (${c.oft_block_size}), but not ` +
      `both simultaneously, because r x oft_block_size == in_features.`,
  );
}

/** Build an OFT config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeOFTConfig = configBuilder<OFTConfig>(PeftType.OFT, OFT_FIELDS, validateOFTFields);

/** An OFT config from user fields (TypeScript users) — defaults filled in, validated. */
export function OFTConfig(fields: Partial<OFTConfig> = {}): OFTConfig {
  return makeOFTConfig(fields, false);
}
