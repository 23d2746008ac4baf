/**
 * How modules built now store their parameters: the parameter dtype (HF's torch_dtype at construction) and whether
 * initial values are drawn at all. Loading a checkpoint in bfloat16 builds the model inside
 * `buildModules({ dtype: "bfloat16", init: false }, …)`: each layer's weights are made in bfloat16 as the layer is
 * built (no float32 copy of the model ever exists) and left at zero for the checkpoint to fill.
 */
import type { DType } from "../backend/backend.js";
import { type Tensor, parameter, toDtype, zeros, type Generator } from "../tensor/index.js";

/** Dtypes parameters can be built in; anything but float32 is frozen (only float32 tensors take gradients). */
export type ParameterDType = "float32" | "bfloat16" | "float16";

/** Options of buildModules. */
export interface BuildOptions {
  /** Storage dtype of the parameters that layers register (default float32). */
  dtype?: ParameterDType;
  /** Draw initial values (default true); false leaves weights at zero for a checkpoint load to overwrite. */
  init?: boolean;
}

let current: Required<BuildOptions> = { dtype: "float32", init: true };

/** Run fn (which builds modules) with these build options, restoring the previous ones afterwards. */
export function buildModules<T>(opts: BuildOptions, fn: () => T): T {
  const before = current;
  current = { dtype: opts.dtype ?? before.dtype, init: opts.init ?? before.init };
  try {
    return fn();
  } finally {
    current = before;
  }
}

/** Zeros of `shape` in the build dtype when initialisation is off, otherwise draw(): what the init functions return. */
export function initialValues(shape: readonly number[], draw: () => Tensor): Tensor {
  return current.init ? draw() : zeros(shape, current.dtype);
}

/** Advance `gen` past `count` values as drawing initial values would: only when initialisation is on. */
export function skipInitialValues(gen: Generator, count: number): void {
  if (current.init) gen.next(count);
}

/** A new zero weight in the build dtype: a float32 parameter, or a frozen half tensor (no float32 copy made). */
export function zeroParameter(shape: readonly number[]): Tensor {
  return parameter(zeros(shape, current.dtype));
}

/** Whether a weight is a placeholder left by withDeferredLinearWeights (one element seen through zero strides). */
export function isDeferredWeight(w: Tensor): boolean {
  return w.size > 1 && w.strides.every((s) => s === 0);
}

/** A new parameter in the build dtype: t itself for float32 (or a deferred placeholder), else a frozen converted copy (t is disposed). */
export function inBuildDtype(t: Tensor): Tensor {
  const dtype: DType = current.dtype;
  if (dtype === "float32" || t.dtype !== "float32" || isDeferredWeight(t)) return t;
  const converted = toDtype(t, dtype);
  t.dispose();
  return converted;
}
