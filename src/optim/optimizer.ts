/**
 * The Optimizer base class with PyTorch's semantics: parameter groups whose options default from the optimizer's
 * defaults, zeroGrad with set_to_none, and state dicts keyed by parameter index in group order.
 *
 * Per-parameter state is created lazily, the first time a parameter is updated. Frozen parameters and parameters
 * without a gradient are skipped and never get state: with PEFT most parameters are frozen, so this is where the
 * memory of optimizer moments is saved.
 */
import { backend } from "../backend/index.js";
import { keep, noGrad, tidy } from "../tensor/engine.js";
import { tensor, Tensor } from "../tensor/tensor.js";
import { fmtShape } from "../tensor/shape.js";

/** A hyper-parameter value that survives JSON (numbers, flags, tuples such as betas). */
export type HyperValue = number | boolean | readonly number[];

/** Options every optimizer has; subclasses add theirs. */
export interface BaseOptions {
  lr: number;
}

/** A parameter group: its tensors plus every option (filled in from the defaults). */
export type ParamGroup<O extends BaseOptions> = O & { params: Tensor[] };

/** What the constructor accepts for a group: its tensors and any options that differ from the defaults. */
export type ParamGroupInput<O extends BaseOptions> = Partial<O> & { params: Tensor[] };

/** The state of one parameter: tensors (moments, momentum buffers) and numbers (step counts). */
export type ParamState = Record<string, Tensor | number>;

/** A serialisable snapshot of an optimizer (PyTorch's optimizer.state_dict(), camelCased). */
export interface OptimizerStateDict {
  /** Per-parameter state keyed by the parameter's index over all groups, in group order; tensors as flat values. */
  state: Record<number, Record<string, Float32Array | number[] | number>>;
  /** Each group's options (including the current, possibly scheduled, lr) and the indices of its parameters. */
  paramGroups: (Record<string, HyperValue> & { params: number[] })[];
}

/** Whether t can be updated in place by a kernel that takes a bare storage. */
export function ownsStorage(t: Tensor): boolean {
  return t.isContiguous() && t.offset === 0 && t.size === t.storage.size;
}

/** Base class of optimizers: subclasses implement `update` for one parameter. */
export abstract class Optimizer<O extends BaseOptions = BaseOptions> {
  /** Options a group gets when it does not set them. */
  readonly defaults: Readonly<O>;
  /** The groups; schedulers and users may change options (lr above all) between steps. */
  readonly paramGroups: ParamGroup<O>[] = [];
  /** Lazily created state of the parameters that have been updated. */
  protected readonly state = new Map<Tensor, ParamState>();

  constructor(params: readonly Tensor[] | readonly ParamGroupInput<O>[], defaults: O) {
    this.defaults = Object.freeze({ ...defaults });
    if (params.length === 0) throw new Error("optimizer got an empty parameter list");
    const groups =
      params[0] instanceof Tensor
        ? [{ params: [...(params as Tensor[])] } as ParamGroupInput<O>]
        : (params as ParamGroupInput<O>[]);
    for (const g of groups) this.addParamGroup(g);
  }

