/**
 * Parameter initialisations matching PyTorch's defaults, drawn from a seedable Generator (zeros, without drawing,
 * inside buildModules({ init: false })).
 */
import { defaultGenerator, type Generator, type Tensor, zeros, full } from "../tensor/index.js";
import { initialValues } from "./build.js";

/** Kaiming-uniform with a = √5, PyTorch's default for Linear weights: U(−1/√fanIn, 1/√fanIn). */
export function kaimingUniformA5(shape: readonly number[], fanIn: number, gen: Generator = defaultGenerator): Tensor {
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return initialValues(shape, () => gen.uniform(shape, -bound, bound));
}

/** Kaiming-uniform(a = √5) of a 2-D tensor, as torch's kaiming_uniform_ (fan_in = shape[1]). */
export function kaimingUniform2d(shape: [number, number], gen: Generator = defaultGenerator): Tensor {
  return kaimingUniformA5(shape, shape[1], gen);
}

/** U(−bound, bound). */
export function uniform(shape: readonly number[], bound: number, gen: Generator = defaultGenerator): Tensor {
  return initialValues(shape, () => gen.uniform(shape, -bound, bound));
}

/** N(mean, std²). */
export function normal(shape: readonly number[], std = 1, mean = 0, gen: Generator = defaultGenerator): Tensor {
  return initialValues(shape, () => gen.normal(shape, mean, std));
}

export { zeros, full };
