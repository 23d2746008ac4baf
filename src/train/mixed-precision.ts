/**
 * Mixed precision for the Trainer (HF's bf16/fp16 flags). Matrix products run under autocast (inputs rounded to the
 * 16-bit format, float32 accumulation, see tensor/engine.ts); norms, softmax, the loss, gradients and the optimizer
 * stay float32. float16 holds only 5 exponent bits, so small gradients of the products' backward passes would
 * flush to zero: fp16 scales the loss up before backward and the gradients back down before the optimizer step
 * (torch.amp.GradScaler's dynamic loss scaling). bfloat16 has float32's range and needs no scaling.
 */
import { type AutocastDType, type Tensor, scaleInPlace } from "../tensor/index.js";
import type { TrainingArguments } from "./arguments.js";

/** The autocast format TrainingArguments ask for (null: full float32). */
export function autocastFormat(args: TrainingArguments): AutocastDType | null {
  return args.bf16 ? "bfloat16" : args.fp16 ? "float16" : null;
}

/** Dynamic loss scaling with GradScaler's defaults: start at 2^16, halve on overflow, double after 2000 clean steps. */
export class GradScaler {
  /** The factor the loss is multiplied by before backward. */
  scale = 2 ** 16;
  private cleanSteps = 0;

  constructor(private readonly growthInterval = 2000) {}

  /**
   * Divide the gradients by the scale and update it; false when a gradient overflowed (inf or NaN), in which case
   * the caller skips the optimizer step (the scale has been halved for the next try).
   */
  unscaleAndUpdate(params: readonly Tensor[]): boolean {
    let finite = true;
    for (const p of params) {
      if (!p.grad) continue;
      scaleInPlace(p.grad, 1 / this.scale);
      if (finite && !p.grad.dataSync().every(Number.isFinite)) finite = false;
    }
    if (!finite) {
      this.scale /= 2;
      this.cleanSteps = 0;
    } else if (++this.cleanSteps >= this.growthInterval) {
      this.scale *= 2;
      this.cleanSteps = 0;
    }
    return finite;
  }
}
