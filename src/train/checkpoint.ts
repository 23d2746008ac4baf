/**
 * Checkpoints: output_dir/checkpoint-N/ with the model (the adapter for PEFT models), optimizer, scheduler and
 * RNG state, trainer_state.json and training_args.json. A checkpoint is written into a temporary folder and
 * renamed into place (writeFolderAtomic), so a run killed while saving leaves the earlier checkpoints intact and
 * never a partial one.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { tensor, type Tensor } from "../tensor/index.js";
import { CheckpointError } from "../errors.js";
import { defaultGenerator } from "../tensor/random.js";
import { loadSafetensors, writeSafetensors } from "../io/safetensors.js";
import { readJsonObject, toJson, writeJsonAtomic } from "../io/json.js";
import { recoverInterruptedSaves, writeFolderAtomic } from "../io/atomic.js";
import type { Optimizer, OptimizerStateDict, LRScheduler, SchedulerStateDict } from "../optim/index.js";
import type { TrainerState } from "./callbacks.js";
import type { TrainingArguments } from "./arguments.js";
import type { Example } from "./data.js";

/** What a checkpoint captures. */
export interface CheckpointParts {
  /** Saves the model (or adapter) files into a folder. */
  saveModel(dir: string): void;
  optimizer: Optimizer;
  scheduler: LRScheduler;
  state: TrainerState;
  args: TrainingArguments;
  /** What made the run (written as run_fingerprint.json; resume compares it). */
  fingerprint?: RunFingerprint;
}

/**
 * What made a run, recorded in each checkpoint so that resume can refuse another run's checkpoint: the training
 * arguments that shape the updates, the PEFT config, the training data's content, and the model (its config and a
 * hash of its frozen weights; the path is recorded for messages, not compared: a moved model folder is the same model).
 */
export interface RunFingerprint {
  training_args: Record<string, unknown>;
  peft_config: Record<string, unknown> | null;
  dataset: { examples: number; sha256: string };
  model: { name_or_path: string | null; config: Record<string, unknown>; weights_sha256: string };
}

const FINGERPRINT_FILE = "run_fingerprint.json";
/** TrainingArguments that may change between a run and its resume (length, saving, logging, evaluation, display). */
const MAY_CHANGE = new RegExp(
  "^(output_dir|max_steps|num_train_epochs|save_.*|logging_.*|eval_.*|evaluation_strategy|per_device_eval_batch_size|" +
    "load_best_model_at_end|metric_for_best_model|greater_is_better|disable_tqdm)$",
);
/** Fields that name where things are rather than what they are. */
const LOCATION_FIELDS = /^(_name_or_path|base_model_name_or_path|transformers_version|inference_mode|revision)$/;
// Values sampled per weight tensor for the model hash: enough to tell two checkpoints apart, cheap for billions of weights.
const SAMPLES_PER_TENSOR = 256;

/** The fingerprint of a run: `frozen` are the model's weights that training does not change (all of them for full fine-tuning). */
export function runFingerprint(
  args: TrainingArguments,
  peftConfig: Record<string, unknown> | null,
  examples: readonly Example[],
  model: { nameOrPath: string | null; config: Record<string, unknown> },
  frozen: [string, Tensor][],
): RunFingerprint {
  const data = createHash("sha256");
  for (const e of examples) data.update(JSON.stringify(e)).update("\n");
  const weights = createHash("sha256");
  for (const [name, t] of frozen) {
    const stride = Math.max(1, Math.floor(t.size / SAMPLES_PER_TENSOR));
    // An evenly strided view reads SAMPLES_PER_TENSOR values without copying the tensor.
    const view = t.isContiguous() ? t.view_([Math.min(t.size, SAMPLES_PER_TENSOR)], [stride], t.offset) : t;
    weights.update(`${name} ${t.shape.join("x")}\n`).update(new Uint8Array(view.dataSync().buffer));
    if (view !== t) view.dispose();
  }
  return {
    training_args: withoutFields(args, MAY_CHANGE),
    peft_config: peftConfig && withoutFields(peftConfig, LOCATION_FIELDS),
    dataset: { examples: examples.length, sha256: data.digest("hex") },
    model: {
      name_or_path: model.nameOrPath,
      config: withoutFields(model.config, LOCATION_FIELDS),
      weights_sha256: weights.digest("hex"),
    },
  };
}

function withoutFields(fields: Record<string, unknown>, drop: RegExp): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([k, v]) => !drop.test(k) && v !== undefined));
}

/**
 * Refuse to resume from a checkpoint another run made: a CheckpointError lists every field that differs. A checkpoint
 * without a fingerprint (from peft-ts before 0.2) gets a warning and is resumed.
 */
