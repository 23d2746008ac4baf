/** Containers: Sequential, ModuleList, ModuleDict (children named "0", "1", … or by key, as in PyTorch). */
import type { Tensor } from "../../tensor/index.js";
import { Module } from "../module.js";
import type { TensorModule } from "./activations.js";

/** Applies its children in order. */
export class Sequential extends Module implements TensorModule {
  constructor(...layers: TensorModule[]) {
    super();
    layers.forEach((m, i) => {
      this.registerModule(String(i), m);
    });
  }

  /** x through every child in order. */
  forward(x: Tensor): Tensor {
    let y = x;
    for (const [, m] of this.namedChildren()) y = (m as TensorModule).forward(y);
    return y;
  }
}

/** An indexable list of modules. */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(items: M[] = []) {
    super();
    items.forEach((m) => {
      this.push(m);
    });
  }

  /** Append a module. */
  push(m: M): void {
    this.registerModule(String(this.length), m);
  }

  /** Number of modules. */
  get length(): number {
    return this.namedChildren().length;
  }

  /** The module at index i (it may have been replaced by setSubmodule). */
  get(i: number): M {
    return this.getSubmodule(String(i)) as M;
  }

  /** Iterate over the modules. */
  *[Symbol.iterator](): Iterator<M> {
    for (const [, m] of this.namedChildren()) yield m as M;
  }
}

/** Modules by string key. */
export class ModuleDict<M extends Module = Module> extends Module {
  constructor(entries: Record<string, M> = {}) {
    super();
    for (const [k, m] of Object.entries(entries)) this.set(k, m);
  }

  /** Add or replace a module. */
  set(key: string, m: M): void {
    this.registerModule(key, m);
  }

  /** Remove the module under key (no-op when absent). */
  remove(key: string): void {
    this.removeModule(key);
  }

  /** The module under key. */
  get(key: string): M {
    return this.getSubmodule(key) as M;
  }

  /** Whether key is present. */
  has(key: string): boolean {
    return this.namedChildren().some(([k]) => k === key);
  }

  /** Keys in insertion order. */
  keys(): string[] {
    return this.namedChildren().map(([k]) => k);
  }
}
