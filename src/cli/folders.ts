/** Model, adapter and tokenizer folders for the CLI: checks with clear errors, loading, copying tokenizer files. */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fromPretrained, modelFromConfig, type Task } from "../models/auto.js";
import { resolveModelDType, type ModelDType, type PreTrainedModel } from "../models/pretrained.js";
import { parseQuantizationConfig, quantizeModel, type BitsAndBytesConfig } from "../models/quantization.js";
import { loadModelWeights } from "../io/safetensors.js";
import { readJsonObject } from "../io/json.js";
import { writeFileAtomic } from "../io/atomic.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../tokenizers/index.js";
import { CliError } from "./errors.js";

/** The files that make up a tokenizer folder (copied next to adapters and merged models). */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "vocab.txt",
  "tokenizer.model",
  "spiece.model",
  "sentencepiece.bpe.model",
  "generation_config.json",
];

/** What a folder holds. */
export type FolderKind = "model" | "adapter" | "missing" | "not-a-folder" | "other";

/** Classify a folder: adapter (adapter_config.json), model (config.json), or neither. */
export function folderKind(dir: string): FolderKind {
  if (!existsSync(dir)) return "missing";
  if (!statSync(dir).isDirectory()) return "not-a-folder";
  if (existsSync(join(dir, "adapter_config.json"))) return "adapter";
  if (existsSync(join(dir, "config.json"))) return "model";
  return "other";
}

function listing(dir: string): string {
  const files = readdirSync(dir).sort();
  return files.length === 0
    ? "it is empty"
    : `found: ${files.slice(0, 8).join(", ")}${files.length > 8 ? `, … (${files.length} entries)` : ""}`;
}

/** Throw a CliError unless dir is a model folder (config.json); `what` names the option for messages. */
export function requireModelDir(dir: string, what = "--model"): void {
  const kind = folderKind(dir);
  if (kind === "model") return;
  if (kind === "missing")
    throw new CliError(
      `${what}: model folder ${dir} does not exist`,
      "pass a local Hugging Face model folder (config.json + model.safetensors)",
    );
  if (kind === "not-a-folder")
    throw new CliError(
      `${what}: ${dir} is a file, not a model folder`,
      "pass the folder that holds config.json and model.safetensors",
    );
  if (kind === "adapter") {
    throw new CliError(
      `${what}: ${dir} is an adapter folder, not a model folder (it has adapter_config.json, no config.json)`,
      "pass the base model folder as --model and this folder as --adapter",
    );
  }
  throw new CliError(
    `${what}: ${dir} has no config.json (${listing(dir)})`,
    "pass a Hugging Face model folder (config.json + model.safetensors)",
  );
}

/** Throw a CliError unless dir is an adapter folder (adapter_config.json). */
export function requireAdapterDir(dir: string, what = "--adapter"): void {
  const kind = folderKind(dir);
  if (kind === "adapter") return;
  if (kind === "missing")
    throw new CliError(
      `${what}: adapter folder ${dir} does not exist`,
      "pass the output_dir of `peft train` or another PEFT adapter folder",
    );
  if (kind === "model")
    throw new CliError(
      `${what}: ${dir} is a model folder, not an adapter (it has config.json, no adapter_config.json)`,
      "pass it as --model; --adapter takes a folder with adapter_config.json",
    );
  if (kind === "not-a-folder")
    throw new CliError(
      `${what}: ${dir} is a file, not an adapter folder`,
      "pass the folder that holds adapter_config.json",
    );
  throw new CliError(
    `${what}: ${dir} has no adapter_config.json (${listing(dir)})`,
    "pass a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)",
  );
}

/** A tokenizer folder: the explicit one, else the first candidate holding tokenizer.json. */
export function findTokenizerDir(explicit: string | undefined, candidates: (string | undefined)[]): string {
  if (explicit) {
    if (!existsSync(join(explicit, "tokenizer.json"))) {
      throw new CliError(
        `--tokenizer: ${explicit} has no tokenizer.json`,
        'pass a folder with tokenizer.json (a Hugging Face "fast" tokenizer)',
      );
    }
    return explicit;
  }
  for (const c of candidates) if (c && existsSync(join(c, "tokenizer.json"))) return c;
  const where = candidates.filter(Boolean).join(" or ");
  throw new CliError(`no tokenizer.json in ${where}`, "pass --tokenizer DIR with the tokenizer folder");
}

/** Load a tokenizer folder, giving it a pad token (eos) when it has none. */
export function loadTokenizer(dir: string): PreTrainedTokenizer {
  const tok = AutoTokenizer.fromPretrainedSync(dir);
  if (tok.padTokenId === null && tok.eosToken !== null) tok.padToken = tok.eosToken;
  return tok;
}

/** Copy the tokenizer files of `from` into `to` (only those present, each atomically); returns the names copied. */
export function copyTokenizerFiles(from: string, to: string): string[] {
  if (resolve(from) === resolve(to)) return [];
  mkdirSync(to, { recursive: true });
  const copied: string[] = [];
  for (const f of TOKENIZER_FILES) {
    if (existsSync(join(from, f))) {
      writeFileAtomic(join(to, f), readFileSync(join(from, f)));
      copied.push(f);
    }
  }
  return copied;
}

/** The model head for an adapter's task_type. */
export function taskOf(taskType: unknown): Task {
  switch (taskType) {
    case "SEQ_CLS":
      return "sequence-classification";
    case "TOKEN_CLS":
      return "token-classification";
    case "QUESTION_ANS":
      return "question-answering";
    case "SEQ_2_SEQ_LM":
      return "seq2seq-lm";
    case "FEATURE_EXTRACTION":
      return "base";
    default:
      return "causal-lm";
  }
}

/** How the CLI loads a model: the config's model.dtype and model.quantization_config. */
export interface ModelLoadOptions {
  dtype?: ModelDType;
  quantizationConfig?: BitsAndBytesConfig | null;
}

/**
 * Load a model folder with a head; `overrides` replace config.json fields (e.g. num_labels for a new classifier
 * head). Weights missing from the folder are warned about unless `warnMissing` is false (merge: the adapter has them).
 * `opts` are fromPretrained's dtype and quantizationConfig.
 */
export function loadModel(
  dir: string,
  task: Task,
  overrides: Record<string, unknown> = {},
  warnMissing = true,
  opts: ModelLoadOptions = {},
): PreTrainedModel {
  requireModelDir(dir);
  const dtype = opts.dtype ?? "float32";
  const quantizationConfig = opts.quantizationConfig ?? undefined;
  if (Object.keys(overrides).length === 0)
    return fromPretrained(dir, task, { dtype, ...(quantizationConfig ? { quantizationConfig } : {}) });
  const raw = readJsonObject(join(dir, "config.json"));
  const resolved = resolveModelDType(dtype, raw, dir);
  const model = modelFromConfig({ ...raw, ...overrides }, task, { dtype: resolved });
  const weights = loadModelWeights(dir, { floatDtype: resolved });
  try {
    const report = model.loadWeights(weights);
    if (warnMissing && report.missingKeys.length > 0)
      process.emitWarning(`weights not in ${dir} (newly initialised): ${report.missingKeys.join(", ")}`);
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  if (quantizationConfig) {
    const settings = parseQuantizationConfig(quantizationConfig);
    quantizeModel(model, settings);
    model.config["quantization_config"] = settings.dict;
  }
  model.nameOrPath = dir;
  return model.eval();
}
