/** BoneConfig: peft 0.15.2's fields and defaults (Block-affine adaptation, and its "bat" variant). */
import { configBuilder, PeftType, type MethodFields } from "../../config.js";
import { bool, defaultsOf, either, field, oneOf } from "../../../io/config-fields.js";
import { validateLayerSelection, weightTransformFields, type WeightTransformConfig } from "../weight-transform.js";

/** Bone configuration (HF field names). */
export interface BoneConfig extends WeightTransformConfig {
  /**
   * true: blocks start at 0 (a fresh adapter changes nothing); false: Kaiming-uniform; "bat": the Bat variant,
   * [out/r, r, r] blocks that also multiply the weight's own blocks (in and out must be multiples of r).
   */
  init_weights: boolean | "bat";
}

/** Every Bone field (peft 0.15.2). */
export const BONE_FIELDS: MethodFields<BoneConfig> = {
  ...weightTransformFields("bone_only", 64),
  init_weights: field<boolean | "bat">(
    either(bool, oneOf("bat")),
    true,
    'true: blocks start at 0 (a fresh adapter changes nothing); false: random; "bat": blocks ' +
      "that also multiply the weight's own [r, r] blocks.",
  ),
};

/** Defaults of every Bone field (peft 0.15.2). */
export const BONE_DEFAULTS = defaultsOf(BONE_FIELDS);

/** Build a Bone config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeBoneConfig = configBuilder<BoneConfig>(PeftType.BONE, BONE_FIELDS, (c) =>
  validateLayerSelection(c, false),
);

/** A Bone config from user fields (TypeScript users) — defaults filled in, validated. */
export function BoneConfig(fields: Partial<BoneConfig> = {}): BoneConfig {
  return makeBoneConfig(fields, false);
}
