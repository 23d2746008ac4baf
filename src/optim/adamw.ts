/** AdamW (Loshchilov & Hutter) with PyTorch's torch.optim.AdamW semantics, on the backend's fused kernel. */
import { backend } from "../backend/index.js";
import { contiguous } from "../tensor/ops/views.js";
import { zeros, type Tensor } from "../tensor/tensor.js";
import { Optimizer, ownsStorage } from "./optimizer.js";
import type { ParamGroup, ParamGroupInput, ParamState } from "./optimizer.js";

/** AdamW's options; defaults are PyTorch's (lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 1e-2). */
export interface AdamWOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  /** Decoupled: each step multiplies the parameter by 1 − lr·weightDecay (not added to the gradient). */
  weightDecay: number;
}

/**
 * AdamW: m = β1·m + (1−β1)·g, v = β2·v + (1−β2)·g², p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
 * State per parameter: step (number), expAvg and expAvgSq (tensors shaped like the parameter).
 */
export class AdamW extends Optimizer<AdamWOptions> {
  constructor(
    params: readonly Tensor[] | readonly ParamGroupInput<AdamWOptions>[],
    options: Partial<AdamWOptions> = {},
  ) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, ...options });
  }

  protected override validate(g: ParamGroup<AdamWOptions>): void {
    super.validate(g);
    const [b1, b2] = g.betas;
    if (!(b1 >= 0 && b1 < 1)) throw new Error(`invalid beta parameter at index 0: ${b1}`);
    if (!(b2 >= 0 && b2 < 1)) throw new Error(`invalid beta parameter at index 1: ${b2}`);
    if (!(g.eps >= 0)) throw new Error(`invalid epsilon value: ${g.eps}`);
    if (!(g.weightDecay >= 0)) throw new Error(`invalid weightDecay value: ${g.weightDecay}`);
  }

  protected override update(p: Tensor, grad: Tensor, g: ParamGroup<AdamWOptions>, st: ParamState): void {
    if (!ownsStorage(p)) {
      throw new Error(
        "AdamW updates parameters in place and needs each to own its storage contiguously (not a " +
          "view of another tensor)",
      );
    }
    if (st["step"] === undefined) {
      st["step"] = 0;
      st["expAvg"] = this.keepState(zeros(p.shape));
      st["expAvgSq"] = this.keepState(zeros(p.shape));
    }
    const step = (st["step"] as number) + 1;
    st["step"] = step;
    // The fused kernel reads the gradient as a flat buffer: a strided gradient is copied first (freed by step's tidy).
    const gFlat = ownsStorage(grad) ? grad : contiguous(grad, true);
    backend().adamw(p.storage, gFlat.storage, (st["expAvg"] as Tensor).storage, (st["expAvgSq"] as Tensor).storage, {
      lr: g.lr,
      beta1: g.betas[0],
      beta2: g.betas[1],
      eps: g.eps,
      weightDecay: g.weightDecay,
      step,
    });
  }
}
