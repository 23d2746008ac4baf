/**
 * Diff pruning's layer around a Linear or GPT-2's Conv1D, and the hard-concrete gate (Louizos et al., 2018):
 *
 *   training:  s = σ((log u − log(1 − u) + log α) / β),  u ~ U(0, 1)      evaluation:  s = σ(log α)
 *   z = min(1, max(0, s·(ζ − γ) + γ))                                     W' = W + z ⊙ δ
 *   E[‖z‖₀] = Σ σ(log α − β·log(−γ / ζ))
 *
 * with β = 2/3, γ = −0.1, ζ = 1.1. δ (diff_delta) and log α (diff_log_alpha) have the stored weight's shape and
 * are parameter dicts, so they are saved as `<path>.diff_delta.<adapter>` without ".weight".
 */
import { Conv1D, type Linear } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  addInPlace,
  defaultGenerator,
  full,
  linear,
  log,
  matmul,
  maximum,
  minimum,
  mul,
  neg,
  noGrad,
  parameter,
  sigmoid,
  sub,
  sum,
  tidy,
  zeros,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";

/** The hard-concrete temperature β. */
export const HC_BETA = 2 / 3;
/** The stretch interval (γ, ζ) of the hard-concrete distribution. */
export const HC_GAMMA = -0.1;
export const HC_ZETA = 1.1;

/** The gates for `logAlpha`: sampled with the uniform draws `u` (training), or deterministic when u is null (evaluation). */
export function hardConcreteGate(logAlpha: Tensor, u: Tensor | null): Tensor {
  const s = u === null ? sigmoid(logAlpha) : sigmoid(mul(add(sub(log(u), log(sub(1, u))), logAlpha), 1 / HC_BETA));
  return minimum(maximum(add(mul(s, HC_ZETA - HC_GAMMA), HC_GAMMA), 0), 1);
}

/** The expected number of non-zero gates, Σ P(z > 0) = Σ σ(log α − β·log(−γ/ζ)). */
export function expectedL0(logAlpha: Tensor): Tensor {
  return sum(sigmoid(sub(logAlpha, HC_BETA * Math.log(-HC_GAMMA / HC_ZETA))));
}

/** log α that makes a gate exactly 1 (σ(10)·1.2 − 0.1 > 1) or exactly 0 after pruning. */
export const PRUNED_LOG_ALPHA = 10;

/** Diff pruning on a Linear ([out, in] weight) or a GPT-2 Conv1D ([in, out] weight). */
export class DiffPruningLinear extends BaseTunerLayer {
  readonly adapterLayerNames = ["diff_delta", "diff_log_alpha"] as const;
  diff_delta: ParameterDict;
  diff_log_alpha: ParameterDict;

  constructor(base: Linear | Conv1D) {
    super(base);
    this.diff_delta = this.registerModule("diff_delta", new ParameterDict());
    this.diff_log_alpha = this.registerModule("diff_log_alpha", new ParameterDict());
  }

  /** Add (or re-create) an adapter: δ = 0 (the layer starts as the base layer), log α = logAlphaInit. */
  updateLayer(name: string, logAlphaInit: number): void {
    const shape = this.base_layer.getTensor("weight").shape;
    for (const [holder, value] of [
      [this.diff_delta, zeros(shape)],
      [this.diff_log_alpha, full(shape, logAlphaInit)],
    ] as const) {
      const old = holder.ownParameter(name);
      holder.registerParameter(name, parameter(value));
      old?.dispose();
    }
    this.setAdapter(this.activeAdapters);
  }

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.diff_delta.ownParameter(name) !== null;
  }

  /** An adapter's δ and log α. */
  parts(name: string): { delta: Tensor; logAlpha: Tensor } {
    const delta = this.diff_delta.ownParameter(name),
      logAlpha = this.diff_log_alpha.ownParameter(name);
    if (!delta || !logAlpha) throw new Error(`adapter "${name}" is not in this diff-pruning layer`);
    return { delta, logAlpha };
  }

  /** z ⊙ δ in the stored weight's layout: gates sampled while training, deterministic in evaluation. */
  gatedDelta(name: string, sample = this.training): Tensor {
    const { delta, logAlpha } = this.parts(name);
    const u = sample ? defaultGenerator.uniform(logAlpha.shape, 1e-6, 1 - 1e-6) : null;
    return mul(hardConcreteGate(logAlpha, u), delta);
  }

  /** Apply the layer: the base output plus x·(z ⊙ δ)ᵀ (Conv1D: x·(z ⊙ δ)) for each active adapter. */
  forward(x: Tensor): Tensor {
    let result = this.baseForward(x);
    for (const name of this.adaptersToApply()) {
      const d = this.gatedDelta(name);
      result = add(result, this.base_layer instanceof Conv1D ? matmul(x, d) : linear(x, d));
    }
    return result;
  }

  protected mergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), this.gatedDelta(name, false))));
  }

  protected unmergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), neg(this.gatedDelta(name, false)))));
  }

  protected forgetAdapter(_name: string): void {}
}
