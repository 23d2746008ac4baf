/**
 * Module: a tree of named child modules, parameters and buffers with PyTorch's semantics (insertion order,
 * dotted paths, state dicts, train/eval). Names are the Hugging Face Python names, because PEFT's target
 * matching and saved adapter keys are built from them.
 */
import { Tensor, contiguous, keep, noGrad } from "../tensor/index.js";
import { fmtShape, sameShape } from "../tensor/shape.js";
import { inBuildDtype } from "./build.js";

/** A flat mapping from dotted names to tensors (PyTorch's state_dict). */
export type StateDict = Map<string, Tensor>;

/** What loadStateDict found besides the keys it loaded. */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/** Base class of every layer and model. */
export class Module {
  /** Train mode enables dropout; eval mode disables it. */
  training = true;
  private readonly params = new Map<string, Tensor | null>();
  private readonly buffers = new Map<string, Tensor | null>();
  private readonly nonPersistent = new Set<string>();
  private readonly children = new Map<string, Module | null>();

  /**
   * Register (or replace) a parameter under `name`; the tensor survives memory scopes. Inside buildModules with a
   * half dtype, a float32 tensor is stored converted (and frozen): use the returned tensor.
   */
  registerParameter<T extends Tensor | null>(name: string, t: T): T {
    checkName(name);
    const stored = (t && inBuildDtype(t)) as T;
    if (stored) keep(stored);
    this.params.set(name, stored);
    return stored;
  }

  /** Register a non-trainable tensor (saved in the state dict unless persistent is false). */
  registerBuffer<T extends Tensor | null>(name: string, t: T, persistent = true): T {
    checkName(name);
    if (t) keep(t);
    this.buffers.set(name, t);
    if (persistent) this.nonPersistent.delete(name);
    else this.nonPersistent.add(name);
    return t;
  }

  /** Register (or replace) a child module under `name`. */
  registerModule<M extends Module | null>(name: string, m: M): M {
    checkName(name);
    this.children.set(name, m);
    return m;
  }

  /** Unregister a child module (no-op when absent). */
  removeModule(name: string): void {
    this.children.delete(name);
  }

