/**
 * `peft train CONFIG`: load the model and tokenizer named in a JSON/YAML config, wrap the model with the PEFT
 * method, train with a progress display, and leave in output_dir the adapter (adapter_config.json +
 * adapter_model.safetensors), the tokenizer files, training_log.jsonl, loss.svg and the checkpoints.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { manualSeed } from "../tensor/index.js";
import { writeJsonAtomic } from "../io/json.js";
import { writeFileAtomic } from "../io/atomic.js";
import { CheckpointError } from "../errors.js";
import { configFromJson, getPeftModel, type PeftConfig } from "../peft/index.js";
import {
  DataCollatorForSeq2Seq, Dataset, Trainer, TrainingArguments, listCheckpoints, loadDataset, tokenizeClassification,
  tokenizeInstruction, tokenizeText, type Example,
} from "../train/index.js";
import type { PreTrainedTokenizer } from "../tokenizers/index.js";
import { PeftError } from "../errors.js";
import { CliError } from "./errors.js";
import { copyTokenizerFiles, loadModel, loadTokenizer, requireModelDir } from "./folders.js";
import { resolveConfigIds } from "./hub-args.js";
import { JsonlLogCallback, ProgressCallback } from "../train/progress.js";
import { lossCurveSvg } from "./loss-plot.js";
import { parseTrainConfig, readConfigFile, type TrainConfig } from "./train-config.js";
import { intOption } from "./options.js";

export const TRAIN_USAGE = `usage: peft train CONFIG.{json,yaml} [--resume] [--max-steps N] [--output-dir DIR]

Fine-tune a model with a PEFT method as the config file says:
  model_name_or_path  model folder (config.json + model.safetensors)
  model               {"dtype": "bfloat16"}: frozen weights kept in bfloat16/float16 ("auto": as stored;
                      default float32)
  tokenizer           tokenizer folder (default: the model folder)
  dataset             JSON array or JSONL file of records
  dataset_format      "instruction" ({instruction, input?, output, system?}; the default),
                      "text" ({text}) or "classification" ({text, label})
  max_length          tokens per example (default 512)
  peft                PEFT config in HF field names, e.g. {"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                      "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
  training_args       TrainingArguments fields (output_dir, learning_rate, num_train_epochs, max_steps, bf16,
                      fp16, gradient_checkpointing, …)
  eval_dataset        a separate eval file, or
  eval_split          a fraction (or count) of the records held out for evaluation
  system_prompt       instruction format: system prompt for records without one
  text_field          text format: the field with the text (default "text")
  num_labels          classification: the number of classes (default: largest label + 1)

Options:
  --resume            continue from the latest checkpoint-N in output_dir
  --max-steps N       override training_args.max_steps
  --output-dir DIR    override training_args.output_dir
`;

/** Tokenize the records of a dataset for the config's format; records that teach nothing are dropped with a warning. */
function tokenizeDataset(ds: Dataset, cfg: TrainConfig, tok: PreTrainedTokenizer, file: string): Dataset {
  const opts = { maxLength: cfg.max_length };
  const examples: Example[] = [];
  let dropped = 0;
  ds.examples.forEach((record, i) => {
    let e: Example;
    try {
      if (cfg.dataset_format === "instruction") e = tokenizeInstruction(tok, record, { ...opts, ...(cfg.system_prompt ? { defaultSystem: cfg.system_prompt } : {}) });
      else if (cfg.dataset_format === "text") e = tokenizeText(tok, record, { ...opts, field: cfg.text_field });
      else e = tokenizeClassification(tok, record, opts);
    } catch (err) {
      throw new CliError(`${file}: record ${i + 1}: ${(err as Error).message}`, `every record must fit dataset_format "${cfg.dataset_format}"`);
    }
    // Poly routes each record by its task.
    if (typeof record["task_ids"] === "number") e = { ...e, task_ids: record["task_ids"] };
    const labels = e["labels"];
    if (Array.isArray(labels) && !labels.some((l) => l !== -100)) dropped++;
    else examples.push(e);
  });
  if (dropped > 0) process.emitWarning(`${file}: ${dropped} record(s) dropped: their prompt fills max_length (${cfg.max_length}) and leaves no response tokens to learn`);
  if (examples.length === 0) throw new CliError(`${file}: no record has tokens to learn within max_length ${cfg.max_length}`, "raise max_length or shorten the prompts");
  return new Dataset(examples);
}

