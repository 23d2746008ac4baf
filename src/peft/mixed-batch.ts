/**
 * Mixed-adapter batches (peft's `adapter_names`): one forward pass where each batch row uses its own LoRA adapter,
 * or none ("__base__"). Each adapter's low-rank path runs only on its rows and is added to the base output of those
 * rows; weights are never merged. The row names are set for the duration of a forward pass (withAdapterNames) and
 * read by the adapter layers (LoRA), as peft passes them to its layers through forward hooks.
 */
import { ConfigError } from "../errors.js";
import { type Tensor, add, cat, indexSelect, narrow, tensor } from "../tensor/index.js";

/** The row name that means "no adapter" (peft's "__base__"). */
export const BASE_ROW = "__base__";

let rowNames: readonly string[] | null = null;

/** Run fn (a forward pass) with one adapter name per batch row. */
export function withAdapterNames<T>(names: readonly string[], fn: () => T): T {
  const previous = rowNames;
  rowNames = names;
  try {
    return fn();
  } finally {
    rowNames = previous;
  }
}

/** The row adapter names of the forward pass running now, or null when it is an ordinary one. */
export function currentAdapterNames(): readonly string[] | null {
  return rowNames;
}

/** The reasons a layer cannot serve a mixed batch (peft raises the same), checked before computing. */
export function checkMixedBatch(names: readonly string[], batch: number, merged: boolean): void {
  if (names.length !== batch) {
    throw new ConfigError(
      `adapterNames has ${names.length} entries but the batch has ${batch} rows`,
      `pass one adapter name (or "${BASE_ROW}") per row`,
    );
  }
  if (merged) throw new ConfigError("cannot pass adapterNames while adapters are merged", "call unmerge() first");
}

/**
 * base (the base layer's output for x) plus, for each adapter the layer holds, `delta(adapter, rows of x)` on that
 * adapter's rows. Rows of "__base__" or of adapters this layer lacks keep the base output.
 */
export function mixedBatchForward(
  x: Tensor,
  base: Tensor,
  names: readonly string[],
  holds: (adapter: string) => boolean,
  delta: (adapter: string, rows: Tensor) => Tensor,
): Tensor {
  const rows = names.map((_, r) => narrow(base, 0, r, 1));
  for (const adapter of new Set(names)) {
    if (adapter === BASE_ROW || !holds(adapter)) continue;
    const members = names.flatMap((n, r) => (n === adapter ? [r] : []));
    const index = tensor(Int32Array.from(members), [members.length], "int32");
    const updated = add(indexSelect(base, 0, index), delta(adapter, indexSelect(x, 0, index)));
    members.forEach((r, i) => {
      rows[r] = narrow(updated, 0, i, 1);
    });
  }
  return cat(rows, 0);
}
