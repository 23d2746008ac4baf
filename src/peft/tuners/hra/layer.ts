/**
 * HRA layer (peft's hra.Linear): the base weight is multiplied on the right by an orthogonal matrix built from the
 * adapter's r vectors u₁…u_r (hra_u, [in, r]):
 *
 *   plain:         H = (I − 2û₁û₁ᵀ)(I − 2û₂û₂ᵀ)…(I − 2û_rû_rᵀ),  ûᵢ = uᵢ/‖uᵢ‖
 *   apply_GS:      H = I − 2QQᵀ,  Q = Gram–Schmidt(u₁…u_r)
 *
 *   y = x·(W·H)ᵀ + b
 *
 * H is orthogonal, so merging (W ← W·H) is undone exactly by the reflections in reverse order (W ← W·Hᵀ).
 */
import type { Linear } from "../../../nn/index.js";
import { kaimingUniformA5 } from "../../../nn/init.js";
import {
  type Tensor,
  cat,
  div,
  linear,
  matmul,
  mul,
  narrow,
  noGrad,
  parameter,
  reshape,
  sqrt,
  square,
  stack,
  sub,
  sum,
  tensor,
  tidy,
  transpose,
} from "../../../tensor/index.js";
import { ParameterDict } from "../tuner-layer.js";
import { WeightTransformLayer } from "../weight-transform.js";

let warnedOddR = false;

/** The n×n identity. */
function eye(n: number): Tensor {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) data[i * n + i] = 1;
  return tensor(data, [n, n]);
}

/** Each column divided by its Euclidean norm. */
function unitColumns(u: Tensor): Tensor {
  return div(u, sqrt(sum(square(u), 0, true)));
}

/** HRA on a Linear. */
export class HRALinear extends WeightTransformLayer {
  readonly adapterLayerNames = ["hra_u"] as const;
  readonly applyGS = new Map<string, boolean>();
  hra_u: ParameterDict;

  constructor(base: Linear) {
    super(base);
    this.hra_u = this.registerModule("hra_u", new ParameterDict());
  }

  get adapterWeights(): ParameterDict {
    return this.hra_u;
  }

  /**
   * Add (or re-create) an adapter (peft's update_layer). init_weights with an even r draws r/2 Kaiming-uniform
   * columns and repeats each twice (paired reflections cancel: H = I); with an odd r peft warns and draws all r.
   */
  updateLayer(name: string, r: number, applyGS: boolean, initWeights: boolean): void {
    this.r.set(name, r);
    this.applyGS.set(name, applyGS);
    let value: Tensor;
    if (initWeights && r % 2 === 0) {
      const half = kaimingUniformA5([this.inFeatures, r / 2], r / 2);
      value = tidy(() => reshape(stack([half, half], 2), [this.inFeatures, r]));
      half.dispose();
    } else {
      if (initWeights && !warnedOddR) {
        warnedOddR = true;
        process.emitWarning("The symmetric initialization can NOT be performed when r is odd!");
      }
      value = kaimingUniformA5([this.inFeatures, r], r);
    }
    const old = this.hra_u.ownParameter(name);
    this.hra_u.registerParameter(name, parameter(value));
    if (old) old.dispose();
    this.setAdapter(this.activeAdapters);
  }

  /** H of an adapter ([in, in]); `reverse` gives Hᵀ = H⁻¹ (the reflections in reverse order). */
  orthogonal(name: string, reverse = false): Tensor {
    const u = this.param(name);
    const r = this.r.get(name)!;
    const column = (t: Tensor, i: number) => narrow(t, 1, i, 1);
    if (this.applyGS.get(name)) {
      const basis: Tensor[] = [];
      for (let i = 0; i < r; i++) {
        let ui = column(u, i);
        for (const q of basis) ui = sub(ui, mul(matmul(transpose(q), ui), q));
        basis.push(unitColumns(ui));
      }
      const q = cat(basis, 1);
      return sub(eye(this.inFeatures), mul(matmul(q, transpose(q)), 2));
    }
    const unit = unitColumns(u);
    let h = eye(this.inFeatures);
    const order = [...Array(r).keys()];
    if (reverse) order.reverse();
    for (const i of order) {
      const ui = column(unit, i);
      h = sub(h, mul(matmul(matmul(h, ui), transpose(ui)), 2));
    }
    return h;
  }

  /** Apply the layer. */
  forward(x: Tensor): Tensor {
    const names = this.adaptersToApply();
    if (names.length === 0) return this.baseForward(x);
    let h = this.orthogonal(names[0]!);
    for (const name of names.slice(1)) h = matmul(h, this.orthogonal(name));
    return linear(x, matmul(this.linearBase.weight, h), this.linearBase.bias);
  }

  protected mergeOne(name: string): void {
    noGrad(() =>
      tidy(() => {
        const w = this.linearBase.weight;
        w.copy_(matmul(w, this.orthogonal(name)));
      }),
    );
  }

  protected unmergeOne(name: string): void {
    noGrad(() =>
      tidy(() => {
        const w = this.linearBase.weight;
        w.copy_(matmul(w, this.orthogonal(name, true)));
      }),
    );
  }
}
