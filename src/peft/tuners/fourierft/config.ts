/**
 * FourierFTConfig: peft 0.15.2's fields and defaults. FourierFT learns n_frequency spectral coefficients per adapted
 * layer at positions drawn by torch's seeded randperm; ΔW is the real part of their inverse 2-D DFT.
 */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import {
  bool,
  defaultsOf,
  field,
  integer,
  nullable,
  number,
  oneOf,
  pick,
  recordOf,
} from "../../../io/config-fields.js";

/** FourierFT configuration (HF field names). */
export interface FourierFTConfig extends PeftConfig {
  /** Spectral coefficients learned per layer (at most in · out). */
  n_frequency: number;
  /** ΔW is multiplied by this. */
  scaling: number;
  /** Seed of torch's randperm that places the coefficients (not saved in the weights: redrawn on load). */
  random_loc_seed: number | null;
  fan_in_fan_out: boolean;
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  /** Which biases train: "none", "all", or "fourier_only" (those of the adapted layers). */
  bias: "none" | "all" | "fourier_only";
  modules_to_save: string[] | null;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
  /** Module-name regex (matched as `.*\.<key>$`) → n_frequency, overriding it. */
  n_frequency_pattern: Record<string, number>;
  /** true: the spectrum starts at 0 (the adapter changes nothing); false: N(0, 1), peft's default. */
  init_weights: boolean;
}

/** Every FourierFT field (peft 0.15.2): type and range, default, and what it does. */
export const FOURIERFT_FIELDS: MethodFields<FourierFTConfig> = {
  ...pick(
    TARGETING_FIELDS,
    "target_modules",
    "exclude_modules",
    "fan_in_fan_out",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
  ),
  n_frequency: field(
    integer({ min: 1 }),
    1000,
    "Spectral coefficients learned per layer (at most in_features · out_features).",
  ),
  scaling: field(number(), 150.0, "ΔW is multiplied by this (like LoRA's alpha)."),
  random_loc_seed: field<number | null>(
    nullable(integer()),
    777,
    "Seed of torch's randperm that places the coefficients; it is redrawn on load.",
  ),
  bias: field<"none" | "all" | "fourier_only">(
    oneOf("none", "all", "fourier_only"),
    "none",
    "Which biases train: none, all, or those of the adapted layers.",
  ),
  n_frequency_pattern: field<Record<string, number>>(
    recordOf(integer({ min: 1 })),
    {},
    "Module-name pattern → n_frequency, overriding it.",
  ),
  init_weights: field(bool, false, "true: the spectrum starts at 0 (a fresh adapter changes nothing); false: N(0, 1)."),
};

/** Defaults of every FourierFT field (peft 0.15.2). */
export const FOURIERFT_DEFAULTS = defaultsOf(FOURIERFT_FIELDS);

/** FourierFTConfig.__post_init__'s checks that span fields, with clear errors. */
export function validateFourierFTFields(c: FourierFTConfig): void {
  const regex = typeof c.target_modules === "string";
  check(
    !(regex && c.layers_to_transform !== null),
    "`layers_to_transform` cannot be used when `target_modules` is a str.",
  );
  check(!(regex && c.layers_pattern !== null), "`layers_pattern` cannot be used when `target_modules` is a str.");
  const noLayers =
    c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(
    !(c.layers_pattern && noLayers),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
}

/** Build a FourierFT config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeFourierFTConfig = configBuilder<FourierFTConfig>(
  PeftType.FOURIERFT,
  FOURIERFT_FIELDS,
  validateFourierFTFields,
);

/** A FourierFT config from user fields (TypeScript users) — defaults filled in, validated. */
export function FourierFTConfig(fields: Partial<FourierFTConfig> = {}): FourierFTConfig {
  return makeFourierFTConfig(fields, false);
}
