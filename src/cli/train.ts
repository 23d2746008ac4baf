/**
 * `peft train CONFIG`: load the model and tokenizer named in a JSON/YAML config, wrap the model with the PEFT
 * method, train with a progress display, and leave in output_dir the adapter (adapter_config.json +
 * adapter_model.safetensors), the tokenizer files, training_log.jsonl, loss.svg and the checkpoints. With
 * --engine accelerate the prepared run is handed to Python's transformers and peft instead (train-accelerate.ts).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeJsonAtomic } from "../io/json.js";
import { writeFileAtomic } from "../io/atomic.js";
import { CheckpointError } from "../errors.js";
import { DataCollatorForSeq2Seq, Trainer } from "../train/index.js";
import { CliError } from "./errors.js";
import { copyTokenizerFiles } from "./folders.js";
import { JsonlLogCallback, ProgressCallback } from "../train/progress.js";
import { lossCurveSvg } from "./loss-plot.js";
import { buildPeftModel, padIdOf, prepareRun } from "./train-run.js";
import { HANDOFF_OPTIONS, HANDOFF_USAGE, handOffToAccelerate, handoffOptions } from "./train-accelerate.js";

export const TRAIN_USAGE = `usage: peft train CONFIG.{json,yaml} [--resume] [--max-steps N] [--output-dir DIR]
       peft train CONFIG.{json,yaml} --engine accelerate [--num-processes N] [--python PATH] [--dry-run] [--same-init]

Fine-tune a model with a PEFT method as the config file says:
  model_name_or_path  model folder (config.json + model.safetensors)
  model               {"dtype": "bfloat16"}: frozen weights kept in bfloat16/float16 ("auto": as stored;
                      default float32); "quantization_config": {"load_in_4bit": true, "bnb_4bit_quant_type":
                      "nf4", "bnb_4bit_use_double_quant": true} (QLoRA; BitsAndBytesConfig fields)
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
${HANDOFF_USAGE}`;

/**
 * The end-of-run save of `peft train` into output_dir, every file atomic: the adapter (its folder swapped whole), the
 * tokenizer files, trainer_state.json and loss.svg. When the run diverged, the CheckpointError of an adapter that was
 * kept rather than replaced by non-finite weights is returned instead of thrown (the log, state and curve are written).
 */
export function saveRunOutputs(
  trainer: Trainer,
  tokenizerDir: string,
  plotTitle: string,
  diverged: boolean,
): CheckpointError | null {
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
      ...HANDOFF_OPTIONS,
    },
  });
  if (positionals.length !== 1) {
    throw new CliError(
      positionals.length === 0
        ? "peft train needs a config file"
        : `peft train takes one config file, got ${positionals.length}: ${positionals.join(" ")}`,
      "usage: peft train CONFIG.{json,yaml} (see peft train --help)",
    );
  }
  const handoff = handoffOptions(values);
  if (handoff && values.resume)
    throw new CliError(
      "--resume is not available with --engine accelerate",
      "resume a hand-off run with transformers' own resume_from_checkpoint, or train with peft-ts",
    );
  const run = prepareRun(positionals[0]!, values);
  if (handoff) {
    handOffToAccelerate(run, handoff);
    return;
  }
  const { cfg, args, peftConfig, trainSet, evalSet } = run;
  const model = buildPeftModel(run);
  const padId = padIdOf(run);
  model.printTrainableParameters();
  console.log(
    `train examples: ${trainSet.length}${evalSet ? ` | eval examples: ${evalSet.length}` : ""} ` +
      `| output_dir: ${args.output_dir}`,
  );

  const logPath = join(args.output_dir, "training_log.jsonl");
  const trainer = new Trainer({
    model,
    args,
    trainDataset: trainSet,
    ...(evalSet ? { evalDataset: evalSet } : {}),
    dataCollator: DataCollatorForSeq2Seq({ padTokenId: padId }),
    callbacks: [...(args.disable_tqdm ? [] : [new ProgressCallback()]), new JsonlLogCallback(logPath)],
  });
  const result = trainer.train(values.resume ? { resumeFromCheckpoint: true } : {});
  const history = trainer.state.log_history;
  if (evalSet && !history.some((e) => e["eval_loss"] !== undefined && e["step"] === trainer.state.global_step))
    trainer.evaluate();

  const kept = saveRunOutputs(
    trainer,
    cfg.tokenizer,
    `Training loss (${peftConfig.peft_type})`,
    result.divergedAtStep !== null,
  );
  if (result.divergedAtStep !== null) {
    throw new CliError(
      `training diverged at step ${result.divergedAtStep} (the loss or gradient norm became NaN or infinite); ` +
        (kept
          ? `the adapter already in ${args.output_dir} was kept, not replaced`
          : `the adapter saved to ${args.output_dir} holds NaN or infinite weights`),
      `lower training_args.learning_rate (now ${args.learning_rate}), keep max_grad_norm > 0, or ` +
        `check the dataset; see ${logPath}`,
    );
  }
  const evalLoss = [...trainer.state.log_history].reverse().find((e) => e["eval_loss"] !== undefined)?.["eval_loss"];
  if (result.stepsRun === 0) {
    console.log(
      `nothing to train: the run in ${args.output_dir} is already at step ${result.globalStep} ` +
        `of ${trainer.state.max_steps} ` +
        "(raise --max-steps to train further)",
    );
  }
  const trainLoss = `${result.trainingLoss.toFixed(4)}${result.stepsRun === 0 ? " (last logged)" : ""}`;
  console.log(
    `train_loss: ` +
      `${trainLoss}${evalLoss !== undefined ? ` | eval_loss: ${evalLoss.toFixed(4)}` : ""} | ` +
      `steps: ${result.globalStep}`,
  );
  console.log(`adapter saved to ${args.output_dir} (adapter_config.json, adapter_model.safetensors, tokenizer files)`);
  console.log(`log: ${logPath} | loss curve: ${join(args.output_dir, "loss.svg")}`);
}
