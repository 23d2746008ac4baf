/**
 * The engine-independent part of `peft train`: the config checked, every path checked, the PEFT config parsed and the
 * data tokenised and labelled; and the PEFT model built from the run's seed. Both engines (peft-ts' Trainer and the
 * accelerate hand-off) start from it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { manualSeed } from "../tensor/index.js";
import { PeftError } from "../errors.js";
import { configFromJson, getPeftModel, type PeftConfig, type PeftModel } from "../peft/index.js";
import {
  Dataset,
  TrainingArguments,
  listCheckpoints,
  loadDataset,
  tokenizeClassification,
  tokenizeInstruction,
  tokenizeText,
  type Example,
} from "../train/index.js";
import type { PreTrainedTokenizer } from "../tokenizers/index.js";
import { CliError } from "./errors.js";
import { loadModel, loadTokenizer, requireModelDir } from "./folders.js";
import { resolveConfigIds } from "./hub-args.js";
import { parseTrainConfig, readConfigFile, type TrainConfig } from "./train-config.js";
import { intOption } from "./options.js";

/** Tokenize the records of a dataset for the config's format; records that teach nothing are dropped with a warning. */
function tokenizeDataset(ds: Dataset, cfg: TrainConfig, tok: PreTrainedTokenizer, file: string): Dataset {
  const opts = { maxLength: cfg.max_length };
  const examples: Example[] = [];
  let dropped = 0;
  ds.examples.forEach((record, i) => {
    let e: Example;
    try {
      if (cfg.dataset_format === "instruction")
        e = tokenizeInstruction(tok, record, {
          ...opts,
          ...(cfg.system_prompt ? { defaultSystem: cfg.system_prompt } : {}),
        });
      else if (cfg.dataset_format === "text") e = tokenizeText(tok, record, { ...opts, field: cfg.text_field });
      else e = tokenizeClassification(tok, record, opts);
    } catch (err) {
      throw new CliError(
        `${file}: record ${i + 1}: ${(err as Error).message}`,
        `every record must fit dataset_format "${cfg.dataset_format}"`,
      );
    }
    // Poly routes each record by its task.
    if (typeof record["task_ids"] === "number") e = { ...e, task_ids: record["task_ids"] };
    const labels = e["labels"];
    if (Array.isArray(labels) && !labels.some((l) => l !== -100)) dropped++;
    else examples.push(e);
  });
  if (dropped > 0)
    process.emitWarning(
      `${file}: ${dropped} record(s) dropped: their prompt fills max_length (${cfg.max_length}) ` +
        `and leaves no response tokens to learn`,
    );
  if (examples.length === 0)
    throw new CliError(
      `${file}: no record has tokens to learn within max_length ${cfg.max_length}`,
      "raise max_length or shorten the prompts",
    );
  return new Dataset(examples);
}

/** The task_type the dataset format needs. */
function taskTypeFor(format: TrainConfig["dataset_format"]): string {
  return format === "classification" ? "SEQ_CLS" : "CAUSAL_LM";
}

/** A `peft train` run checked and prepared up to the model: config, arguments, PEFT config and tokenised data. */
export interface PreparedRun {
  cfg: TrainConfig;
  /** The config file's path, for messages. */
  configPath: string;
  /** The TrainingArguments fields the config and options set (unfilled: the engine fills its own defaults). */
  argFields: Record<string, unknown>;
  args: TrainingArguments;
  peftConfig: PeftConfig;
  tokenizer: PreTrainedTokenizer;
  trainSet: Dataset;
  evalSet: Dataset | undefined;
  /** config.json fields that the task sets (classification: num_labels). */
  overrides: Record<string, unknown>;
  /** model_name_or_path as the config gave it (a Hub id stays an id), before it became a local folder. */
  modelAsGiven: string;
}

