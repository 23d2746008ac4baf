/**
 * What HRA and Bone share (peft 0.15.2): config fields (targets, layer selection, r, init_weights, bias), a layer
 * around a Linear that keeps one parameter per adapter, and a tuner that adapts Linear layers only, with LoRA's
 * default targets. Both methods rewrite the weight W itself (HRA: W·H, Bone: block updates), so peft refuses GPT-2's
 * Conv1D for them; so does this.
 */
import { Conv1D, Linear, QuantizedLinear, type Module } from "../../nn/index.js";
import type { Tensor } from "../../tensor/index.js";
import { ConfigError } from "../../errors.js";
import { check, TARGETING_FIELDS, type PeftConfig } from "../config.js";
import { field, integer, oneOf, pick } from "../../io/config-fields.js";
import { LORA_TARGETS } from "../mapping.js";
import { BaseTuner } from "./tuner.js";
import { BaseTunerLayer, ParameterDict } from "./tuner-layer.js";

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
    ...pick(TARGETING_FIELDS, "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save"),
    r: field(integer({ min: 1 }), defaultR, "Number of reflections (HRA) or block size (Bone)."),
    bias: field(oneOf("none", "all", ownBias), "none", "Which biases to train.", {
      notImplemented: "peft 0.15.2 trains these biases but does not save them, so the trained biases would be lost on save; keep bias \"none\"",
      implemented: (v) => v === "none",
    }),
  } as const;
}

/** peft's __post_init__ checks of layer selection (HRA also needs layers_to_transform with layers_pattern). */
export function validateLayerSelection(c: WeightTransformConfig, patternNeedsLayers: boolean): void {
  check(!(typeof c.target_modules === "string" && c.layers_to_transform !== null), "`layers_to_transform` cannot be used when `target_modules` is a str.");
  check(!(typeof c.target_modules === "string" && c.layers_pattern !== null), "`layers_pattern` cannot be used when `target_modules` is a str.");
  const noLayers = c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(!(patternNeedsLayers && c.layers_pattern && noLayers), "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ");
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

/** The host of HRA and Bone: Linear targets only, LoRA's default targets per model type. */
export abstract class WeightTransformTuner<C extends WeightTransformConfig> extends BaseTuner<C> {
  /** The method's name in errors ("HRA", "Bone"). */
  protected abstract readonly methodName: string;

  /** peft's _prepare_adapter_config: LoRA's default targets when target_modules is not given. */
  protected prepareConfig(config: C): C {
    if (config.target_modules !== null) return { ...config };
    const modelType = this.model.config.model_type;
    const targets = LORA_TARGETS[modelType];
    if (!targets) throw new ConfigError(`Please specify \`target_modules\` in the ${this.methodName} config: there is no default for model_type "${modelType}"`);
    return { ...config, target_modules: [...targets] };
  }

  /** Only plain Linear layers (peft's torch.nn.Linear check; GPT-2's Conv1D and quantised layers are refused). */
  protected override checkTargetModule(key: string, target: Module): void {
    const base = target instanceof BaseTunerLayer ? target.base_layer : target;
    if (base instanceof Linear) return;
    if (base instanceof Conv1D) {
      throw new Error(`Target module ${key} is GPT-2's Conv1D, which ${this.methodName} does not support (peft 0.15.2 adapts only torch.nn.Linear here); use LoRA or IA3 for GPT-2, or target Linear layers`);
    }
    if (base instanceof QuantizedLinear) throw new Error(`Target module ${key} is quantised; ${this.methodName} rewrites the full-precision weight and cannot adapt it`);
    throw new Error(`Target module ${key} (${base.constructor.name}) is not supported. Currently, only \`torch.nn.Linear\` is supported by ${this.methodName}.`);
  }

  /** A new adapter layer of this method around a Linear. */
  protected abstract makeLayer(base: Linear): WeightTransformLayer;

  /** Add (or re-create) an adapter in one of this method's layers. */
  protected abstract addAdapter(layer: WeightTransformLayer, config: C, adapterName: string): void;

  protected createOrUpdate(config: C, adapterName: string, target: Module, key: string): void {
    if (target instanceof WeightTransformLayer) {
      this.addAdapter(target, config, adapterName);
      return;
    }
    const layer = this.makeLayer(target as Linear);
    layer.activeAdapters = [...this.activeAdapters];
    this.addAdapter(layer, config, adapterName);
    this.model.setSubmodule(key, layer);
  }
}
