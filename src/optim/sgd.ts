/** Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD). */
import { addInPlace, mul, scaleInPlace } from "../tensor/ops/elementwise.js";
import { contiguous } from "../tensor/ops/views.js";
import type { Tensor } from "../tensor/tensor.js";
import { Optimizer, ownsStorage } from "./optimizer.js";
import type { ParamGroup, ParamGroupInput, ParamState } from "./optimizer.js";

/** SGD's options; defaults are PyTorch's except lr, which PyTorch also defaults to 1e-3. */
export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  /** Coupled L2 penalty: wd·p is added to the gradient (unlike AdamW's decoupled decay). */
  weightDecay: number;
  nesterov: boolean;
}

/**
 * SGD: d = g + wd·p; with momentum, buf = d on the first step and momentum·buf + (1−dampening)·d afterwards,
 * then d = nesterov ? d + momentum·buf : buf; finally p ← p − lr·d. State: momentumBuffer (momentum > 0 only).
 */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: readonly Tensor[] | readonly ParamGroupInput<SGDOptions>[], options: Partial<SGDOptions> = {}) {
    super(params, { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...options });
  }

  protected override validate(g: ParamGroup<SGDOptions>): void {
    super.validate(g);
    if (!(g.momentum >= 0)) throw new Error(`invalid momentum value: ${g.momentum}`);
    if (!(g.weightDecay >= 0)) throw new Error(`invalid weightDecay value: ${g.weightDecay}`);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0))
      throw new Error("Nesterov momentum requires a momentum and zero dampening");
  }

  protected override update(p: Tensor, grad: Tensor, g: ParamGroup<SGDOptions>, st: ParamState): void {
    if (!ownsStorage(p))
      throw new Error("SGD updates parameters in place and needs each to own its storage contiguously (not a view)");
    // Temporaries below are freed by the tidy scope of step().
    let d = g.weightDecay !== 0 ? addScaled(contiguous(grad, true), p, g.weightDecay) : grad;
    if (g.momentum !== 0) {
      let buf = st["momentumBuffer"] as Tensor | undefined;
      if (!buf) {
        buf = this.keepState(contiguous(d, true));
        st["momentumBuffer"] = buf;
      } else {
        scaleInPlace(buf, g.momentum);
        addScaled(buf, d, 1 - g.dampening);
      }
      d = g.nesterov ? addScaled(contiguous(d, true), buf, g.momentum) : buf;
    }
    addScaled(p, d, -g.lr);
  }
}

/** target += alpha·src in place (target owns its storage); returns target. */
function addScaled(target: Tensor, src: Tensor, alpha: number): Tensor {
  addInPlace(target, alpha === 1 ? src : mul(src, alpha));
  return target;
}