/** Check the config and every path, then tokenise the data: everything before the model is loaded. */
export function prepareRun(
  configPath: string,
  values: { resume?: boolean; "max-steps"?: string; "output-dir"?: string },
): PreparedRun {
  const cfg = parseTrainConfig(readConfigFile(configPath), configPath);
  const modelAsGiven = cfg.model_name_or_path;
  const argFields = { ...cfg.training_args };
  if (values["max-steps"] !== undefined) argFields["max_steps"] = intOption("--max-steps", values["max-steps"], 1);
  if (values["output-dir"] !== undefined) argFields["output_dir"] = values["output-dir"];
  const args = TrainingArguments(argFields as Partial<TrainingArguments>);

  // Check every path before loading anything heavy (Hub ids become their cached snapshot folders first).
  resolveConfigIds(cfg);
  requireModelDir(cfg.model_name_or_path, "model_name_or_path");
  if (!existsSync(join(cfg.tokenizer, "tokenizer.json"))) {
    throw new CliError(
      `${cfg.tokenizer === cfg.model_name_or_path ? "model_name_or_path" : "tokenizer"}: no ` +
        `tokenizer.json in ${cfg.tokenizer}`,
      'set "tokenizer" in the config to a folder with tokenizer.json',
    );
  }
  for (const [field, path] of [
    ["dataset", cfg.dataset],
    ["eval_dataset", cfg.eval_dataset],
  ] as const) {
    if (path !== null && !existsSync(path))
      throw new CliError(
        `${field}: file ${path} does not exist`,
        `set "${field}" to a JSON array or JSONL file (relative paths are relative to the working directory)`,
      );
  }
  if (values.resume && listCheckpoints(args.output_dir).length === 0) {
    throw new CliError(
      `--resume: no checkpoint-N folder in ${args.output_dir}`,
      "checkpoints are written every save_steps steps; run without --resume to start over",
    );
  }
  const peftFields = { ...cfg.peft };
  const wantedTask = taskTypeFor(cfg.dataset_format);
  peftFields["task_type"] ??= wantedTask;
  if (peftFields["task_type"] !== wantedTask) {
    throw new CliError(
      `peft.task_type is ${JSON.stringify(peftFields["task_type"])} but dataset_format ` +
        `"${cfg.dataset_format}" trains ${wantedTask}`,
      `set peft.task_type to "${wantedTask}" or leave it out`,
    );
  }
  let peftConfig: PeftConfig;
  try {
    peftConfig = configFromJson(peftFields, false);
  } catch (err) {
    const hint = err instanceof PeftError ? err.hint : undefined;
    throw new CliError(
      `peft: ${(err as Error).message}`,
      hint ?? `fix the "peft" object of ${configPath} (the method's config in HF field names)`,
    );
  }

  const tok = loadTokenizer(cfg.tokenizer);
  const trainRecords = loadDataset(cfg.dataset);
  let trainSet = tokenizeDataset(trainRecords, cfg, tok, cfg.dataset);
  let evalSet: Dataset | undefined;
  if (cfg.eval_dataset !== null) evalSet = tokenizeDataset(loadDataset(cfg.eval_dataset), cfg, tok, cfg.eval_dataset);
  else if (cfg.eval_split !== null) {
    let split: { train: Dataset; test: Dataset };
    try {
      split = trainSet.trainTestSplit(cfg.eval_split, args.seed);
    } catch (err) {
      throw new CliError(`eval_split: ${(err as Error).message}`, "use a smaller eval_split or more records");
    }
    [trainSet, evalSet] = [split.train, split.test];
  }
  if (args.eval_strategy !== "no" && !evalSet) {
    throw new CliError(
      `training_args.eval_strategy is "${args.eval_strategy}" but there is no eval data`,
      'add "eval_dataset" (a file) or "eval_split" (e.g. 0.1) to the config, or set eval_strategy "no"',
    );
  }

  const overrides: Record<string, unknown> = {};
  if (cfg.dataset_format === "classification") {
    const labels = trainSet.examples.map((e) => e["label"] as number);
    const numLabels = cfg.num_labels ?? Math.max(...labels) + 1;
    const bad = [...labels, ...(evalSet?.examples.map((e) => e["label"] as number) ?? [])].find(
      (l) => !Number.isInteger(l) || l < 0 || l >= numLabels,
    );
    if (bad !== undefined)
      throw new CliError(
        `classification label ${bad} is not a class id in 0..${numLabels - 1}`,
        "labels must be integers from 0 to num_labels - 1",
      );
    overrides["num_labels"] = numLabels;
  }
  return { cfg, configPath, argFields, args, peftConfig, tokenizer: tok, trainSet, evalSet, overrides, modelAsGiven };
}

/** The pad id of the collator: the tokenizer's pad token, else 0. */
export function padIdOf(run: PreparedRun): number {
  return run.tokenizer.padTokenId ?? 0;
}

/** The model wrapped with the run's PEFT method, initialised from the run's seed (the same draw for every engine). */
export function buildPeftModel(run: PreparedRun): PeftModel {
  manualSeed(run.args.seed);
  const task = run.cfg.dataset_format === "classification" ? "sequence-classification" : "causal-lm";
  const base = loadModel(run.cfg.model_name_or_path, task, run.overrides, true, {
    dtype: run.cfg.model.dtype,
    quantizationConfig: run.cfg.model.quantization_config,
  });
  if (base.config.pad_token_id === null || base.config.pad_token_id === undefined)
    base.config.pad_token_id = padIdOf(run);
  return getPeftModel(base, run.peftConfig);
}
