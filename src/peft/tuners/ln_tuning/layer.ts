/**
 * LN tuning's layer (peft's LNTuningLayer): each adapter is a trainable copy of the wrapped module (a LayerNorm or
 * RMSNorm), run in its place. Only one adapter can be active or merged at a time, as in peft. Merging swaps the copy
 * with the base module, so it is exact both ways and merge_and_unload leaves the trained copy in the model.
 */
import { type Module, ModuleDict, cloneModule, type TensorLayer } from "../../../nn/index.js";
import type { Tensor } from "../../../tensor/index.js";
import { BaseTunerLayer } from "../tuner-layer.js";

/** A module wrapped with trainable copies of itself, one per adapter. */
export class LNTuningLayer extends BaseTunerLayer {
  readonly adapterLayerNames = ["ln_tuning_layers"] as const;
  ln_tuning_layers: ModuleDict<TensorLayer>;

  constructor(base: TensorLayer) {
    super(base);
    this.ln_tuning_layers = this.registerModule("ln_tuning_layers", new ModuleDict<TensorLayer>());
  }

  /** Add (or re-create) an adapter: a fresh copy of the base module (peft's update_layer). */
  updateLayer(name: string): void {
    if (this.ln_tuning_layers.has(name)) this.ln_tuning_layers.get(name).dispose();
    this.ln_tuning_layers.set(name, cloneModule(this.base_layer as TensorLayer));
    this.setAdapter(this.activeAdapters);
  }

  /** Apply the active adapter's copy (or the base module when disabled, merged or not adapted here). */
  forward(x: Tensor): Tensor {
    const names = this.adaptersToApply();
    if (names.length === 0) return this.baseForward(x);
    if (names.length > 1) {
      throw new Error(
        `Trying to run forward with ${names.length} active adapters, but LN tuning does not allow ` +
          `inference with more than one adapter at a time; activate one with setAdapter`,
      );
    }
    return this.ln_tuning_layers.get(names[0]!).forward(x);
  }

  /** Merge one adapter (peft refuses several: only one copy can take the base module's place); another merged one is unmerged first. */
  override merge(names: string[] = this.activeAdapters): void {
    const present = this.adapterNames();
    const toMerge = names.filter((n) => present.includes(n) && !this.mergedAdapters.includes(n));
    if (toMerge.length === 0) return;
    if (toMerge.length > 1)
      throw new Error(
        `Trying to merge ${toMerge.length} adapters, but LN tuning does not allow merging more ` +
          `than one adapter at a time`,
      );
    if (this.merged) this.unmerge();
    super.merge(toMerge);
  }

  /** Swap the adapter's copy and the base module. */
  private swap(name: string): void {
    const copy = this.ln_tuning_layers.get(name);
    const base = this.base_layer as TensorLayer;
    this.base_layer = this.registerModule("base_layer", copy as Module);
    this.ln_tuning_layers.set(name, base);
  }

  protected mergeOne(name: string): void {
    this.swap(name);
  }

  protected unmergeOne(name: string): void {
    this.swap(name);
  }

  protected forgetAdapter(_name: string): void {}

  protected override extraRepr(): string {
    return `adapters=[${this.adapterNames().join(", ")}]`;
  }
}
