/**
 * The host of the methods that adapt Linear layers (and, for FourierFT and VeRA, GPT-2's Conv1D): FourierFT, VeRA,
 * OFT, BOFT, HRA, Bone and Poly. It gives them target_modules from a per-model-type table when not given
 * ("all-linear" expanded), their own bias value ("fourier_only", "oft_only", …) meaning the biases of the adapted
 * layers (BaseTuner's "lora_only"), the refusal of layers peft refuses, and one way to wrap a target. It also holds
 * the layer that adds x·ΔWᵀ on a Linear or Conv1D and merges ΔW in the weight's own layout (FourierFT and VeRA).
 */
import { Conv1D, Linear, QuantizedLinear, type Module } from "../../nn/index.js";
import { addInPlace, mul, noGrad, parameter, tidy, transpose, type Tensor } from "../../tensor/index.js";
import { ConfigError } from "../../errors.js";
import type { ConfigBuilder } from "../config.js";
import { allLinearTargets } from "../targets.js";
import { BaseTuner, fanInFanOutFor, type TunerConfig } from "./tuner.js";
import { BaseTunerLayer, type ParameterDict } from "./tuner-layer.js";

/** Put a new trainable `value` under `name` in a parameter dict, disposing what was there. */
export function setAdapterParameter(dict: ParameterDict, name: string, value: Tensor): void {
  const old = dict.ownParameter(name);
  dict.registerParameter(name, parameter(value));
  if (old) old.dispose();
}

/** A layer whose adapters add x·ΔWᵀ (ΔW [out, in]) to a Linear's or Conv1D's output; merging adds ΔW to the weight. */
export abstract class AdditiveLayer extends BaseTunerLayer {
  /** ΔW of one adapter as [out, in]. */
  abstract getDeltaWeight(name: string): Tensor;

  /** Whether the base is GPT-2's Conv1D, whose weight is stored [in, out]. */
  get isTargetConv1dLayer(): boolean {
    return this.base_layer instanceof Conv1D;
  }

  /** ΔW laid out as the stored weight: transposed for Conv1D. */
  private storedDelta(name: string): Tensor {
    const delta = this.getDeltaWeight(name);
    return this.isTargetConv1dLayer ? transpose(delta) : delta;
  }

  protected mergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), this.storedDelta(name))));
  }

  protected unmergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), mul(this.storedDelta(name), -1))));
  }
}

/** The config fields this host reads. */
export type LinearTunerConfig = TunerConfig & { target_modules: string | string[] | null; fan_in_fan_out?: boolean };

/** An injection method over Linear layers (and Conv1D where `acceptsConv1D`), with one layer class of its own. */
export abstract class LinearTuner<C extends LinearTunerConfig, L extends BaseTunerLayer> extends BaseTuner<C> {
  /** The method's name in messages ("FourierFT"). */
  protected abstract readonly methodName: string;
  /** Default target_modules by model_type. */
  protected abstract readonly defaultTargets: Readonly<Record<string, readonly string[]>>;
  /** The bias value that trains the adapted layers' biases ("fourier_only"), or null when the method has none. */
  protected readonly ownBias: string | null = null;
  /** Whether GPT-2's Conv1D can be adapted (FourierFT, VeRA); peft 0.15.2 refuses it for the others. */
  protected readonly acceptsConv1D: boolean = false;
  /** The method's config builder (defaults and checks). */
  protected abstract readonly buildConfig: ConfigBuilder<C>;
  /** The method's layer class (a target that already is one gets another adapter). */
  protected abstract readonly layerClass: abstract new (
    ...args: never[]
  ) => L;

  /** A new layer of this method around a target. */
  protected abstract makeLayer(base: Linear | Conv1D): L;

  /** Add (or re-create) an adapter in one of this method's layers. */
  protected abstract addAdapter(layer: L, config: C, adapterName: string, key: string): void;

  /** Add an adapter; plain config objects (not made by the method's config function) get the defaults and checks too. */
  override injectAdapter(fields: C, adapterName: string): C {
    return this.injectBuilt(this.buildConfig(fields, false), adapterName);
  }

  /** Add an adapter from a complete config; methods with checks across adapters or shared state override this. */
  protected injectBuilt(config: C, adapterName: string): C {
    return super.injectAdapter(config, adapterName);
  }

  /** Default targets by model type, "all-linear" expanded. */
  protected prepareConfig(config: C): C {
    const c: C = { ...config };
    const modelType = this.model.config.model_type;
    if (c.target_modules === null) {
      const t = this.defaultTargets[modelType];
      if (!t)
        throw new ConfigError(
          `Please specify \`target_modules\` in the ${this.methodName} config: there is no default ` +
            `for model_type "${modelType}"`,
        );
      c.target_modules = [...t];
    }
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear")
      c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** The method's own bias value trains the adapted layers' biases (the generic "lora_only"). */
  protected override markOnlyAdaptersTrainable(config: C): void {
    super.markOnlyAdaptersTrainable(
      this.ownBias !== null && config.bias === this.ownBias ? { ...config, bias: "lora_only" } : config,
    );
  }

  /** Linear layers, Conv1D where accepted, and this method's own layers; anything else is refused as peft does. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof this.layerClass || target instanceof Linear) return;
    if (target instanceof Conv1D) {
      if (this.acceptsConv1D) return;
      throw new Error(
        `Target module ${key} is GPT-2's Conv1D, which ${this.methodName} does not support (peft ` +
          "0.15.2 adapts only torch.nn.Linear here); use LoRA, IA3, VeRA or FourierFT for GPT-2, or target Linear " +
          "layers",
      );
    }
    if (target instanceof QuantizedLinear)
      throw new Error(
        `Target module ${key} is quantised; ${this.methodName} adapts only full-precision weights ` +
          "(use LoRA for quantised models)",
      );
    const supported = this.acceptsConv1D
      ? "`torch.nn.Linear` and `transformers.pytorch_utils.Conv1D`"
      : "`torch.nn.Linear`";
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported. Currently, only ${supported} ` +
        `are supported by ${this.methodName}.`,
    );
  }

  protected createOrUpdate(config: C, adapterName: string, target: Module, key: string): void {
    if (target instanceof this.layerClass) {
      this.addAdapter(target, config, adapterName, key);
      return;
    }
    const base = target as Linear | Conv1D;
    if (config.fan_in_fan_out !== undefined)
      fanInFanOutFor(config as { fan_in_fan_out: boolean }, base, "torch.nn.Linear");
    const layer = this.makeLayer(base);
    layer.activeAdapters = [...this.activeAdapters];
    this.addAdapter(layer, config, adapterName, key);
    this.model.setSubmodule(key, layer);
  }
}
