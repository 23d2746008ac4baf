/** Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_). */
import { keep, noGrad, tidy } from "../tensor/engine.js";
import { abs, mul, pow, scaleInPlace, square } from "../tensor/ops/elementwise.js";
import { amax, sum } from "../tensor/ops/reduce.js";
import type { Tensor } from "../tensor/tensor.js";
import { ownsStorage } from "./optimizer.js";

/**
 * Scale the gradients of `params` in place so that their joint norm is at most maxNorm, and return the joint
 * norm measured before clipping. As in PyTorch: the norm is taken over all gradients as if concatenated
 * (normType Infinity = max |g|), parameters without a gradient are ignored, and when it exceeds maxNorm every
 * gradient is multiplied by maxNorm / (norm + 1e-6).
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, normType = 2): number {
  const list = [...params];
  const grads = list.flatMap((p) => (p.grad ? [p.grad] : []));
  if (grads.length === 0) return 0;
  if (!(normType > 0)) throw new Error(`clipGradNorm: normType must be positive or Infinity, got ${normType}`);
  // Per-gradient partial results are read back and combined in double precision on the host.
  const partials = noGrad(() =>
    tidy(() =>
      grads.map((g) => {
        if (normType === Infinity) return amax(abs(g)).item();
        if (normType === 2) return sum(square(g)).item();
        if (normType === 1) return sum(abs(g)).item();
        return sum(pow(abs(g), normType)).item();
      }),
    ),
  );
  const total =
    normType === Infinity
      ? Math.max(...partials)
      : normType === 1
        ? partials.reduce((a, b) => a + b, 0)
        : partials.reduce((a, b) => a + b, 0) ** (1 / normType);
  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) {
    noGrad(() => {
      for (const p of list) {
        const g = p.grad;
        if (!g) continue;
        if (ownsStorage(g)) scaleInPlace(g, coef);
        else {
          // A strided gradient cannot be scaled in place through its storage: replace it with a scaled copy.
          p.grad = keep(tidy(() => mul(g, coef)));
          g.dispose();
        }
      }
    });
  }
  return total;
}
