/**
 * What LoHa and LoKr share (peft 0.15.2's lycoris_utils): the LyCORIS config fields, a layer that adds
 * x·ΔWᵀ for a ΔW built from the adapter's factors (rank dropout on ΔW's rows and module dropout of the whole
 * adapter while training), merge/unmerge W ± ΔW, and a tuner that wraps Linear targets.
 *
 * LyCORIS methods adapt Linear layers only (peft also has Conv2d, which no model here uses): GPT-2's Conv1D is
 * refused, as in peft 0.15, and target_modules has no per-model default.
 */
import { Conv1D, Linear, type Module } from "../../nn/index.js";
import {
  type Tensor,
  addInPlace,
  add,
  defaultGenerator,
  linear,
  mul,
  noGrad,
  tensor,
  tidy,
} from "../../tensor/index.js";
import { check, TARGETING_FIELDS, type PeftConfig } from "../config.js";
import { bool, field, integer, number, pick, recordOf } from "../../io/config-fields.js";
import { allLinearTargets, patternKey } from "../targets.js";
import { BaseTuner } from "./tuner.js";
import { BaseTunerLayer, type ParameterDict } from "./tuner-layer.js";

/** The fields LoHa and LoKr share (HF names). */
export interface LycorisConfig extends PeftConfig {
  /** Rank of the factors. */
  r: number;
  /** ΔW is scaled by alpha / r. */
  alpha: number;
  /** Probability of dropping each row of ΔW while training. */
  rank_dropout: number;
  /** Probability of skipping the whole adapter in a training forward. */
  module_dropout: number;
  /** Conv2d only in peft; kept for the file format. */
  use_effective_conv2d: boolean;
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
  /** Module-path regex (matched as peft's get_pattern_key) → rank, overriding r. */
  rank_pattern: Record<string, number>;
  /** Module-path regex → alpha, overriding alpha. */
  alpha_pattern: Record<string, number>;
  modules_to_save: string[] | null;
}

const probability = number({ min: 0, max: 1 });

/** The fields LoHa and LoKr share (peft 0.15.2): type and range, default, and what each does. */
export const LYCORIS_FIELDS = {
  ...pick(
    TARGETING_FIELDS,
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "modules_to_save",
  ),
  r: field(integer({ min: 1 }), 8, "The rank of the factors."),
  alpha: field(number(), 8, "ΔW is scaled by alpha / r."),
  rank_dropout: field(probability, 0, "Probability of dropping each row of ΔW while training."),
  module_dropout: field(probability, 0, "Probability of skipping the whole adapter in a training forward."),
  use_effective_conv2d: field(
    bool,
    false,
    "Conv2d layers only (which no model here has): factor the kernel dimensions too.",
  ),
  rank_pattern: field<Record<string, number>>(
    recordOf(integer({ min: 1 })),
    {},
    "Module-name pattern → rank, overriding r.",
  ),
  alpha_pattern: field<Record<string, number>>(
    recordOf(number()),
    {},
    "Module-name pattern → alpha, overriding alpha.",
  ),
} as const;