  /** Add a group (PyTorch's add_param_group); missing options come from the defaults. */
  addParamGroup(group: ParamGroupInput<O>): void {
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const p of group.params) {
      if (!(p instanceof Tensor)) throw new Error("optimizer params must be Tensors");
      if (seen.has(p)) throw new Error("some parameters appear in more than one parameter group (or twice in one)");
      if (!p.isLeaf) throw new Error("optimizers can only update leaf tensors (a parameter must not have a gradFn)");
      seen.add(p);
    }
    const full = { ...this.defaults } as ParamGroup<O>;
    for (const [k, v] of Object.entries(group))
      if (v !== undefined) (full as unknown as Record<string, unknown>)[k] = v;
    full.params = [...group.params];
    this.validate(full);
    this.paramGroups.push(full);
  }

  /** Check a group's options; throws with a clear message. */
  protected validate(group: ParamGroup<O>): void {
    if (!(group.lr >= 0)) throw new Error(`invalid learning rate: ${group.lr}`);
  }

  /**
   * Forget the gradients. By default (PyTorch's set_to_none=True) grads become null and their storages are
   * freed, so the next backward allocates fresh ones; setToNone=false fills them with zeros instead.
   */
  zeroGrad(setToNone = true): void {
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        if (!p.grad) continue;
        if (setToNone) {
          p.grad.dispose();
          p.grad = null;
        } else if (ownsStorage(p.grad)) {
          backend().fill(p.grad.storage, 0);
        } else {
          // A view cannot be filled through its storage without touching other tensors: drop it instead.
          p.grad.dispose();
          p.grad = null;
        }
      }
    }
  }

  /** One update of every trainable parameter that has a gradient. */
  step(): void {
    // noGrad: the update must not be recorded; tidy: temporaries of the update are freed at once.
    noGrad(() =>
      tidy(() => {
        for (const group of this.paramGroups) {
          for (const p of group.params) {
            if (!p.requiresGrad || p.grad === null) continue;
            if (p.grad.size !== p.size) {
              throw new Error(
                `gradient of shape ${fmtShape(p.grad.shape)} does not match parameter of shape ${fmtShape(p.shape)}`,
              );
            }
            const st = this.state.get(p) ?? {};
            this.state.set(p, st);
            this.update(p, p.grad, group, st);
          }
        }
      }),
    );
  }

  /** Update one parameter in place given its gradient, its group's options and its (initially empty) state. */
  protected abstract update(param: Tensor, grad: Tensor, group: ParamGroup<O>, state: ParamState): void;

  /** A state tensor that outlives the scopes of the training loop (moments must persist across steps). */
  protected keepState(t: Tensor): Tensor {
    return keep(t);
  }

  /** The state of a parameter (undefined if it was never updated): for tests and inspection. */
  getState(param: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(param);
  }

  /** Number of parameters that have state. */
  get stateSize(): number {
    return this.state.size;
  }

  private allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** A snapshot of the state and the group options (copies: later steps do not change it). */
  stateDict(): OptimizerStateDict {
    const index = new Map(this.allParams().map((p, i) => [p, i]));
    const state: OptimizerStateDict["state"] = {};
    for (const [p, st] of this.state) {
      const entry: Record<string, Float32Array | number> = {};
      for (const [k, v] of Object.entries(st)) entry[k] = typeof v === "number" ? v : (v.dataSync() as Float32Array);
      state[index.get(p)!] = entry;
    }
    let next = 0;
    const paramGroups = this.paramGroups.map((g) => {
      const out: Record<string, HyperValue> = {};
      for (const [k, v] of Object.entries(g))
        if (k !== "params") out[k] = Array.isArray(v) ? [...(v as number[])] : (v as HyperValue);
      return { ...out, params: g.params.map(() => next++) };
    });
    return { state, paramGroups };
  }

  /** Restore a snapshot taken from an optimizer over parameters of the same shapes, in the same group order. */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new Error(
        `loaded state dict has ${sd.paramGroups.length} parameter groups, the optimizer has ${this.paramGroups.length}`,
      );
    }
    sd.paramGroups.forEach((g, i) => {
      if (g.params.length !== this.paramGroups[i]!.params.length) {
        throw new Error(
          `loaded parameter group ${i} has ${g.params.length} parameters, the optimizer's has ` +
            `${this.paramGroups[i]!.params.length}`,
        );
      }
    });
    // Map saved indices to this optimizer's tensors through the group structure, as PyTorch does.
    const byIndex = new Map<number, Tensor>();
    for (const [i, g] of sd.paramGroups.entries()) {
      for (const [j, id] of g.params.entries()) byIndex.set(id, this.paramGroups[i]!.params[j]!);
    }
    const restored = new Map<Tensor, ParamState>();
    try {
      for (const [id, entry] of Object.entries(sd.state)) {
        const p = byIndex.get(Number(id));
        if (!p) throw new Error(`loaded state refers to parameter ${id}, which no group lists`);
        const st: ParamState = {};
        for (const [k, v] of Object.entries(entry)) {
          if (typeof v === "number") st[k] = v;
          else {
            if (v.length !== p.size)
              throw new Error(`state "${k}" of parameter ${id} has ${v.length} values, the parameter has ${p.size}`);
            st[k] = keep(tensor(Float32Array.from(v), p.shape));
          }
        }
        restored.set(p, st);
      }
    } catch (err) {
      for (const st of restored.values()) disposeState(st);
      throw err;
    }
    sd.paramGroups.forEach((g, i) => {
      const group = this.paramGroups[i]! as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(g)) if (k !== "params") group[k] = Array.isArray(v) ? [...v] : v;
    });
    for (const st of this.state.values()) disposeState(st);
    this.state.clear();
    for (const [p, st] of restored) this.state.set(p, st);
  }

  /** Free every state tensor (the optimizer can still step: state is recreated from scratch). */
  dispose(): void {
    for (const st of this.state.values()) disposeState(st);
    this.state.clear();
  }
}

function disposeState(st: ParamState): void {
  for (const v of Object.values(st)) if (typeof v !== "number") v.dispose();
}
