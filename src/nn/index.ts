/** Neural-network modules. */
export { Module, cloneModule } from "./module.js";
export type { StateDict, LoadResult, TensorLayer, EmbeddingLayer } from "./module.js";
export { Linear, Conv1D, withDeferredLinearWeights } from "./layers/linear.js";
export type { LinearOptions } from "./layers/linear.js";
export { Embedding } from "./layers/embedding.js";
export type { EmbeddingOptions } from "./layers/embedding.js";
export { LayerNorm, RMSNorm } from "./layers/norm.js";
export type { LayerNormOptions } from "./layers/norm.js";
export {
  Activation,
  activation,
  activationFn,
  ReLU,
  GELU,
  Tanh,
  SiLU,
  Sigmoid,
  Dropout,
} from "./layers/activations.js";
export type { TensorModule } from "./layers/activations.js";
export { Sequential, ModuleList, ModuleDict } from "./layers/containers.js";
export { LSTM } from "./layers/lstm.js";
export type { LSTMOptions } from "./layers/lstm.js";
export * as init from "./init.js";
export { buildModules, inBuildDtype, isDeferredWeight, zeroParameter } from "./build.js";
export type { BuildOptions, ParameterDType } from "./build.js";
export { QuantizedLinear, Linear4bit, Linear8bitLt, quantizedWeightElements } from "./layers/quantized.js";
export type { Linear4bitOptions } from "./layers/quantized.js";
