/**
 * Checkpoints: output_dir/checkpoint-N/ with the model (the adapter for PEFT models), optimizer, scheduler and
 * RNG state, trainer_state.json and training_args.json. A checkpoint is written into a temporary folder and
 * renamed into place, so a run killed while saving leaves the earlier checkpoints intact and never a partial one.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tensor } from "../tensor/index.js";
import { defaultGenerator } from "../tensor/random.js";
import { loadSafetensors, writeSafetensors } from "../io/safetensors.js";
import { readJsonObject, writeJsonAtomic } from "../io/json.js";
import type { Optimizer, OptimizerStateDict, LRScheduler, SchedulerStateDict } from "../optim/index.js";
import type { TrainerState } from "./callbacks.js";
import type { TrainingArguments } from "./arguments.js";

/** What a checkpoint captures. */
export interface CheckpointParts {
  /** Saves the model (or adapter) files into a folder. */
  saveModel(dir: string): void;
  optimizer: Optimizer;
  scheduler: LRScheduler;
  state: TrainerState;
  args: TrainingArguments;
}

const TMP_PREFIX = ".tmp-checkpoint-";

/** checkpoint-N folders of an output dir, oldest first. */
export function listCheckpoints(outputDir: string): string[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .filter((n) => /^checkpoint-\d+$/.test(n))
    .sort((a, b) => Number(a.slice(11)) - Number(b.slice(11)))
    .map((n) => join(outputDir, n));
}

/** Remove temporary folders left by a run that was killed while saving. */
export function removeStaleTemporaries(outputDir: string): void {
  if (!existsSync(outputDir)) return;
  for (const n of readdirSync(outputDir)) if (n.startsWith(TMP_PREFIX)) rmSync(join(outputDir, n), { recursive: true, force: true });
}

/** Write checkpoint-<global_step> atomically (temp folder + rename); returns its path. */
export function saveCheckpoint(outputDir: string, parts: CheckpointParts, beforeRename?: (tmpDir: string) => void): string {
  const final = join(outputDir, `checkpoint-${parts.state.global_step}`);
  const tmp = join(outputDir, `${TMP_PREFIX}${parts.state.global_step}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  parts.saveModel(tmp);
  const opt = parts.optimizer.stateDict();
  const tensors = new Map<string, ReturnType<typeof tensor>>();
  const numbers: Record<string, Record<string, number>> = {};
  for (const [id, entry] of Object.entries(opt.state)) {
    for (const [k, v] of Object.entries(entry)) {
      if (typeof v === "number") (numbers[id] ??= {})[k] = v;
      else tensors.set(`state.${id}.${k}`, tensor(Float32Array.from(v)));
    }
  }
  writeSafetensors(join(tmp, "optimizer.safetensors"), tensors, { format: "pt" });
  for (const t of tensors.values()) t.dispose();
  writeJsonAtomic(join(tmp, "optimizer.json"), { param_groups: opt.paramGroups, numbers });
  writeJsonAtomic(join(tmp, "scheduler.json"), parts.scheduler.stateDict());
  writeJsonAtomic(join(tmp, "rng_state.json"), defaultGenerator.getState());
  writeJsonAtomic(join(tmp, "trainer_state.json"), parts.state);
  writeJsonAtomic(join(tmp, "training_args.json"), parts.args);
  beforeRename?.(tmp);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  return final;
}

/** Restore optimizer, scheduler and RNG state from a checkpoint; returns its trainer state. */
export function loadCheckpointState(dir: string, optimizer: Optimizer, scheduler: LRScheduler): TrainerState {
  for (const f of ["optimizer.safetensors", "optimizer.json", "scheduler.json", "rng_state.json", "trainer_state.json"]) {
    if (!existsSync(join(dir, f))) throw new Error(`${dir} is not a complete checkpoint: ${f} is missing`);
  }
  const meta = readJsonObject(join(dir, "optimizer.json")) as { param_groups: OptimizerStateDict["paramGroups"]; numbers: Record<string, Record<string, number>> };
  const saved = loadSafetensors(join(dir, "optimizer.safetensors"));
  const state: OptimizerStateDict["state"] = {};
  for (const [key, t] of saved) {
    const [, id, name] = key.split(".") as [string, string, string];
    (state[Number(id)] ??= {})[name] = t.dataSync() as Float32Array;
    t.dispose();
  }
  for (const [id, nums] of Object.entries(meta.numbers)) Object.assign((state[Number(id)] ??= {}), nums);
  optimizer.loadStateDict({ state, paramGroups: meta.param_groups });
  scheduler.loadStateDict(readJsonObject(join(dir, "scheduler.json")) as unknown as SchedulerStateDict);
  defaultGenerator.setState(readJsonObject(join(dir, "rng_state.json")) as { seed: number; counter: number });
  return readJsonObject(join(dir, "trainer_state.json")) as unknown as TrainerState;
}