/** The shared check that spans two fields (peft's __post_init__), with a clear error. */
export function validateLycorisFields(c: LycorisConfig): void {
  const noLayers =
    c.layers_to_transform === null || (Array.isArray(c.layers_to_transform) && c.layers_to_transform.length === 0);
  check(
    !(c.layers_pattern && noLayers),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
}

/** How one adapter is set up in a layer (peft's update_layer arguments). */
export interface LycorisSettings {
  r: number;
  alpha: number;
  rankDropout: number;
  moduleDropout: number;
  /** true, false, or a method-specific mode (LoKr: "lycoris"). */
  initWeights: boolean | string;
  /** Divide the kept rows by their fraction after rank dropout (LoHa always does; LoKr with rank_dropout_scale). */
  rankDropoutScale: boolean;
}

/** A LyCORIS layer around a Linear: y = base(x) + x·ΔWᵀ for each active adapter. */
export abstract class LycorisLayer extends BaseTunerLayer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r = new Map<string, number>();
  readonly alpha = new Map<string, number>();
  readonly scaling = new Map<string, number>();
  readonly rankDropout = new Map<string, number>();
  readonly moduleDropout = new Map<string, number>();
  readonly rankDropoutScale = new Map<string, boolean>();

  constructor(base: Linear) {
    super(base);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.r.has(name);
  }

  /** Add (or re-create) an adapter. */
  abstract updateLayer(name: string, s: LycorisSettings): void;

  /** ΔW of one adapter as [out, in], scaling included, without dropout. */
  protected abstract deltaWeight(name: string): Tensor;

  /** Record an adapter's settings (scaling = alpha / r). */
  protected recordSettings(name: string, s: LycorisSettings): void {
    if (!Number.isInteger(s.r) || s.r <= 0)
      throw new Error(`\`r\` should be a positive integer value but the value passed is ${s.r}`);
    this.r.set(name, s.r);
    this.alpha.set(name, s.alpha);
    this.scaling.set(name, s.alpha / s.r);
    this.rankDropout.set(name, s.rankDropout);
    this.moduleDropout.set(name, s.moduleDropout);
    this.rankDropoutScale.set(name, s.rankDropoutScale);
  }

  /** Put `t` under `name` in a parameter dict (disposing what was there), or remove it when t is null. */
  protected setParameter(holder: ParameterDict, name: string, t: Tensor | null): void {
    const old = holder.ownParameter(name);
    holder.registerParameter(name, t);
    if (old && old !== t) old.dispose();
  }

  /**
   * ΔW of one adapter as [out, in] (peft's get_delta_weight). While training with rank_dropout, each row is kept
   * with probability 1 − rank_dropout and, with rankDropoutScale, the kept rows are divided by their fraction.
   */
  getDeltaWeight(name: string): Tensor {
    const weight = this.deltaWeight(name);
    const p = this.rankDropout.get(name) ?? 0;
    if (!this.training || !p) return weight;
    const u = defaultGenerator.uniform([this.outFeatures]);
    const draws = u.dataSync();
    u.dispose();
    const drop = new Float32Array(this.outFeatures);
    let kept = 0;
    for (let i = 0; i < drop.length; i++) {
      if (draws[i]! > p) {
        drop[i] = 1;
        kept++;
      }
    }
    if (this.rankDropoutScale.get(name)) {
      const meanKept = kept / drop.length;
      for (let i = 0; i < drop.length; i++) drop[i] = drop[i]! / meanKept;
    }
    return mul(weight, tensor(drop, [this.outFeatures, 1]));
  }

  /** Apply the layer: the base output plus x·ΔWᵀ of each active adapter (skipped with probability module_dropout while training). */
  forward(x: Tensor): Tensor {
    let result = this.baseForward(x);
    for (const name of this.adaptersToApply()) {
      if (!this.hasAdapter(name)) continue;
      const p = this.moduleDropout.get(name) ?? 0;
      if (this.training && p > 0) {
        const u = defaultGenerator.uniform([1]);
        const draw = u.dataSync()[0]!;
        u.dispose();
        if (!(draw > p)) continue;
      }
      result = add(result, linear(x, this.getDeltaWeight(name)));
    }
    return result;
  }

  protected mergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), this.deltaWeight(name))));
  }

  protected unmergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), mul(this.deltaWeight(name), -1))));
  }

  protected forgetAdapter(name: string): void {
    for (const m of [this.r, this.alpha, this.scaling, this.rankDropout, this.moduleDropout, this.rankDropoutScale])
      m.delete(name);
  }

  /** peft's set_scale: scaling = scale · alpha / r. */
  setScale(adapter: string, scale: number): void {
    if (!this.hasAdapter(adapter)) return;
    this.scaling.set(adapter, (scale * this.alpha.get(adapter)!) / this.r.get(adapter)!);
  }

  /** peft's scale_layer: multiply the active adapters' scalings. */
  scaleLayer(scale: number): void {
    if (scale === 1) return;
    for (const a of this.activeAdapters) if (this.hasAdapter(a)) this.scaling.set(a, this.scaling.get(a)! * scale);
  }

  /** peft's unscale_layer: divide by `scale`, or back to alpha / r when none is given. */
  unscaleLayer(scale?: number): void {
    for (const a of this.activeAdapters) {
      if (!this.hasAdapter(a)) continue;
      this.scaling.set(a, scale === undefined ? this.alpha.get(a)! / this.r.get(a)! : this.scaling.get(a)! / scale);
    }
  }

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, ` + `r={${[...this.r].map(([k, v]) => `${k}: ${v}`).join(", ")}}`
    );
  }
}

/** A LyCORIS method injected into a model (peft's LycorisTuner). */
export abstract class LycorisTuner<C extends LycorisConfig, L extends LycorisLayer> extends BaseTuner<C> {
  /** The method's name in messages ("LoHa", "LoKr"). */
  protected abstract readonly methodName: string;
  /** The method's config builder (makeXConfig): defaults filled in and checks run on plain objects passed to injectAdapter too. */
  protected abstract readonly makeConfig: (fields: C, warnUnknown: boolean) => C;
  /** This method's layer class (wraps a Linear). */
  protected abstract readonly layerClass: new (
    base: Linear,
  ) => L;
  /** The layer settings of the adapter for one module path. */
  protected abstract settingsFor(config: C, key: string): LycorisSettings;

  override injectAdapter(fields: C, adapterName: string): C {
    return super.injectAdapter(this.makeConfig(fields, false), adapterName);
  }

  /** No default targets (peft asks for them); "all-linear" expanded. */
  protected prepareConfig(config: C): C {
    const c: C = { ...config };
    if (c.target_modules === null)
      throw new Error(
        `Please specify \`target_modules\` in the ${this.methodName} config (LyCORIS methods have ` +
          `no per-model default), e.g. ["q_proj", "v_proj"] or "all-linear"`,
      );
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear")
      c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** Whether a module is already this method's layer. */
  protected isOwnLayer(m: Module): m is L {
    return m instanceof this.layerClass;
  }

  /** rank_pattern / alpha_pattern looked up on their own, as peft's get_pattern_key does. */
  protected rankAndAlpha(config: C, key: string): { r: number; alpha: number } {
    const rKey = patternKey(Object.keys(config.rank_pattern ?? {}), key);
    const alphaKey = patternKey(Object.keys(config.alpha_pattern ?? {}), key);
    return {
      r: (rKey !== null ? config.rank_pattern[rKey] : undefined) ?? config.r,
      alpha: (alphaKey !== null ? config.alpha_pattern[alphaKey] : undefined) ?? config.alpha,
    };
  }

  /** Only Linear layers (or this method's own layers, which get another adapter) can be adapted. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (this.isOwnLayer(target) || target instanceof Linear) return;
    if (target instanceof Conv1D) {
      throw new Error(
        `Target module ${key} is GPT-2's Conv1D, which ${this.methodName} does not support (peft ` +
          `0.15 adapts only Linear and Conv2d layers with LyCORIS methods); use LoRA or IA3 for ` +
          `GPT-2, or target Linear layers`,
      );
    }
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported by ${this.methodName}; ` +
        `currently only Linear layers are supported`,
    );
  }

  protected createOrUpdate(config: C, adapterName: string, target: Module, key: string): void {
    const settings = this.settingsFor(config, key);
    if (this.isOwnLayer(target)) {
      target.updateLayer(adapterName, settings);
      return;
    }
    this.checkTargetModule(key, target);
    const layer = new this.layerClass(target as Linear);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, settings);
    this.model.setSubmodule(key, layer);
  }

  /** This method's layers by module path. */
  lycorisLayers(): [string, L][] {
    return this.tunerLayers().filter((e): e is [string, L] => this.isOwnLayer(e[1]));
  }
}
