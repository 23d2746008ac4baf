/**
 * Poly layer (peft's poly.Linear) and its router. Each adapter holds n_skills LoRA pairs per split of the features
 * (poly_lora_A [splits, skills, in/splits, r], poly_lora_B [splits, skills, r, out/splits]) and a router with one row
 * of logits per task (module_logits [tasks, splits·skills]). For batch row b of task t:
 *
 *   w[b, q, s] = σ(logits[t, q, s]) / (Σₛ σ(logits[t, q, s]) + 1e-12)      (training: a relaxed-Bernoulli sample)
 *   A_b = Σₛ w[b, q, s] A[q, s]  (per split q),  B_b likewise
 *   y_b = base(x_b) + x_b·A_b·B_b / r
 *
 * The mixture depends on the batch's task ids, so Poly cannot be merged into the weights (nor can it in peft).
 */
import type { Linear } from "../../../nn/index.js";
import { Module, ModuleDict } from "../../../nn/index.js";
import { kaimingUniformA5, uniform } from "../../../nn/init.js";
import {
  type Tensor,
  add,
  defaultGenerator,
  div,
  indexSelect,
  log,
  matmul,
  parameter,
  permute,
  reshape,
  sigmoid,
  sub,
  sum,
  zeros,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";
import type { PolyConfig } from "./config.js";

const EPS = 1e-12;

/** peft's PolyRouter: per-task logits over the skills of each split. */
export class PolyRouter extends Module {
  module_logits: Tensor;

  constructor(
    readonly nTasks: number,
    readonly nSplits: number,
    readonly nSkills: number,
  ) {
    super();
    this.module_logits = this.registerParameter(
      "module_logits",
      parameter(uniform([nTasks, nSplits * nSkills], 0.001)),
    );
  }

  /** Mixing weights [batch, splits, skills] of the rows' tasks. */
  forward(taskIds: Tensor): Tensor {
    const ids = Array.from(taskIds.dataSync());
    const bad = ids.find((t) => t < 0 || t >= this.nTasks || !Number.isInteger(t));
    if (bad !== undefined) throw new Error(`Only ${this.nTasks} tasks available. Found task id = ${bad}`);
    const logits = reshape(indexSelect(this.module_logits, 0, taskIds), [-1, this.nSplits, this.nSkills]);
    let gates: Tensor;
    if (this.training) {
      // RelaxedBernoulli(temperature 1).rsample(): σ(logits + log u − log(1 − u)), u ~ U(0, 1) kept off 0 and 1.
      const u = defaultGenerator.uniform(logits.shape, 1e-6, 1 - 1e-6);
      gates = sigmoid(add(logits, sub(log(u), log(sub(1, u)))));
    } else {
      gates = sigmoid(logits);
    }
    return div(gates, add(sum(gates, -1, true), EPS));
  }
}

/** Poly on a Linear. */
export class PolyLinear extends BaseTunerLayer {
  readonly adapterLayerNames = ["poly_lora_A", "poly_lora_B", "poly_router"] as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r = new Map<string, number>();
  poly_lora_A: ParameterDict;
  poly_lora_B: ParameterDict;
  poly_router: ModuleDict<PolyRouter>;
  /** The task of each batch row for the forward in progress (set by PolyModel, as peft's pre-forward hook does). */
  taskIds: Tensor | null = null;

  constructor(base: Linear) {
    super(base);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    this.poly_lora_A = this.registerModule("poly_lora_A", new ParameterDict());
    this.poly_lora_B = this.registerModule("poly_lora_B", new ParameterDict());
    this.poly_router = this.registerModule("poly_router", new ModuleDict<PolyRouter>());
  }

  /**
   * Add (or re-create) an adapter (peft's update_layer): A Kaiming-uniform per skill and split (fan-in in/splits),
   * B zeros (init_weights) or Kaiming-uniform (fan-in r), router logits U(−0.001, 0.001).
   */
  updateLayer(name: string, c: PolyConfig): void {
    if (this.inFeatures % c.n_splits !== 0 || this.outFeatures % c.n_splits !== 0) {
      throw new Error(
        `n_splits ${c.n_splits} must divide the layer's in and out features (${this.inFeatures}, ${this.outFeatures})`,
      );
    }
    const d = this.inFeatures / c.n_splits,
      dOut = this.outFeatures / c.n_splits;
    this.r.set(name, c.r);
    for (const [dict, value] of [
      [this.poly_lora_A, kaimingUniformA5([c.n_splits, c.n_skills, d, c.r], d)],
      [
        this.poly_lora_B,
        c.init_weights
          ? zeros([c.n_splits, c.n_skills, c.r, dOut])
          : kaimingUniformA5([c.n_splits, c.n_skills, c.r, dOut], c.r),
      ],
    ] as const) {
      const old = dict.ownParameter(name);
      dict.registerParameter(name, parameter(value));
      if (old) old.dispose();
    }
    if (this.poly_router.has(name)) this.poly_router.get(name).dispose();
    this.poly_router.set(name, new PolyRouter(c.n_tasks, c.n_splits, c.n_skills));
    this.setAdapter(this.activeAdapters);
  }

  /** Apply the layer to x [batch, length, in] with the rows' task ids. */
  forward(x: Tensor): Tensor {
    const names = this.adaptersToApply();
    let y = this.baseForward(x);
    if (names.length === 0) return y;
    if (!this.taskIds)
      throw new Error("Poly needs the task of each batch row: pass taskIds ([batch] int32) to forward or generate");
    for (const name of names) {
      const r = this.r.get(name)!;
      const weights = this.poly_router.get(name).forward(this.taskIds);
      const [bs, splits, skills] = weights.shape as [number, number, number];
      const w = reshape(weights, [bs, splits, 1, skills]);
      const a = this.poly_lora_A.ownParameter(name)!,
        b = this.poly_lora_B.ownParameter(name)!;
      const mixedA = reshape(matmul(w, reshape(a, [splits, skills, -1])), [bs, this.inFeatures, r]);
      const mixedB = reshape(
        permute(reshape(matmul(w, reshape(b, [splits, skills, -1])), [bs, splits, r, -1]), [0, 2, 1, 3]),
        [bs, r, this.outFeatures],
      );
      y = add(y, div(matmul(matmul(x, mixedA), mixedB), r));
    }
    return y;
  }

  protected mergeOne(): void {
    throw new Error("Poly adapters cannot be merged: their mixture of skills depends on each batch row's task");
  }

  protected unmergeOne(): void {}

  protected forgetAdapter(name: string): void {
    this.r.delete(name);
  }

  protected override extraRepr(): string {
    return `in=${this.inFeatures}, out=${this.outFeatures}, adapters=[${this.adapterNames().join(", ")}]`;
  }
}
