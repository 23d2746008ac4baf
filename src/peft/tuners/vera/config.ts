/**
 * VeraConfig: peft 0.15.2's fields and defaults. VeRA shares one pair of frozen random projections (vera_A, vera_B,
 * drawn from torch's generator seeded with projection_prng_key) across all adapted layers and learns two scaling
 * vectors per layer.
 */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, integer, number, oneOf, pick } from "../../../io/config-fields.js";

/** VeRA configuration (HF field names). */
export interface VeraConfig extends PeftConfig {
  /** Rank of the shared projections. */
  r: number;
  target_modules: string | string[] | null;
  /** Seed of torch's generator that draws vera_A and vera_B (the same for every adapter of a model). */
  projection_prng_key: number;
  /** Save vera_A and vera_B in the adapter file; false: they are redrawn from projection_prng_key on load. */
  save_projection: boolean;
  /** Dropout on the layer input of the adapter path while training. */
  vera_dropout: number;
  /** Initial value of every entry of vera_lambda_d (with init_weights). */
  d_initial: number;
  fan_in_fan_out: boolean;
  /** Which biases train: "none", "all", or "vera_only" (those of the adapted layers). */
  bias: "none" | "all" | "vera_only";
  modules_to_save: string[] | null;
  /** true: vera_lambda_b = 0 and vera_lambda_d = d_initial (the adapter changes nothing); false: b = 1, d ~ N(0, 1). */
  init_weights: boolean;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
}

/** Every VeRA field (peft 0.15.2): type and range, default, and what it does. */
export const VERA_FIELDS: MethodFields<VeraConfig> = {
  ...pick(
    TARGETING_FIELDS,
    "target_modules",
    "fan_in_fan_out",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
  ),
  r: field(integer({ min: 1 }), 256, "Rank of the shared random projections."),
  projection_prng_key: field(
    integer(),
    0,
    "Seed of torch's generator that draws vera_A and vera_B (the same for all adapters).",
  ),
  save_projection: field(
    bool,
    true,
    "Save vera_A/vera_B in the adapter file; false: redraw them from projection_prng_key on load.",
  ),
  vera_dropout: field(number({ min: 0, max: 1 }), 0.0, "Dropout on the adapter path's input while training."),
  d_initial: field(number(), 0.1, "Initial value of vera_lambda_d (with init_weights)."),
  bias: field<"none" | "all" | "vera_only">(
    oneOf("none", "all", "vera_only"),
    "none",
    "Which biases train: none, all, or those of the adapted layers.",
  ),
  init_weights: field(
    bool,
    true,
    "true: vera_lambda_b = 0, vera_lambda_d = d_initial (a fresh adapter changes nothing); false: b = 1, d ~ N(0, 1).",
  ),
};

/** Defaults of every VeRA field (peft 0.15.2). */
export const VERA_DEFAULTS = defaultsOf(VERA_FIELDS);

/** VeraConfig.__post_init__'s check that spans fields, with a clear error. */
export function validateVeraFields(c: VeraConfig): void {
  const noLayers =
    c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(
    !(c.layers_pattern && noLayers),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
}

/** Build a VeRA config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeVeraConfig = configBuilder<VeraConfig>(PeftType.VERA, VERA_FIELDS, validateVeraFields);

/** A VeRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function VeraConfig(fields: Partial<VeraConfig> = {}): VeraConfig {
  return makeVeraConfig(fields, false);
}
