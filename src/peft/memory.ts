/**
 * The memory a low-rank adapter (LoRA, AdaLoRA, LoHa, LoKr) needs, estimated from its config and the model's layer
 * shapes before anything is allocated, so that `r: 1e6` fails with a clear error instead of "Array buffer
 * allocation failed" inside a layer.
 */
import { freemem } from "node:os";
import { ConfigError } from "../errors.js";
import { Conv1D, Linear, type Module } from "../nn/index.js";
import type { PeftConfig } from "./config.js";
import { LORA_TARGETS } from "./mapping.js";
import { checkTarget, linearModuleNames, type TargetFields } from "./targets.js";

/** The largest rank an adapter of this config gives any layer (r, AdaLoRA's init_r, rank_pattern), or null for other methods. */
function largestRank(config: PeftConfig): number | null {
  const base = config.peft_type === "ADALORA" ? config["init_r"] : config["r"];
  if (typeof base !== "number") return null;
  const pattern = config["rank_pattern"];
  const overrides =
    pattern !== null && typeof pattern === "object"
      ? Object.values(pattern).filter((v): v is number => typeof v === "number")
      : [];
  return Math.max(base, ...overrides);
}

/** in + out of a linear layer (GPT-2's Conv1D stores [in, out]). */
function fanSum(m: Module): number {
  if (m instanceof Linear) return m.inFeatures + m.outFeatures;
  if (m instanceof Conv1D) return m.nf + m.nx;
  return 0;
}

/**
 * Refuse an adapter whose low-rank factors (r · (in + out) float32 values per adapted layer, at least) would not fit
 * in the free memory. Targets are matched as the tuners match them; null targets use the model type's defaults.
 */
export function checkAdapterFitsInMemory(model: Module & { config: { model_type: string } }, config: PeftConfig): void {
  const rank = largestRank(config);
  if (rank === null) return;
  const fields = config as unknown as TargetFields;
  const all = typeof fields.target_modules === "string" && fields.target_modules.toLowerCase() === "all-linear";
  const targets = fields.target_modules ?? LORA_TARGETS[model.config.model_type] ?? null;
  if (targets === null) return;
  const modules = new Map(model.namedModules());
  let values = 0;
  for (const name of linearModuleNames(model)) {
    if (all || checkTarget({ ...fields, target_modules: targets }, name) === true)
      values += rank * fanSum(modules.get(name)!);
  }
  const needed = 4 * values;
  const free = freemem();
  if (needed > free) {
    throw new ConfigError(
      `${config.peft_type} config: r ${rank} on these target modules needs at least ` +
        `${(needed / 1e9).toFixed(1)} GB for the adapter weights, ` +
        `but only ${(free / 1e9).toFixed(1)} GB of memory is free`,
      "r is the rank of the update (typically 4–64): lower r (or rank_pattern), or target fewer modules",
    );
  }
}