/** The task_type the dataset format needs. */
function taskTypeFor(format: TrainConfig["dataset_format"]): string {
  return format === "classification" ? "SEQ_CLS" : "CAUSAL_LM";
}

/**
 * The end-of-run save of `peft train` into output_dir, every file atomic: the adapter (its folder swapped whole), the
 * tokenizer files, trainer_state.json and loss.svg. When the run diverged, the CheckpointError of an adapter that was
 * kept rather than replaced by non-finite weights is returned instead of thrown (the log, state and curve are written).
 */
export function saveRunOutputs(trainer: Trainer, tokenizerDir: string, plotTitle: string, diverged: boolean): CheckpointError | null {
  const dir = trainer.args.output_dir;
  let kept: CheckpointError | null = null;
  try {
    trainer.saveModel(dir);
    copyTokenizerFiles(tokenizerDir, dir);
  } catch (err) {
    if (!(err instanceof CheckpointError) || !diverged) throw err;
    kept = err;
  }
  writeJsonAtomic(join(dir, "trainer_state.json"), trainer.state);
  writeFileAtomic(join(dir, "loss.svg"), lossCurveSvg(trainer.state.log_history, { title: plotTitle }));
  return kept;
}

/** Run `peft train`. */
export function train(argv: string[]): void {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      resume: { type: "boolean" },
      "max-steps": { type: "string" },
      "output-dir": { type: "string" },
    },
  });
  if (positionals.length !== 1) {
    throw new CliError(positionals.length === 0 ? "peft train needs a config file" : `peft train takes one config file, got ${positionals.length}: ${positionals.join(" ")}`, "usage: peft train CONFIG.{json,yaml} (see peft train --help)");
  }
  const configPath = positionals[0]!;
  const cfg = parseTrainConfig(readConfigFile(configPath), configPath);
  const argFields = { ...cfg.training_args };
  if (values["max-steps"] !== undefined) argFields["max_steps"] = intOption("--max-steps", values["max-steps"], 1);
  if (values["output-dir"] !== undefined) argFields["output_dir"] = values["output-dir"];
  const args = TrainingArguments(argFields as Partial<TrainingArguments>);

  // Check every path before loading anything heavy (Hub ids become their cached snapshot folders first).
  resolveConfigIds(cfg);
  requireModelDir(cfg.model_name_or_path, "model_name_or_path");
  if (!existsSync(join(cfg.tokenizer, "tokenizer.json"))) {
    throw new CliError(`${cfg.tokenizer === cfg.model_name_or_path ? "model_name_or_path" : "tokenizer"}: no tokenizer.json in ${cfg.tokenizer}`,
      'set "tokenizer" in the config to a folder with tokenizer.json');
  }
  for (const [field, path] of [["dataset", cfg.dataset], ["eval_dataset", cfg.eval_dataset]] as const) {
    if (path !== null && !existsSync(path)) throw new CliError(`${field}: file ${path} does not exist`, `set "${field}" to a JSON array or JSONL file (relative paths are relative to the working directory)`);
  }
  if (values.resume && listCheckpoints(args.output_dir).length === 0) {
    throw new CliError(`--resume: no checkpoint-N folder in ${args.output_dir}`, "checkpoints are written every save_steps steps; run without --resume to start over");
  }
  const peftFields = { ...cfg.peft };
  const wantedTask = taskTypeFor(cfg.dataset_format);
  peftFields["task_type"] ??= wantedTask;
  if (peftFields["task_type"] !== wantedTask) {
    throw new CliError(`peft.task_type is ${JSON.stringify(peftFields["task_type"])} but dataset_format "${cfg.dataset_format}" trains ${wantedTask}`, `set peft.task_type to "${wantedTask}" or leave it out`);
  }
  let peftConfig: PeftConfig;
  try {
    peftConfig = configFromJson(peftFields, false);
  } catch (err) {
    const hint = err instanceof PeftError ? err.hint : undefined;
    throw new CliError(`peft: ${(err as Error).message}`, hint ?? `fix the "peft" object of ${configPath} (the method's config in HF field names)`);
  }

  const tok = loadTokenizer(cfg.tokenizer);
  const trainRecords = loadDataset(cfg.dataset);
  let trainSet = tokenizeDataset(trainRecords, cfg, tok, cfg.dataset);
  let evalSet: Dataset | undefined;
  if (cfg.eval_dataset !== null) evalSet = tokenizeDataset(loadDataset(cfg.eval_dataset), cfg, tok, cfg.eval_dataset);
  else if (cfg.eval_split !== null) {
    let split;
    try {
      split = trainSet.trainTestSplit(cfg.eval_split, args.seed);
    } catch (err) {
      throw new CliError(`eval_split: ${(err as Error).message}`, "use a smaller eval_split or more records");
    }
    [trainSet, evalSet] = [split.train, split.test];
  }
  if (args.eval_strategy !== "no" && !evalSet) {
    throw new CliError(`training_args.eval_strategy is "${args.eval_strategy}" but there is no eval data`, 'add "eval_dataset" (a file) or "eval_split" (e.g. 0.1) to the config, or set eval_strategy "no"');
  }

  const overrides: Record<string, unknown> = {};
  if (cfg.dataset_format === "classification") {
    const labels = trainSet.examples.map((e) => e["label"] as number);
    const numLabels = cfg.num_labels ?? Math.max(...labels) + 1;
    const bad = [...labels, ...(evalSet?.examples.map((e) => e["label"] as number) ?? [])].find((l) => !Number.isInteger(l) || l < 0 || l >= numLabels);
    if (bad !== undefined) throw new CliError(`classification label ${bad} is not a class id in 0..${numLabels - 1}`, "labels must be integers from 0 to num_labels - 1");
    overrides["num_labels"] = numLabels;
  }

  manualSeed(args.seed);
  const task = cfg.dataset_format === "classification" ? "sequence-classification" : "causal-lm";
  const base = loadModel(cfg.model_name_or_path, task, overrides, true, cfg.model.dtype);
  const padId = tok.padTokenId ?? 0;
  if (base.config.pad_token_id === null || base.config.pad_token_id === undefined) base.config.pad_token_id = padId;
  const model = getPeftModel(base, peftConfig);
  model.printTrainableParameters();
  console.log(`train examples: ${trainSet.length}${evalSet ? ` | eval examples: ${evalSet.length}` : ""} | output_dir: ${args.output_dir}`);

  const logPath = join(args.output_dir, "training_log.jsonl");
  const trainer = new Trainer({
    model, args, trainDataset: trainSet, ...(evalSet ? { evalDataset: evalSet } : {}),
    dataCollator: DataCollatorForSeq2Seq({ padTokenId: padId }),
    callbacks: [...(args.disable_tqdm ? [] : [new ProgressCallback()]), new JsonlLogCallback(logPath)],
  });
  const result = trainer.train(values.resume ? { resumeFromCheckpoint: true } : {});
  const history = trainer.state.log_history;
  if (evalSet && !history.some((e) => e["eval_loss"] !== undefined && e["step"] === trainer.state.global_step)) trainer.evaluate();

  const kept = saveRunOutputs(trainer, cfg.tokenizer, `Training loss (${peftConfig.peft_type})`, result.divergedAtStep !== null);
  if (result.divergedAtStep !== null) {
    throw new CliError(`training diverged at step ${result.divergedAtStep} (the loss or gradient norm became NaN or infinite); ` +
      (kept ? `the adapter already in ${args.output_dir} was kept, not replaced` : `the adapter saved to ${args.output_dir} holds NaN or infinite weights`),
    `lower training_args.learning_rate (now ${args.learning_rate}), keep max_grad_norm > 0, or check the dataset; see ${logPath}`);
  }
  const evalLoss = [...trainer.state.log_history].reverse().find((e) => e["eval_loss"] !== undefined)?.["eval_loss"];
  if (result.stepsRun === 0) {
    console.log(`nothing to train: the run in ${args.output_dir} is already at step ${result.globalStep} of ${trainer.state.max_steps} ` +
      "(raise --max-steps to train further)");
  }
  const trainLoss = `${result.trainingLoss.toFixed(4)}${result.stepsRun === 0 ? " (last logged)" : ""}`;
  console.log(`train_loss: ${trainLoss}${evalLoss !== undefined ? ` | eval_loss: ${evalLoss.toFixed(4)}` : ""} | steps: ${result.globalStep}`);
  console.log(`adapter saved to ${args.output_dir} (adapter_config.json, adapter_model.safetensors, tokenizer files)`);
  console.log(`log: ${logPath} | loss curve: ${join(args.output_dir, "loss.svg")}`);
}
