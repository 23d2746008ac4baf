/**
 * VeraModel (peft 0.15.2): VeRA layers injected into Linear and GPT-2 Conv1D targets, sharing one pair of frozen
 * projections per adapter: vera_A [r, in_max] then vera_B [out_max, r], drawn kaiming-uniform from torch's generator
 * seeded with projection_prng_key (peft's _init_vera_A_vera_B), sized by the largest targeted layer. They are saved
 * as `base_model.vera_A` / `base_model.vera_B` with save_projection, else redrawn on load from the key.
 */
import { Conv1D, Linear, Module } from "../../../nn/index.js";
import { TorchGenerator, type Tensor } from "../../../tensor/index.js";
import { ConfigError, CheckpointError } from "../../../errors.js";
import { HOST_NAME, type AdapterFiles } from "../../contract.js";
import type { PreTrainedModel } from "../../../models/pretrained.js";
import { LinearTuner } from "../linear-tuner.js";
import { checkTarget } from "../../targets.js";
import { VERA_TARGETS } from "../../mapping.js";
import { makeVeraConfig, type VeraConfig } from "./config.js";
import { VeraLinear, type VeraProjections } from "./layer.js";

/** The saved names of the shared projections (peft keys them without the adapter name). */
const PROJECTION_KEYS = [`${HOST_NAME}.vera_A`, `${HOST_NAME}.vera_B`] as const;

/** The saved key of a shared projection → its key in the model (the adapter name appended), other keys unchanged. */
export function projectionKeyOnLoad(key: string, adapterName: string): string {
  return (PROJECTION_KEYS as readonly string[]).includes(key) ? `${key}.${adapterName}` : key;
}

/** VeRA injected into a model. */
export class VeraModel extends LinearTuner<VeraConfig, VeraLinear> implements VeraProjections {
  readonly prefix = "vera_lambda_";
  protected readonly methodName = "VeRA";
  protected readonly defaultTargets = VERA_TARGETS;
  protected override readonly ownBias = "vera_only";
  protected override readonly acceptsConv1D = true;
  protected readonly buildConfig = makeVeraConfig;
  protected readonly layerClass = VeraLinear;
  /** The shared projections, one buffer per adapter (persistent only with save_projection). */
  readonly vera_A: Module;
  readonly vera_B: Module;

  constructor(model: PreTrainedModel) {
    super(model);
    this.vera_A = this.registerModule("vera_A", new Module());
    this.vera_B = this.registerModule("vera_B", new Module());
  }

  /** Add an adapter: peft's checks against the existing adapters, the projections drawn, then the layers. */
  protected override injectBuilt(config: VeraConfig, adapterName: string): VeraConfig {
    this.checkNewAdapterConfig(config);
    const [outDim, inDim] = this.largestTargetShape(this.prepareConfig(config));
    const generator = new TorchGenerator(config.projection_prng_key);
    this.vera_A.registerBuffer(adapterName, generator.kaimingUniform([config.r, inDim]), config.save_projection);
    this.vera_B.registerBuffer(adapterName, generator.kaimingUniform([outDim, config.r]), config.save_projection);
    try {
      return super.injectBuilt(config, adapterName);
    } catch (err) {
      this.dropProjections(adapterName);
      throw err;
    }
  }

  /** peft's _check_new_adapter_config: one projection key and one save_projection for all adapters, bias only with one. */
  private checkNewAdapterConfig(config: VeraConfig): void {
    const existing = [...this.peftConfig.values()];
    if (existing.length > 0 && config.bias !== "none")
      throw new ConfigError(
        "VeraModel supports only 1 adapter with bias. When using multiple adapters, set bias to " +
          "'none' for all adapters.",
      );
    for (const c of existing) {
      if (c.projection_prng_key !== config.projection_prng_key) {
        throw new ConfigError(
          `Vera PRNG initialisation key must be the same for all adapters. Got ` +
            `config.projection_prng_key=${config.projection_prng_key} but previous config had ` +
            `${c.projection_prng_key}.`,
        );
      }
      if (c.save_projection !== config.save_projection)
        throw new ConfigError(
          "VeRA projection weights must be saved for all adapters or none, but got both values of save_projection",
        );
    }
  }

