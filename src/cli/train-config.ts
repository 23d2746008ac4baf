/**
 * The config file of `peft train`: JSON or YAML, with the fields below. Relative paths are relative to the
 * working directory, as in the Python tools. Unknown top-level fields are errors (a typo would otherwise be
 * ignored silently); the `peft` and `training_args` objects are passed through with their HF field names.
 */
import { existsSync, readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { closest } from "../io/config-fields.js";
import { CliError } from "./errors.js";
import { parseJson } from "../io/json.js";
import { MODEL_DTYPES, type ModelDType } from "../models/pretrained.js";
import { parseQuantizationConfig, type BitsAndBytesConfig } from "../models/quantization.js";

/** How dataset records become training examples. */
export type DatasetFormat = "instruction" | "text" | "classification";

/** A parsed, checked `peft train` config. */
export interface TrainConfig {
  /** Model folder (config.json + safetensors). */
  model_name_or_path: string;
  /** How the model is loaded: fromPretrained's dtype (default float32) and quantization_config (BitsAndBytesConfig fields). */
  model: { dtype: ModelDType; quantization_config: BitsAndBytesConfig | null };
  /** Tokenizer folder; defaults to the model folder. */
  tokenizer: string;
  /** Training records: a JSON array or JSONL file. */
  dataset: string;
  dataset_format: DatasetFormat;
  /** Examples are truncated to this many tokens. */
  max_length: number;
  /** PEFT config in HF field names (peft_type + the method's fields). */
  peft: Record<string, unknown>;
  /** TrainingArguments fields. */
  training_args: Record<string, unknown>;
  /** A separate eval file … */
  eval_dataset: string | null;
  /** … or a fraction (or count) of the training records held out for evaluation. */
  eval_split: number | null;
  /** instruction format: system prompt for records that have none. */
  system_prompt: string | null;
  /** text format: the field holding the text (default "text"). */
  text_field: string;
  /** classification: the number of classes (default: the largest label + 1). */
  num_labels: number | null;
}

const FIELDS = [
  "model_name_or_path",
  "model",
  "tokenizer",
  "dataset",
  "dataset_format",
  "max_length",
  "peft",
  "training_args",
  "eval_dataset",
  "eval_split",
  "system_prompt",
  "text_field",
  "num_labels",
] as const;
const FORMATS: readonly DatasetFormat[] = ["instruction", "text", "classification"];

/** Parse a JSON or YAML file into an object (YAML for .yaml/.yml, JSON otherwise). */
export function readConfigFile(path: string): Record<string, unknown> {
  if (!existsSync(path))
    throw new CliError(`config file ${path} does not exist`, "pass the path of a .json or .yaml training config");
  const text = readFileSync(path, "utf8");
  const yaml = [".yaml", ".yml"].includes(extname(path).toLowerCase());
  let value: unknown;
  try {
    value = yaml ? parseYaml(text) : parseJson(text);
  } catch (err) {
    const msg = (err as Error).message.split("\n")[0];
    throw new CliError(
      `${path} is not valid ${yaml ? "YAML" : "JSON"}: ${msg}`,
      yaml
        ? "check the indentation and quoting near the position shown"
        : "JSON needs double-quoted keys and no trailing commas (or write the config as .yaml)",
    );
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new CliError(
      `${path} must hold an object of config fields`,
      `start from the example in the README: model_name_or_path, dataset, peft, training_args`,
    );
  }
  return value as Record<string, unknown>;
}

function str(raw: Record<string, unknown>, key: string, path: string, required: boolean): string | null {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (required)
      throw new CliError(`${path}: missing required field "${key}"`, HINTS[key] ?? `add "${key}" to the config`);
    return null;
  }
  if (typeof v !== "string" || v === "")
    throw new CliError(
      `${path}: "${key}" must be a non-empty string, got ${JSON.stringify(v)}`,
      HINTS[key] ?? `set "${key}" to a string`,
    );
  return v;
}

function obj(raw: Record<string, unknown>, key: string, path: string): Record<string, unknown> | null {
  const v = raw[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v))
    throw new CliError(`${path}: "${key}" must be an object of fields, got ${JSON.stringify(v)}`, HINTS[key] ?? "");
  return v as Record<string, unknown>;
}

const HINTS: Record<string, string> = {
  model_name_or_path: 'set "model_name_or_path" to a local Hugging Face model folder (config.json + model.safetensors)',
  dataset: 'set "dataset" to a JSON array or JSONL file of records',
  peft: 'add e.g. "peft": {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "task_type": "CAUSAL_LM"}',
  training_args: 'add e.g. "training_args": {"output_dir": "out", "learning_rate": 2e-4, "num_train_epochs": 1}',
};

