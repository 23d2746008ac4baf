/**
 * Reverse-mode automatic differentiation on a dynamic tape: each recorded op leaves a GradFn on its output that
 * knows its inputs and how to map the output's gradient to theirs. `backward()` walks the graph in reverse
 * topological order, releasing each intermediate gradient as soon as it has been propagated.
 */
import { isGradEnabled, keep, noGrad } from "./engine.js";
import type { Tensor } from "./tensor.js";
import { fmtShape, sameShape } from "./shape.js";
import { add, addInPlace, contiguous, onesLike, sliceView } from "./ops/index.js";
import { zeros } from "./tensor.js";
import { backend } from "../backend/index.js";
import { isProfiling, profileAdd } from "../backend/profile.js";

/** How to propagate an op's output gradient to its inputs (null = no gradient for that input). */
export interface GradFn {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  backward(dy: Tensor): readonly (Tensor | null)[];
  /**
   * Set when the output is a slice of inputs[0] (narrow): the tape then adds dOut into that slice of the input's
   * pending gradient in place instead of calling `backward` (so the pieces of a split meet in one buffer).
   */
  readonly slice?: { readonly axis: number; readonly start: number };
}

/**
 * Attach a GradFn to `out` when gradients are being recorded and some input requires them.
 * `backward` receives dOut and returns one gradient per input, in input order, each shaped like its input.
 */
export function record(
  name: string,
  out: Tensor,
  inputs: readonly Tensor[],
  backward: (dy: Tensor) => readonly (Tensor | null)[],
  slice?: { axis: number; start: number },
): Tensor {
  if (!isGradEnabled() || !inputs.some((t) => t.requiresGrad)) return out;
  out.gradFn = slice ? { name, inputs, backward, slice } : { name, inputs, backward };
  out.requiresGrad = true;
  return out;
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const [node, next] = top;
    const inputs = node.gradFn?.inputs ?? [];
    if (next < inputs.length) {
      top[1]++;
      const child = inputs[next]!;
      if (child.requiresGrad && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(node);
      stack.pop();
    }
  }
  return order.reverse();
}

/** The body of Tensor.backward(). */
export function runBackward(root: Tensor, seed?: Tensor): void {
  if (!root.requiresGrad)
    throw new Error(
      "backward(): this tensor does not require gradients (no input had requiresGrad, or it was computed under noGrad)",
    );
  if (!seed && root.size !== 1)
    throw new Error(`backward(): a gradient is needed for a non-scalar output of shape ${fmtShape(root.shape)}`);
  noGrad(() => {
    const start = seed ?? onesLike(root);
    const pending = new Map<Tensor, Tensor>();
    const uses = new Map<Tensor, number>();
    const hold = (g: Tensor) => uses.set(g, (uses.get(g) ?? 0) + 1);
    const drop = (g: Tensor) => {
      const n = uses.get(g)! - 1;
      if (n > 0) return void uses.set(g, n);
      uses.delete(g);
      if (g !== seed) g.dispose();
    };
    // Pending gradients the tape allocated itself (zeros that slices were added into): only these are written in place.
    const owned = new Set<Tensor>();
    pending.set(root, start);
    hold(start);
    for (const node of topoOrder(root)) {
      const g = pending.get(node);
      if (!g) continue;
      pending.delete(node);
      owned.delete(g);
      if (!node.gradFn) {
        accumulateLeaf(node, g);
        drop(g);
        continue;
      }
      const slice = node.gradFn.slice;
      if (slice) {
        const input = node.gradFn.inputs[0]!;
        if (input.requiresGrad) {
          const t0 = isProfiling() ? performance.now() : 0;
          let buf = pending.get(input);
          if (!buf || !owned.has(buf)) {
            const fresh = buf ? contiguous(buf, true) : zeros(input.shape);
            hold(fresh);
            if (buf) drop(buf);
            pending.set(input, fresh);
            owned.add(fresh);
            buf = fresh;
          }
          backend().assign(g, sliceView(buf, slice.axis, slice.start, g.shape[slice.axis]!), true);
          if (isProfiling()) profileAdd(`backward ${node.gradFn.name} (into slice)`, performance.now() - t0);
        }
        drop(g);
        continue;
      }
      let grads: readonly (Tensor | null)[];
      if (isProfiling()) {
        const t0 = performance.now();
        grads = node.gradFn.backward(g);
        profileAdd(`backward ${node.gradFn.name}`, performance.now() - t0);
      } else {
        grads = node.gradFn.backward(g);
      }
      grads.forEach((gi) => {
        gi && hold(gi);
      });
      node.gradFn.inputs.forEach((input, i) => {
        const gi = grads[i];
        if (!gi || !input.requiresGrad) return;
        if (!sameShape(gi.shape, input.shape)) {
          throw new Error(
            `internal: ${node.gradFn!.name} produced a gradient of shape ${fmtShape(gi.shape)} for an ` +
              `input of shape ${fmtShape(input.shape)}`,
          );
        }
        const prev = pending.get(input);
        const next = prev ? add(prev, gi) : gi;
        hold(next);
        if (prev) drop(prev);
        pending.set(input, next);
      });
      grads.forEach((gi) => {
        gi && drop(gi);
      });
      drop(g);
    }
  });
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.grad) addInPlace(leaf.grad, g);
  else leaf.grad = keep(contiguous(g, true));
}
