/**
 * The state every adapter-carrying layer shares (HF peft's BaseTunerLayer): the wrapped base layer, the
 * adapters it holds, which are active, which are merged into the base weights, and whether adapters are
 * disabled. Methods implement the math (forward, delta weights); this class does the bookkeeping.
 */
import { Module, ModuleDict } from "../../nn/index.js";
import type { Tensor } from "../../tensor/index.js";

/** A layer that wraps a base layer and adds named adapters to it. */
export abstract class BaseTunerLayer extends Module {
  /** Names of the sub-modules/parameter dicts that hold adapter weights (e.g. lora_A, lora_B). */
  abstract readonly adapterLayerNames: readonly string[];
  /** Names of per-adapter settings that are not weights (kept in plain maps). */
  activeAdapters: string[] = ["default"];
  mergedAdapters: string[] = [];
  disableAdapters = false;
  base_layer: Module;

  constructor(base: Module) {
    super();
    this.base_layer = this.registerModule("base_layer", base);
  }

  /** The layer's kind as peft's repr names it in layer status ("lora.Linear"); the class name unless a method says otherwise. */
  moduleType(): string {
    return this.constructor.name;
  }

  /** Whether some adapter is merged into the base weights. */
  get merged(): boolean {
    return this.mergedAdapters.length > 0;
  }

  /** The base layer's weight (model code may read it through the wrapper, as in HF). */
  get weight(): Tensor {
    return this.base_layer.getTensor("weight");
  }

  /** Adapter names present in this layer. */
  adapterNames(): string[] {
    const names = new Set<string>();
    for (const attr of this.adapterLayerNames) {
      const holder = this.maybeChild(attr);
      if (holder instanceof ModuleDict) for (const k of holder.keys()) names.add(k);
      else if (holder) for (const k of holder.ownParameterNames()) if (holder.ownParameter(k)) names.add(k);
    }
    return [...names];
  }

  /** The adapter-holding child `attr` (a ModuleDict or a parameter dict), or null. */
  protected maybeChild(attr: string): Module | null {
    return this.namedChildren().find(([n]) => n === attr)?.[1] ?? null;
  }

  /** Parameters of one adapter in this layer. */
  adapterParameters(adapter: string): Tensor[] {
    const out: Tensor[] = [];
    for (const attr of this.adapterLayerNames) {
      const holder = this.maybeChild(attr);
      if (holder instanceof ModuleDict) {
        if (holder.has(adapter)) out.push(...holder.get(adapter).parameters());
      } else if (holder) {
        const p = holder.ownParameter(adapter);
        if (p) out.push(p);
      }
    }
    return out;
  }

  /** Make these adapters active; only their parameters stay trainable (HF's set_adapter). */
  setAdapter(names: string[]): void {
    for (const name of this.adapterNames()) {
      const trainable = names.includes(name);
      for (const p of this.adapterParameters(name)) p.requiresGrad = trainable;
    }
    this.activeAdapters = [...names];
  }

  /** Fold adapters into the base weights (all active ones by default). */
  merge(names: string[] = this.activeAdapters): void {
    for (const name of names) {
      if (!this.adapterNames().includes(name) || this.mergedAdapters.includes(name)) continue;
      this.mergeOne(name);
      this.mergedAdapters.push(name);
    }
  }

  /** Undo every merge, most recent first. */
  unmerge(): void {
    while (this.mergedAdapters.length > 0) this.unmergeOne(this.mergedAdapters.pop()!);
  }

  /** Remove one adapter's weights from this layer. */
  deleteAdapter(name: string): void {
    for (const attr of this.adapterLayerNames) {
      const holder = this.maybeChild(attr);
      if (holder instanceof ModuleDict) {
        if (holder.has(name)) holder.get(name).dispose();
        holder.remove(name);
      } else if (holder) {
        holder.ownParameter(name)?.dispose();
        holder.registerParameter(name, null);
      }
    }
    this.forgetAdapter(name);
    this.activeAdapters = this.activeAdapters.filter((a) => a !== name);
  }

  /** Adapters that the forward pass should add now (none when disabled or merged). */
  protected adaptersToApply(): string[] {
    if (this.disableAdapters || this.merged) return [];
    const present = new Set(this.adapterNames());
    return this.activeAdapters.filter((a) => present.has(a));
  }

  /** Run the base layer, unmerging first when adapters are disabled (HF does the same). */
  protected baseForward(x: Tensor): Tensor {
    if (this.disableAdapters && this.merged) this.unmerge();
    return (this.base_layer as unknown as { forward(x: Tensor): Tensor }).forward(x);
  }

  /** Add one adapter's change into the base weights. */
  protected abstract mergeOne(name: string): void;
  /** Subtract one adapter's change from the base weights. */
  protected abstract unmergeOne(name: string): void;
  /** Drop per-adapter settings (scalings, …) of a deleted adapter. */
  protected abstract forgetAdapter(name: string): void;
}

/** A module holding one parameter per adapter name (HF's nn.ParameterDict). */
export class ParameterDict extends Module {}