/** Check a raw config object and fill the defaults. */
export function parseTrainConfig(raw: Record<string, unknown>, path: string): TrainConfig {
  for (const key of Object.keys(raw)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      const guess = closest(key, FIELDS);
      throw new CliError(
        `${path}: unknown field "${key}"${guess ? ` (did you mean "${guess}"?)` : ""}`,
        `known fields: ${FIELDS.join(", ")}`,
      );
    }
  }
  const model = str(raw, "model_name_or_path", path, true)!;
  const format = (raw["dataset_format"] ?? "instruction") as DatasetFormat;
  if (!FORMATS.includes(format)) {
    const guess = typeof format === "string" ? closest(format, FORMATS) : null;
    throw new CliError(
      `${path}: unknown dataset_format ${JSON.stringify(format)}${guess ? ` (did you mean "${guess}"?)` : ""}`,
      'use "instruction" ({instruction, input?, output, system?} records), "text" ({text}) or ' +
        '"classification" ({text, label})',
    );
  }
  const peft = obj(raw, "peft", path);
  if (!peft) throw new CliError(`${path}: missing required field "peft"`, HINTS["peft"]);
  if (typeof peft["peft_type"] !== "string")
    throw new CliError(
      `${path}: the "peft" object has no "peft_type"`,
      'add "peft_type": "LORA" (or another method) to the "peft" object',
    );
  const args = obj(raw, "training_args", path);
  if (!args) throw new CliError(`${path}: missing required field "training_args"`, HINTS["training_args"]);
  if (typeof args["output_dir"] !== "string" || args["output_dir"] === "") {
    throw new CliError(
      `${path}: training_args has no "output_dir"`,
      'add "output_dir": "<folder>" to training_args: the adapter, checkpoints and logs go there',
    );
  }
  const maxLength = raw["max_length"] ?? 512;
  if (typeof maxLength !== "number" || !Number.isInteger(maxLength) || maxLength < 2) {
    throw new CliError(
      `${path}: "max_length" must be an integer ≥ 2, got ${JSON.stringify(raw["max_length"])}`,
      "max_length is the number of tokens examples are truncated to (e.g. 512)",
    );
  }
  const evalDataset = str(raw, "eval_dataset", path, false);
  const evalSplit = raw["eval_split"] ?? null;
  if (
    evalSplit !== null &&
    (typeof evalSplit !== "number" || !(evalSplit > 0) || (evalSplit >= 1 && !Number.isInteger(evalSplit)))
  ) {
    throw new CliError(
      `${path}: "eval_split" must be a fraction in (0, 1) or a whole number of records, got ` +
        `${JSON.stringify(evalSplit)}`,
      'e.g. "eval_split": 0.1 holds out 10% of the records',
    );
  }
  if (evalDataset !== null && evalSplit !== null)
    throw new CliError(
      `${path}: give either "eval_dataset" or "eval_split", not both`,
      "eval_split holds out part of dataset; eval_dataset is a separate file",
    );
  const modelOpts = obj(raw, "model", path) ?? {};
  for (const key of Object.keys(modelOpts)) {
    if (key !== "dtype" && key !== "quantization_config") {
      const guess = closest(key, ["dtype", "quantization_config"]);
      throw new CliError(
        `${path}: unknown field "model.${key}"${guess ? ` (did you mean "${guess}"?)` : ""}`,
        'the "model" object takes "dtype" and "quantization_config"',
      );
    }
  }
  const quantization = obj(modelOpts, "quantization_config", `${path}: model`);
  if (quantization) parseQuantizationConfig(quantization); // checked now, before any loading
  const dtype = modelOpts["dtype"] ?? "float32";
  if (!MODEL_DTYPES.includes(dtype as ModelDType)) {
    throw new CliError(
      `${path}: "model.dtype" must be one of ${MODEL_DTYPES.join(", ")}, got ${JSON.stringify(dtype)}`,
      '"bfloat16" keeps the frozen weights in half the memory; "auto" uses the checkpoint\'s own dtype',
    );
  }
  const numLabels = raw["num_labels"] ?? null;
  if (numLabels !== null && (typeof numLabels !== "number" || !Number.isInteger(numLabels) || numLabels < 1)) {
    throw new CliError(
      `${path}: "num_labels" must be a positive integer, got ${JSON.stringify(numLabels)}`,
      "num_labels is the number of classes",
    );
  }
  return {
    model_name_or_path: model,
    model: { dtype: dtype as ModelDType, quantization_config: quantization as BitsAndBytesConfig | null },
    tokenizer: str(raw, "tokenizer", path, false) ?? model,
    dataset: str(raw, "dataset", path, true)!,
    dataset_format: format,
    max_length: maxLength,
    peft,
    training_args: args,
    eval_dataset: evalDataset,
    eval_split: evalSplit as number | null,
    system_prompt: str(raw, "system_prompt", path, false),
    text_field: str(raw, "text_field", path, false) ?? "text",
    num_labels: numLabels as number | null,
  };
}
