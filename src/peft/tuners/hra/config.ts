/** HRAConfig: peft 0.15.2's fields and defaults (Householder reflection adaptation). */
import { configBuilder, PeftType, type MethodFields } from "../../config.js";
import { bool, defaultsOf, field } from "../../../io/config-fields.js";
import { validateLayerSelection, weightTransformFields, type WeightTransformConfig } from "../weight-transform.js";

/** HRA configuration (HF field names). */
export interface HRAConfig extends WeightTransformConfig {
  /** Orthogonalise the reflection vectors (Gram–Schmidt) into one reflection I − 2UUᵀ. */
  apply_GS: boolean;
  /** true: vectors in equal pairs (even r), so a fresh adapter changes nothing; false: random. */
  init_weights: boolean;
}

/** Every HRA field (peft 0.15.2). */
export const HRA_FIELDS: MethodFields<HRAConfig> = {
  ...weightTransformFields("hra_only", 8),
  apply_GS: field(bool, false, "Orthogonalise the reflection vectors (Gram–Schmidt) into one reflection I − 2UUᵀ."),
  init_weights: field(
    bool,
    true,
    "true: vectors in equal pairs (even r), so a fresh adapter changes nothing; false: random.",
  ),
};

/** Defaults of every HRA field (peft 0.15.2). */
export const HRA_DEFAULTS = defaultsOf(HRA_FIELDS);

/** Build an HRA config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeHRAConfig = configBuilder<HRAConfig>(PeftType.HRA, HRA_FIELDS, (c) => validateLayerSelection(c, true));

/** An HRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function HRAConfig(fields: Partial<HRAConfig> = {}): HRAConfig {
  return makeHRAConfig(fields, false);
}
