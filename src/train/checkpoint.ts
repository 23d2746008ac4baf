/**
 * Checkpoints: output_dir/checkpoint-N/ with the model (the adapter for PEFT models), optimizer, scheduler and
 * RNG state, trainer_state.json and training_args.json. A checkpoint is written into a temporary folder and
 * renamed into place (writeFolderAtomic), so a run killed while saving leaves the earlier checkpoints intact and
 * never a partial one.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tensor } from "../tensor/index.js";
import { defaultGenerator } from "../tensor/random.js";
import { loadSafetensors, writeSafetensors } from "../io/safetensors.js";
import { readJsonObject, writeJsonAtomic } from "../io/json.js";
import { recoverInterruptedSaves, writeFolderAtomic } from "../io/atomic.js";
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

/** checkpoint-N folders of an output dir, oldest first. */
export function listCheckpoints(outputDir: string): string[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .filter((n) => /^checkpoint-\d+$/.test(n))
    .sort((a, b) => Number(a.slice(11)) - Number(b.slice(11)))
    .map((n) => join(outputDir, n));
}

/** Remove what saves killed in an output dir left (temporary files and folders; an interrupted folder swap is finished). */
export function removeStaleTemporaries(outputDir: string): void {
  recoverInterruptedSaves(outputDir);
  // Temporary checkpoint folders of peft-ts versions before writeFolderAtomic.
  for (const n of readdirSync(outputDir)) if (n.startsWith(".tmp-checkpoint-")) rmSync(join(outputDir, n), { recursive: true, force: true });
}

/** Write checkpoint-<global_step> atomically (a temporary folder renamed into place); returns its path. */
export function saveCheckpoint(outputDir: string, parts: CheckpointParts, beforeRename?: (tmpDir: string) => void): string {
  const final = join(outputDir, `checkpoint-${parts.state.global_step}`);
  writeFolderAtomic(final, (tmp) => {
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
  });
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
