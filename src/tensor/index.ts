/** The tensor engine: tensors, autograd, memory scopes, random numbers and every op. */
export { Tensor, tensor, empty, emptyLike, emptyStrided, zeros, ones, full, arange, parameter } from "./tensor.js";
export type { NestedArray } from "./tensor.js";
export {
  tidy,
  keep,
  noGrad,
  withGrad,
  isGradEnabled,
  memory,
  resetPeakBytes,
  autocast,
  autocastDtype,
} from "./engine.js";
export { checkpoint } from "./checkpoint.js";
export type { MemoryStats, AutocastDType } from "./engine.js";
export { Generator, defaultGenerator, manualSeed } from "./random.js";
export { TorchGenerator } from "./torch-generator.js";
export type { GradFn } from "./autograd.js";
export * from "./ops/index.js";
export * from "./shape.js";
