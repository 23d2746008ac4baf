/**
 * `peft train CONFIG --engine accelerate`: the run prepared by peft-ts (config, PEFT config, tokenised and labelled
 * data) handed to Hugging Face's Trainer and peft as a Python script, launched with `accelerate launch` (or only
 * written, with --dry-run, to take to a cluster).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { checkPythonEnvironment, launchHandoff, writeAccelerateHandoff, type Launcher } from "../export/accelerate.js";
import { CliError } from "./errors.js";
import { copyTokenizerFiles } from "./folders.js";
import { intOption } from "./options.js";
import { buildPeftModel, padIdOf, type PreparedRun } from "./train-run.js";

/** The options of `peft train` that only the accelerate engine takes (parseArgs declarations). */
export const HANDOFF_OPTIONS = {
  engine: { type: "string" },
  "num-processes": { type: "string" },
  python: { type: "string" },
  "dry-run": { type: "boolean" },
  "same-init": { type: "boolean" },
  "handoff-dir": { type: "string" },
  launcher: { type: "string" },
} as const;

/** The lines of `peft train --help` about the accelerate engine. */
export const HANDOFF_USAGE = `  --engine E          peft-ts (default) trains here; accelerate hands the run to Hugging Face's Trainer and peft
                      (Python): a script, the tokenised data and an accelerate config, run with accelerate launch
  --num-processes N   accelerate: processes (GPUs) to launch (default 1)
  --python PATH       accelerate: the Python interpreter (default $PEFT_TS_PYTHON, else python3)
  --dry-run           accelerate: only write the folder (no Python needed), e.g. to run it on a cluster
  --same-init         accelerate: start from peft-ts' own initial adapter weights (loads the model here once)
  --launcher L        accelerate: "accelerate" (accelerate launch; default) or "torchrun"
  --handoff-dir DIR   accelerate: the folder for the script and data (default OUTPUT_DIR/accelerate)
`;

/** What the accelerate options ask for. */
export interface HandoffOptions {
  numProcesses: number;
  python: string;
  dryRun: boolean;
  sameInit: boolean;
  dir: string | undefined;
  launcher: Launcher;
}

type OptionValues = {
  [K in keyof typeof HANDOFF_OPTIONS]?: (typeof HANDOFF_OPTIONS)[K]["type"] extends "boolean" ? boolean : string;
};

function launcherOf(value: string | undefined): Launcher {
  if (value === undefined || value === "accelerate" || value === "torchrun") return value ?? "accelerate";
  throw new CliError(
    `--launcher must be accelerate or torchrun, got "${value}"`,
    "accelerate runs accelerate launch; torchrun runs python -m torch.distributed.run",
  );
}

/** The hand-off options, or null for peft-ts' own engine (where the accelerate-only options are errors). */
export function handoffOptions(values: OptionValues): HandoffOptions | null {
  const engine = values.engine ?? "peft-ts";
  if (engine === "peft-ts") {
    const stray = Object.keys(HANDOFF_OPTIONS).find(
      (k) => k !== "engine" && values[k as keyof OptionValues] !== undefined,
    );
    if (stray)
      throw new CliError(
        `--${stray} is an option of --engine accelerate`,
        `add --engine accelerate, or drop --${stray}`,
      );
    return null;
  }
  if (engine !== "accelerate")
    throw new CliError(
      `--engine must be peft-ts or accelerate, got "${engine}"`,
      "peft-ts trains here; accelerate hands the run to Python's transformers and peft",
    );
  return {
    numProcesses: values["num-processes"] === undefined ? 1 : intOption("--num-processes", values["num-processes"], 1),
    python: values.python ?? process.env["PEFT_TS_PYTHON"] ?? "python3",
    dryRun: values["dry-run"] ?? false,
    sameInit: values["same-init"] ?? false,
    dir: values["handoff-dir"],
    launcher: launcherOf(values.launcher),
  };
}

/** Write the hand-off folder for a prepared run and, unless a dry run, train with it through `accelerate launch`. */
export function handOffToAccelerate(run: PreparedRun, opts: HandoffOptions): void {
  if (run.cfg.dataset_format === "classification") {
    throw new CliError(
      '--engine accelerate trains causal language models; dataset_format "classification" is not handed off yet',
      "train classification with peft-ts' own engine (drop --engine)",
    );
  }
  if (!opts.dryRun) checkPythonEnvironment(opts.python);
  const dir = opts.dir ?? join(run.args.output_dir, "accelerate");
  // A local folder travels as an absolute path (the script may be launched from elsewhere); a Hub id stays an id.
  const model = existsSync(run.modelAsGiven) ? resolve(run.modelAsGiven) : run.modelAsGiven;
  writeAccelerateHandoff(dir, {
    model,
    torchDtype: run.cfg.model.dtype,
    quantizationConfig: run.cfg.model.quantization_config as Record<string, unknown> | null,
    padTokenId: padIdOf(run),
    adapterConfig: { ...run.peftConfig, base_model_name_or_path: model },
    // peft-ts reports nowhere; transformers would report to every tracker it finds installed.
    trainingArgs: { report_to: "none", ...run.argFields },
    train: run.trainSet.examples,
    eval: run.evalSet?.examples ?? null,
    numProcesses: opts.numProcesses,
    writeTokenizer: (to) => copyTokenizerFiles(run.cfg.tokenizer, to),
    ...(opts.sameInit ? { writeInitialAdapter: (to: string) => buildPeftModel(run).savePretrained(to) } : {}),
  });
  const launch = `accelerate launch --config_file ${join(dir, "accelerate_config.yaml")} ${join(dir, "train.py")}`;
  console.log(
    `wrote ${dir}: train.py, train.jsonl (${run.trainSet.length} ` +
      `examples)${run.evalSet ? `, eval.jsonl (${run.evalSet.length})` : ""}, ` +
      `accelerate_config.yaml, README.txt`,
  );
  if (opts.dryRun) {
    console.log(`run it with: ${launch}   (README.txt: several GPUs, machines, DeepSpeed, FSDP)`);
    return;
  }
  const status = launchHandoff(dir, opts.python, opts.numProcesses, opts.launcher);
  if (status !== 0)
    throw new CliError(
      `${opts.launcher === "torchrun" ? "torchrun" : "accelerate launch"} exited with status ${status}`,
      `see its output above; the script is ${join(dir, "train.py")}`,
    );
  console.log(
    `adapter saved to ${run.args.output_dir} by transformers' Trainer; load it with peft ` +
      `generate --adapter ${run.args.output_dir}`,
  );
}