  /** Direct children in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children].filter((e): e is [string, Module] => e[1] !== null);
  }

  /** This module and all descendants with dotted paths ("" for this one); each module once. */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (m: Module, path: string) => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([path, m]);
      for (const [name, child] of m.namedChildren()) walk(child, path ? `${path}.${name}` : name);
    };
    walk(this, prefix);
    return out;
  }

  /**
   * A copy of this module tree holding the same parameter and buffer tensors (PyTorch's clone_module with
   * share_weights, which peft's layer_replication uses): fields that point at a child point at its copy.
   */
  cloneSharingWeights(): this {
    const copy = Object.assign(Object.create(Object.getPrototypeOf(this) as object) as object, this) as this;
    Object.assign(copy, {
      params: new Map(this.params),
      buffers: new Map(this.buffers),
      nonPersistent: new Set(this.nonPersistent),
      children: new Map(),
    });
    const fields = copy as unknown as Record<string, unknown>;
    for (const [name, child] of this.children) {
      const cloned = child === null ? null : child.cloneSharingWeights();
      copy.children.set(name, cloned);
      for (const key of Object.keys(fields)) if (child !== null && fields[key] === child) fields[key] = cloned;
    }
    return copy;
  }

  /** All modules below and including this one. */
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Parameters with dotted paths, each tensor once (a tied weight appears under its first name). */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [path, m] of this.namedModules()) {
      for (const [name, p] of m.params) {
        if (!p || seen.has(p)) continue;
        seen.add(p);
        out.push([path ? `${path}.${name}` : name, p]);
      }
    }
    return out;
  }

  /** All parameters, each once. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Buffers with dotted paths. */
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules()) {
      for (const [name, b] of m.buffers) if (b) out.push([path ? `${path}.${name}` : name, b]);
    }
    return out;
  }

  /** This module's own parameter by name (not descendants'). */
  ownParameter(name: string): Tensor | null {
    return this.params.get(name) ?? null;
  }

  /** Names of this module's own parameters, in order. */
  ownParameterNames(): string[] {
    return [...this.params.keys()];
  }

  /** The module at a dotted path ("" is this module), or an error naming the first missing part. */
  getSubmodule(path: string): Module {
    if (path === "") return this;
    let m: Module = this;
    for (const part of path.split(".")) {
      const next = m.children.get(part);
      if (!next) throw new Error(`${m.constructor.name} has no submodule "${part}" (looking up "${path}")`);
      m = next;
    }
    return m;
  }

  /**
   * Replace the module at a dotted path. Fields of the parent that held the old module are updated too,
   * so forward passes written against fields see the replacement (what PyTorch's setattr does). Fields that may
   * be replaced are therefore typed by what their parent uses (TensorLayer), not by the class first put there.
   */
  setSubmodule(path: string, replacement: Module): void {
    const dot = path.lastIndexOf(".");
    const parent = this.getSubmodule(dot < 0 ? "" : path.slice(0, dot));
    const name = path.slice(dot + 1);
    const old = parent.children.get(name);
    if (old === undefined)
      throw new Error(`${parent.constructor.name} has no submodule "${name}" to replace (path "${path}")`);
    parent.children.set(name, replacement);
    const fields = parent as unknown as Record<string, unknown>;
    for (const key of Object.keys(fields)) if (old !== null && fields[key] === old) fields[key] = replacement;
  }

  /** The parameter or buffer at a dotted path. */
  getTensor(path: string): Tensor {
    const dot = path.lastIndexOf(".");
    const owner = this.getSubmodule(dot < 0 ? "" : path.slice(0, dot));
    const name = path.slice(dot + 1);
    const t = owner.params.get(name) ?? owner.buffers.get(name);
    if (!t) throw new Error(`${owner.constructor.name} has no parameter or buffer "${name}" (path "${path}")`);
    return t;
  }

  /** Every persistent parameter and buffer by dotted path, tied tensors under each of their names. */
  stateDict(): StateDict {
    const sd: StateDict = new Map();
    const walk = (m: Module, prefix: string, seen: Set<Module>) => {
      if (seen.has(m)) return;
      seen.add(m);
      for (const [name, p] of m.params) if (p) sd.set(prefix + name, p);
      for (const [name, b] of m.buffers) if (b && !m.nonPersistent.has(name)) sd.set(prefix + name, b);
      for (const [name, child] of m.namedChildren()) walk(child, `${prefix}${name}.`, seen);
    };
    walk(this, "", new Set());
    return sd;
  }

  /**
   * Copy values from a state dict into this module's tensors (in place, so tied weights stay tied).
   * A shape mismatch is an error; with strict (default) so are missing or unexpected keys.
   */
  loadStateDict(sd: ReadonlyMap<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((k) => !sd.has(k));
    const unexpectedKeys = [...sd.keys()].filter((k) => !own.has(k));
    if ((opts.strict ?? true) && (missingKeys.length > 0 || unexpectedKeys.length > 0)) {
      throw new Error(
        `loadStateDict: ${missingKeys.length} missing key(s) ` +
          `[${missingKeys.slice(0, 5).join(", ")}${missingKeys.length > 5 ? ", …" : ""}] ` +
          `and ${unexpectedKeys.length} unexpected key(s) ` +
          `[${unexpectedKeys.slice(0, 5).join(", ")}${unexpectedKeys.length > 5 ? ", …" : ""}]; ` +
          `pass { strict: false } to load the matching keys only`,
      );
    }
    noGrad(() => {
      for (const [key, target] of own) {
        const src = sd.get(key);
        if (!src) continue;
        if (!sameShape(src.shape, target.shape)) {
          throw new Error(
            `loadStateDict: "${key}" has shape ${fmtShape(src.shape)} in the state dict but ` +
              `${fmtShape(target.shape)} in the model`,
          );
        }
        target.copy_(src);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /** Set train (true) or eval (false) mode on this module and all descendants. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  /** Eval mode (no dropout). */
  eval(): this {
    return this.train(false);
  }

  /** Set requiresGrad on every parameter (freeze with false). */
  requiresGrad_(value = true): this {
    for (const p of this.parameters()) p.requiresGrad = value;
    return this;
  }

  /** Number of parameter elements (optionally only trainable ones). */
  numParameters(onlyTrainable = false): number {
    return this.parameters().reduce((n, p) => n + (onlyTrainable && !p.requiresGrad ? 0 : p.size), 0);
  }

  /** Free every parameter and buffer of this module tree. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }

  /** A short description for logs ("Linear(in=4, out=2)"); layers override extraRepr. */
  toString(): string {
    const extra = this.extraRepr();
    return `${this.constructor.name}(${extra})`;
  }

  /** Layer-specific part of toString(). */
  protected extraRepr(): string {
    return "";
  }
}

function checkName(name: string): void {
  if (name === "" || name.includes("."))
    throw new Error(`invalid module/parameter name "${name}": it must be non-empty and contain no "."`);
}

/**
 * A deep copy of a module tree with fresh copies of its parameters and buffers (PyTorch's copy.deepcopy of a
 * module). Shared tensors and modules stay shared within the copy; configs and functions are shared with the
 * original.
 */
export function cloneModule<M extends Module>(m: M): M {
  const memo = new Map<unknown, unknown>();
  const copyValue = (v: unknown): unknown => {
    if (memo.has(v)) return memo.get(v);
    if (v instanceof Module) {
      const copy = Object.create(Object.getPrototypeOf(v)) as Record<string, unknown>;
      memo.set(v, copy);
      for (const [k, field] of Object.entries(v)) copy[k] = copyValue(field);
      return copy;
    }
    if (v instanceof Tensor) {
      const copy = keep(noGrad(() => contiguous(v, true)));
      copy.requiresGrad = v.requiresGrad;
      memo.set(v, copy);
      return copy;
    }
    if (v instanceof Map) {
      const copy = new Map();
      memo.set(v, copy);
      for (const [k, x] of v) copy.set(k, copyValue(x));
      return copy;
    }
    if (v instanceof Set) return new Set(v);
    return v;
  };
  return copyValue(m) as M;
}

/**
 * What a model's layer field holds when setSubmodule may replace it: the Linear, Conv1D or Embedding the model
 * built, or what PEFT or quantisation puts in its place (an adapter layer, a modules_to_save wrapper, a quantised
 * Linear). The parent only calls forward on it.
 */
export interface TensorLayer extends Module {
  /** Map the input (activations, or token ids for embeddings) to the output. */
  forward(x: Tensor): Tensor;
}

/** A TensorLayer slot holding token embeddings: tied heads and prompt tuning read its table. */
export interface EmbeddingLayer extends TensorLayer {
  /** The [vocab, dim] table (through an adapter layer: the base table). */
  readonly weight: Tensor;
}
