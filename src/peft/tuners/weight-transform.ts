/**
 * What HRA and Bone share (peft 0.15.2): config fields (targets, layer selection, r, init_weights, bias) and a layer
 * around a Linear that keeps one parameter per adapter. Both rewrite the weight W itself (HRA: W·H, Bone: block
 * updates); their hosts are LinearTuners.
 */
import type { Linear } from "../../nn/index.js";
import type { Tensor } from "../../tensor/index.js";
import { check, TARGETING_FIELDS, type PeftConfig } from "../config.js";
import { field, integer, oneOf, pick } from "../../io/config-fields.js";
import { BaseTunerLayer, type ParameterDict } from "./tuner-layer.js";

/** The fields HRA and Bone share (HF names). */
export interface WeightTransformConfig extends PeftConfig {
  /** Number of reflections (HRA) or block size (Bone). */
  r: number;
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
  /** Only "none": peft 0.15.2 trains biases for the other values but does not save them. */
  bias: string;
  modules_to_save: string[] | null;
}

/** The shared fields of a method whose bias-training value is `ownBias` ("hra_only", "bone_only"). */
export function weightTransformFields(ownBias: string, defaultR: number) {
  return {
    ...pick(
      TARGETING_FIELDS,
      "target_modules",
      "exclude_modules",
      "layers_to_transform",
      "layers_pattern",
      "modules_to_save",
    ),
    r: field(integer({ min: 1 }), defaultR, "Number of reflections (HRA) or block size (Bone)."),
    bias: field(oneOf("none", "all", ownBias), "none", "Which biases to train.", {
      notImplemented:
        "peft 0.15.2 trains these biases but does not save them, so the trained biases would be " +
        'lost on save; keep bias "none"',
      implemented: (v) => v === "none",
    }),
  } as const;
}

/** peft's __post_init__ checks of layer selection (HRA also needs layers_to_transform with layers_pattern). */
export function validateLayerSelection(c: WeightTransformConfig, patternNeedsLayers: boolean): void {
  check(
    !(typeof c.target_modules === "string" && c.layers_to_transform !== null),
    "`layers_to_transform` cannot be used when `target_modules` is a str.",
  );
  check(
    !(typeof c.target_modules === "string" && c.layers_pattern !== null),
    "`layers_pattern` cannot be used when `target_modules` is a str.",
  );
  const noLayers =
    c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(
    !(patternNeedsLayers && c.layers_pattern && noLayers),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
}

/** A layer around a Linear holding one parameter per adapter in `params` (hra_u, bone_block). */
export abstract class WeightTransformLayer extends BaseTunerLayer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r = new Map<string, number>();
  abstract readonly adapterWeights: ParameterDict;

  constructor(base: Linear) {
    super(base);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** The parameter of an adapter. */
  param(name: string): Tensor {
    const p = this.adapterWeights.ownParameter(name);
    if (!p) throw new Error(`adapter "${name}" is not in this layer`);
    return p;
  }

  /** The base Linear's weight [out, in] and bias. */
  protected get linearBase(): Linear {
    return this.base_layer as Linear;
  }

  protected forgetAdapter(name: string): void {
    this.r.delete(name);
  }

  protected override extraRepr(): string {
    return `in=${this.inFeatures}, out=${this.outFeatures}, adapters=[${this.adapterNames().join(", ")}]`;
  }
}