export function checkRunFingerprint(dir: string, current: RunFingerprint): void {
  const file = join(dir, FINGERPRINT_FILE);
  if (!existsSync(file)) {
    process.emitWarning(
      `${dir} has no ${FINGERPRINT_FILE} (made by an older peft-ts): cannot check that it ` +
        `belongs to this run; resuming anyway`,
    );
    return;
  }
  const saved = readJsonObject(file) as unknown as RunFingerprint;
  const diffs = [
    ...fieldDiffs("", saved.training_args, current.training_args),
    ...fieldDiffs("peft.", saved.peft_config ?? {}, current.peft_config ?? {}),
    ...fieldDiffs("model config.", saved.model.config, current.model.config),
  ];
  const { dataset: a, model: m } = saved;
  if (a.sha256 !== current.dataset.sha256) {
    const data = (d: RunFingerprint["dataset"]) => `${d.examples} examples, sha256 ${d.sha256.slice(0, 12)}…`;
    diffs.push(`the training data (${data(a)} → ${data(current.dataset)})`);
  }
  if (m.weights_sha256 !== current.model.weights_sha256)
    diffs.push(`the model weights (${m.name_or_path ?? "?"} → ${current.model.name_or_path ?? "?"})`);
  if (diffs.length > 0) {
    throw new CheckpointError(
      `${dir} was made by a different run; these differ: ${diffs.join("; ")}`,
      "resume with the config, data and model that made the checkpoint, or train in a new " +
        "output_dir (max_steps, num_train_epochs, " +
        "save_*, logging_* and eval_* may change on resume)",
    );
  }
}

/** "field a → b" for each field whose value differs between two objects. */
function fieldDiffs(prefix: string, before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const show = (v: unknown) => (v === undefined ? "(absent)" : toJson(v));
  return [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .sort()
    .filter((k) => show(before[k]) !== show(after[k]))
    .map((k) => `${prefix}${k} ${show(before[k])} → ${show(after[k])}`);
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
  for (const n of readdirSync(outputDir))
    if (n.startsWith(".tmp-checkpoint-")) rmSync(join(outputDir, n), { recursive: true, force: true });
}

/** Write checkpoint-<global_step> atomically (a temporary folder renamed into place); returns its path. */
export function saveCheckpoint(
  outputDir: string,
  parts: CheckpointParts,
  beforeRename?: (tmpDir: string) => void,
): string {
  const final = join(outputDir, `checkpoint-${parts.state.global_step}`);
  writeFolderAtomic(final, (tmp) => {
    parts.saveModel(tmp);
    const opt = parts.optimizer.stateDict();
    const tensors = new Map<string, ReturnType<typeof tensor>>();
    const numbers: Record<string, Record<string, number>> = {};
    for (const [id, entry] of Object.entries(opt.state)) {
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v === "number") numbers[id] = { ...numbers[id], [k]: v };
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
    if (parts.fingerprint) writeJsonAtomic(join(tmp, FINGERPRINT_FILE), parts.fingerprint);
    beforeRename?.(tmp);
  });
  return final;
}

/** Restore optimizer, scheduler and RNG state from a checkpoint; returns its trainer state. */
export function loadCheckpointState(dir: string, optimizer: Optimizer, scheduler: LRScheduler): TrainerState {
  for (const f of [
    "optimizer.safetensors",
    "optimizer.json",
    "scheduler.json",
    "rng_state.json",
    "trainer_state.json",
  ]) {
    if (!existsSync(join(dir, f))) throw new Error(`${dir} is not a complete checkpoint: ${f} is missing`);
  }
  const meta = readJsonObject(join(dir, "optimizer.json")) as {
    param_groups: OptimizerStateDict["paramGroups"];
    numbers: Record<string, Record<string, number>>;
  };
  const saved = loadSafetensors(join(dir, "optimizer.safetensors"));
  const state: OptimizerStateDict["state"] = {};
  for (const [key, t] of saved) {
    const [, id, name] = key.split(".") as [string, string, string];
    state[Number(id)] = { ...state[Number(id)], [name]: t.dataSync() as Float32Array };
    t.dispose();
  }
  for (const [id, nums] of Object.entries(meta.numbers)) state[Number(id)] = { ...state[Number(id)], ...nums };
  optimizer.loadStateDict({ state, paramGroups: meta.param_groups });
  scheduler.loadStateDict(readJsonObject(join(dir, "scheduler.json")) as unknown as SchedulerStateDict);
  defaultGenerator.setState(readJsonObject(join(dir, "rng_state.json")) as { seed: number; counter: number });
  return readJsonObject(join(dir, "trainer_state.json")) as unknown as TrainerState;
}
