/**
 * DiffPruningConfig (peft-ts's own method; no Python peft config exists): diff pruning (Guo et al., 2021) learns a
 * difference δ for each target weight, gated entry by entry by a hard-concrete L0 gate (Louizos et al., 2018),
 * with an expected-L0 penalty in the training loss; at the end the gated difference is magnitude-pruned to
 * target_sparsity.
 */
import { configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { field, integer, nullable, number, pick } from "../../../io/config-fields.js";

/** DiffPruning configuration (peft-style field names). */
export interface DiffPruningConfig extends PeftConfig {
  /** Linear / Conv1D modules whose weight gets a difference (list, full-match regex or "all-linear"). */
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
  modules_to_save: string[] | null;
  /** The gates' log α at the start (large: gates open; the expected L0 is then near the entry count). */
  log_alpha_init: number;
  /** Weight of the penalty: l0_lambda · (expected number of open gates) / (number of gates), added to the training loss. */
  l0_lambda: number;
  /** The fraction of difference entries set to zero by magnitude pruning. */
  target_sparsity: number;
  /** Prune after this optimizer step (1-based count, as the Trainer's max_steps); null: only when pruneToSparsity is called. */
  total_step: number | null;
}

/** Every DiffPruning field: type and range, default, and what it does. */
export const DIFF_PRUNING_FIELDS: MethodFields<DiffPruningConfig> = {
  ...pick(
    TARGETING_FIELDS,
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "modules_to_save",
  ),
  log_alpha_init: field(number(), 5, "The gates' log α at the start (5: gates open, as Guo et al. start them)."),
  l0_lambda: field(
    number({ min: 0 }),
    1,
    "Weight of the expected-L0 penalty (the expected fraction of open gates) in the training loss.",
  ),
  target_sparsity: field(
    number({ min: 0, max: 1 }),
    0.99,
    "The fraction of difference entries magnitude pruning sets to zero.",
  ),
  total_step: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "Prune after this many optimizer steps (null: only when pruneToSparsity is called).",
  ),
};

/** Build a DiffPruning config from fields over the defaults. */
export const makeDiffPruningConfig = configBuilder<DiffPruningConfig>(
  PeftType.DIFF_PRUNING,
  DIFF_PRUNING_FIELDS,
  () => {},
);

/** A DiffPruning config from user fields (TypeScript users) — defaults filled in, validated. */
export function DiffPruningConfig(fields: Partial<DiffPruningConfig> = {}): DiffPruningConfig {
  return makeDiffPruningConfig(fields, false);
}
