/**
 * Gradient checkpointing (torch.utils.checkpoint, reentrant form): run a function without keeping its
 * intermediates, and run it again during backward to get its gradients. Memory drops from every activation of the
 * function to its inputs and output; the price is a second forward pass.
 *
 * The recomputation must see exactly what the first pass saw: draws from the default generator (dropout masks) are
 * replayed from the same counter, so the masks, and therefore the gradients, are bit-identical to a run without
 * checkpointing. Tensors fn reads from its closure must not require gradients unless they are leaves (parameters),
 * and the trainable ones must be listed in `params`: gradients reach them through a backward pass of the recomputed
 * graph, which accumulates into their `.grad` (listing them also makes the output require gradients when no input
 * does, as for the first decoder layer of a model whose embeddings are frozen).
 */
import { record, runBackward } from "./autograd.js";
import { isGradEnabled, keep, noGrad, tidy, withGrad } from "./engine.js";
import { defaultGenerator } from "./random.js";
import type { Tensor } from "./tensor.js";

/**
 * fn(...inputs), keeping none of fn's intermediates for backward: they are recomputed when gradients are needed.
 * `params`: the trainable parameters fn uses.
 */
export function checkpoint(
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  params: readonly Tensor[] = [],
): Tensor {
  if (!isGradEnabled()) return fn(...inputs);
  const rng = defaultGenerator.getState();
  const out = tidy(() => noGrad(() => fn(...inputs.map((t) => t.detach()))));
  return record("checkpoint", out, [...inputs, ...params], (dy) => {
    const now = defaultGenerator.getState();
    defaultGenerator.setState(rng);
    try {
      return tidy(() => {
        const leaves = inputs.map((t) => t.detach().requiresGrad_(t.requiresGrad));
        const again = withGrad(() => fn(...leaves));
        if (again.requiresGrad) runBackward(again, dy);
        const grads: (Tensor | null)[] = leaves.map((leaf) => {
          const g = leaf.grad;
          leaf.grad = null;
          return g;
        });
        return [...grads, ...params.map(() => null)];
      }).map((g) => g && keep(g));
    } finally {
      defaultGenerator.setState(now);
    }
  });
}