  /** peft's _find_dim: the largest (out, in) over the targeted Linear / Conv1D layers. */
  private largestTargetShape(config: VeraConfig): [number, number] {
    let largest: [number, number] | null = null;
    for (const [key, m] of this.model.namedModules()) {
      if (key === "" || checkTarget(config, key) !== true) continue;
      const base = m instanceof VeraLinear ? m.base_layer : m;
      let shape: [number, number];
      if (base instanceof Linear) shape = [base.outFeatures, base.inFeatures];
      else if (base instanceof Conv1D) shape = [base.nf, base.nx];
      else continue;
      largest = largest === null ? shape : [Math.max(largest[0], shape[0]), Math.max(largest[1], shape[1])];
    }
    if (largest === null)
      throw new ConfigError(
        "No layers types compatible with VeRA were found. Please check `peft_config.target_modules`.",
      );
    return largest;
  }

  protected makeLayer(base: Linear | Conv1D): VeraLinear {
    return new VeraLinear(base, this);
  }

  protected addAdapter(layer: VeraLinear, config: VeraConfig, adapterName: string): void {
    layer.updateLayer(adapterName, config.r, config.vera_dropout, config.init_weights, config.d_initial);
  }

  /** With save_projection, the projections are saved beside the layers' vectors. */
  protected override finalizeSavedState(adapterName: string, state: Map<string, Tensor>): Map<string, Tensor> {
    if (this.peftConfig.get(adapterName)!.save_projection) {
      state.set(PROJECTION_KEYS[0], this.projection(this.vera_A, adapterName));
      state.set(PROJECTION_KEYS[1], this.projection(this.vera_B, adapterName));
    }
    return state;
  }

  /** Load hook: projections come from the file with save_projection (an error if absent), else from the key (saved ones are ignored, as peft does). */
  override loadAdapter(adapterName: string, files: AdapterFiles): void {
    const saveProjection = this.peftConfig.get(adapterName)?.save_projection;
    const present = PROJECTION_KEYS.filter((k) => files.tensors.has(k));
    if (saveProjection && present.length < 2) {
      throw new CheckpointError(
        `${files.where}: Specified to load vera_A and vera_B from state dictionary however they were not present!`,
        "set save_projection to false in adapter_config.json to redraw them from projection_prng_key",
      );
    }
    if (!saveProjection && present.length > 0) {
      process.emitWarning(
        `${files.where}: save_projection is false but vera_A/vera_B are in the file; they are ` +
          `ignored and redrawn from projection_prng_key, as peft does`,
      );
      const tensors = new Map(
        [...files.tensors].filter(([k]) => !present.includes(k as (typeof PROJECTION_KEYS)[number])),
      );
      return super.loadAdapter(adapterName, { ...files, tensors, sideFile: files.sideFile });
    }
    super.loadAdapter(adapterName, files);
  }

  override deleteAdapter(name: string): void {
    super.deleteAdapter(name);
    this.dropProjections(name);
  }

  private projection(holder: Module, adapterName: string): Tensor {
    return holder.namedBuffers().find(([k]) => k === adapterName)![1];
  }

  private dropProjections(name: string): void {
    for (const holder of [this.vera_A, this.vera_B]) {
      holder
        .namedBuffers()
        .find(([k]) => k === name)?.[1]
        .dispose();
      holder.registerBuffer(name, null);
    }
  }

  /** The VeRA layers by module path. */
  veraLayers(): [string, VeraLinear][] {
    return this.tunerLayers().filter((e): e is [string, VeraLinear] => e[1] instanceof VeraLinear);
  }
}
