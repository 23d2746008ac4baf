/** Text generation; also installs `generate()` as a method of every PreTrainedModel. */
import { PreTrainedModel } from "../models/pretrained.js";
import type { Tensor } from "../tensor/index.js";
import { generate, type GenerateOptions } from "./generate.js";

export { generate } from "./generate.js";
export type { GenerateOptions, Generative } from "./generate.js";
export * from "./logits.js";

declare module "../models/pretrained.js" {
  interface PreTrainedModel {
    /** Generate continuations of inputIds (see GenerateOptions). */
    generate(opts: GenerateOptions): Tensor;
  }
}

PreTrainedModel.prototype.generate = function (this: PreTrainedModel, opts: GenerateOptions): Tensor {
  return generate(this as unknown as Parameters<typeof generate>[0], opts);
};
