/**
 * Linear layers on frozen quantised weights (bitsandbytes' NF4/FP4 and LLM.int8): the forward and the input gradient
 * go through the backend's panel-by-panel kernels, so the float32 weight matrix never exists. The weight gets no
 * gradient (it is frozen); the bias does, when it requires one.
 */
import { backend } from "../../backend/index.js";
import type { QuantizedMatrix } from "../../backend/quant.js";
import { record } from "../autograd.js";
import { fmtShape } from "../shape.js";
import { empty, type Tensor } from "../tensor.js";
import { add, toFloat } from "./elementwise.js";
import { sum } from "./reduce.js";
import { contiguous, reshape } from "./views.js";

/** dy [m, n] → dx [m, k] = dy·W. */
function inputGrad(dy: Tensor, w: QuantizedMatrix): Tensor {
  const g = contiguous(dy);
  const dx = empty([g.shape[0]!, w.k]);
  backend().quantMatmul(g.storage, g.shape[0]!, w, true, dx.storage);
  return dx;
}

/**
 * y = x·Wᵀ + b for x [..., k] and a quantised W [n, k]. 4-bit weights: the product with the dequantised weight (as
 * bitsandbytes' matmul_4bit). int8 weights: LLM.int8's product (bitsandbytes' MatMul8bitLt) with `threshold` for the
 * outlier columns; its input gradient uses the dequantised weight, as bitsandbytes' backward does.
 */
export function quantizedLinear(x: Tensor, w: QuantizedMatrix, bias: Tensor | null, threshold = 0): Tensor {
  if (x.shape[x.rank - 1] !== w.k)
    throw new Error(
      `quantized linear: input has ${x.shape[x.rank - 1]} features but the weight [${w.n}, ${w.k}] expects ${w.k}`,
    );
  if (bias && (bias.rank !== 1 || bias.shape[0] !== w.n))
    throw new Error(`quantized linear: bias of shape ${fmtShape(bias.shape)} does not match ${w.n} outputs`);
  const lead = x.shape.slice(0, -1);
  const fx = contiguous(toFloat(reshape(x, [-1, w.k])));
  const m = fx.shape[0]!;
  const out = empty([m, w.n]);
  let y: Tensor;
  if (w.format === "int8") {
    const fb = bias ? contiguous(toFloat(bias)) : null;
    if (m > 0) backend().int8Linear(fx.storage, m, w.w, threshold, fb?.storage ?? null, out.storage);
    y = record("int8Linear", out, fb ? [fx, fb] : [fx], (dy) => {
      const grads = [fx.requiresGrad ? inputGrad(dy, w) : null];
      if (fb) grads.push(fb.requiresGrad ? sum(dy, 0) : null);
      return grads;
    });
  } else {
    if (m > 0) backend().quantMatmul(fx.storage, m, w, false, out.storage);
    y = record("linear4bit", out, [fx], (dy) => [inputGrad(dy, w)]);
    if (bias) y = add(y, bias);
  }
  return reshape(y, [...lead, w.n]);
}
