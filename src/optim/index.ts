/** Optimizers, gradient clipping and learning-rate schedules. */
export { Optimizer, ownsStorage } from "./optimizer.js";
export type {
  BaseOptions,
  HyperValue,
  ParamGroup,
  ParamGroupInput,
  ParamState,
  OptimizerStateDict,
} from "./optimizer.js";
export { AdamW } from "./adamw.js";
export type { AdamWOptions } from "./adamw.js";
export { SGD } from "./sgd.js";
export type { SGDOptions } from "./sgd.js";
export { clipGradNorm } from "./clip.js";
export {
  LRScheduler,
  getScheduler,
  SCHEDULER_NAMES,
  constantLambda,
  constantWithWarmupLambda,
  linearLambda,
  cosineLambda,
  cosineWithRestartsLambda,
  inverseSqrtLambda,
  polynomialLambda,
} from "./schedules.js";
export type { LrLambda, SchedulerStateDict, SchedulerName, SchedulerOptions } from "./schedules.js";
