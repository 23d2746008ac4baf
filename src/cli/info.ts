/**
 * `peft info DIR`: what a folder holds — a model (type, architecture, parameter count and dtypes from the
 * safetensors headers, without reading the weights, vocabulary, layers) or an adapter (method, task, base
 * model, targets and method fields, adapter tensors) — as text, or as JSON with --json.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readSafetensorsHeader, resolveCheckpointFiles, type SafetensorsHeader } from "../io/safetensors.js";
import { readJsonObject } from "../io/json.js";
import { resolveModelDType } from "../models/pretrained.js";
import { parseQuantizationConfig } from "../models/quantization.js";
import { configFromJson } from "../peft/index.js";
import { CliError } from "./errors.js";
import { folderKind } from "./folders.js";

export const INFO_USAGE = `usage: peft info DIR [--json]

Describe a model folder (config.json + safetensors) or an adapter folder (adapter_config.json).
  --json    machine-readable output
`;

/** Parameter and tensor counts of safetensors headers, by stored dtype. */
interface TensorSummary {
  parameters: number;
  tensors: number;
  dtypes: Record<string, number>;
  bytes: number;
}

function summarise(headers: SafetensorsHeader[]): TensorSummary & { shapes: Record<string, number[]> } {
  const s = {
    parameters: 0,
    tensors: 0,
    dtypes: {} as Record<string, number>,
    bytes: 0,
    shapes: {} as Record<string, number[]>,
  };
  for (const h of headers) {
    for (const [name, info] of h.tensors) {
      const n = info.shape.reduce((a, b) => a * b, 1);
      s.parameters += n;
      s.tensors++;
      s.dtypes[info.dtype] = (s.dtypes[info.dtype] ?? 0) + n;
      s.bytes += info.dataOffsets[1] - info.dataOffsets[0];
      s.shapes[name] = [...info.shape];
    }
  }
  return s;
}

const first = (raw: Record<string, unknown>, ...keys: string[]): unknown =>
  keys.map((k) => raw[k]).find((v) => v !== undefined && v !== null);

function fmtCount(n: number): string {
  const exact = n.toLocaleString("en-US");
  if (n >= 1e9) return `${exact} (${(n / 1e9).toFixed(2)}B)`;
  if (n >= 1e6) return `${exact} (${(n / 1e6).toFixed(2)}M)`;
  if (n >= 1e3) return `${exact} (${(n / 1e3).toFixed(1)}K)`;
  return exact;
}

function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) [n, i] = [n / 1024, i + 1];
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function fmtDtypes(d: Record<string, number>): string {
  return (
    Object.entries(d)
      .map(([k, v]) => `${k}${Object.keys(d).length > 1 ? ` (${fmtCount(v)})` : ""}`)
      .join(", ") || "-"
  );
}

function tokenizerSummary(dir: string): { present: boolean; chat_template: boolean } {
  const present = existsSync(join(dir, "tokenizer.json"));
  let chat = existsSync(join(dir, "chat_template.jinja"));
  if (!chat && existsSync(join(dir, "tokenizer_config.json"))) {
    try {
      chat = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"))?.chat_template != null;
    } catch {
      /* a broken tokenizer_config.json is reported when the tokenizer is loaded */
    }
  }
  return { present, chat_template: chat };
}

/** Everything `peft info` says about a model folder. */
export function modelInfo(dir: string): Record<string, unknown> {
  const raw = readJsonObject(join(dir, "config.json"));
  let weights: (TensorSummary & { files: number }) | null = null;
  let weightsError: string | null = null;
  try {
    const { files } = resolveCheckpointFiles(dir);
    const { shapes: _shapes, ...s } = summarise(files.map((f) => readSafetensorsHeader(f)));
    weights = { ...s, files: files.length };
  } catch (err) {
    weightsError = (err as Error).message.split("\n")[0]!;
  }
  return {
    kind: "model",
    path: dir,
    model_type: raw["model_type"] ?? null,
    architectures: raw["architectures"] ?? null,
    torch_dtype: raw["torch_dtype"] ?? null,
    vocab_size: raw["vocab_size"] ?? null,
    num_layers: first(raw, "num_hidden_layers", "n_layer", "num_layers") ?? null,
    hidden_size: first(raw, "hidden_size", "n_embd", "d_model", "dim") ?? null,
    num_attention_heads: first(raw, "num_attention_heads", "n_head", "num_heads", "n_heads") ?? null,
    num_key_value_heads: raw["num_key_value_heads"] ?? null,
    intermediate_size: first(raw, "intermediate_size", "n_inner", "d_ff", "hidden_dim") ?? null,
    max_position_embeddings: first(raw, "max_position_embeddings", "n_positions") ?? null,
    tie_word_embeddings: raw["tie_word_embeddings"] ?? null,
    parameters: weights?.parameters ?? null,
    tensors: weights?.tensors ?? null,
    dtypes: weights?.dtypes ?? null,
    weight_files: weights?.files ?? null,
    weight_bytes: weights?.bytes ?? null,
    // What fromPretrained(dir, {dtype: "auto"}) keeps in memory, and what float32 would take; a quantised checkpoint
    // loads as stored (its packed weights count bytes, not parameters).
    dtype: weights ? resolveModelDType("auto", raw, dir) : null,
    quantization: quantizationSummary(raw["quantization_config"]),
    memory:
      weights && !raw["quantization_config"]
        ? { float32: weights.parameters * 4, bfloat16: weights.parameters * 2 }
        : null,
    ...(weightsError ? { weights_error: weightsError } : {}),
    tokenizer: tokenizerSummary(dir),
  };
}

/** A config.json quantization_config in short (bitsandbytes' fields), or null for a float model. */
function quantizationSummary(config: unknown): Record<string, unknown> | null {
  if (!config || typeof config !== "object") return null;
  const s = parseQuantizationConfig(config as Record<string, unknown>);
  return s.bits === 4
    ? {
        method: "bitsandbytes",
        bits: 4,
        quant_type: s.quantType,
        double_quant: s.doubleQuant,
        compute_dtype: s.dict["bnb_4bit_compute_dtype"],
      }
    : { method: "bitsandbytes", bits: 8, threshold: s.threshold };
}

/** "bitsandbytes nf4 (4-bit, double quantisation)" or "bitsandbytes LLM.int8 (threshold 6)". */
function quantizationText(q: Record<string, unknown> | null): string {
  if (!q) return "none";
  return q["bits"] === 4
    ? `bitsandbytes ${String(q["quant_type"])} (4-bit${q["double_quant"] ? ", double quantisation" : ""})`
    : `bitsandbytes LLM.int8 (threshold ${String(q["threshold"])})`;
}

/** Fields every PEFT config has (shown separately from the method's own fields). */
const COMMON = new Set([
  "peft_type",
  "task_type",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  "auto_mapping",
]);
/** Method fields always shown, whatever their value. */
const ALWAYS = ["r", "lora_alpha", "target_modules", "num_virtual_tokens", "init_r", "target_r"];

/** Everything `peft info` says about an adapter folder. */
export function adapterInfo(dir: string): Record<string, unknown> {
  const config = readJsonObject(join(dir, "adapter_config.json"));
  const type = String(config["peft_type"] ?? "");
  // Fields that differ from the method's defaults (plus the key ones), so the listing stays short.
  let defaults: Record<string, unknown> = {};
  try {
    defaults = configFromJson({ peft_type: type });
  } catch {
    /* an unknown method: show every field */
  }
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(config).sort()) {
    if (COMMON.has(k)) continue;
    if (ALWAYS.includes(k) || JSON.stringify(config[k]) !== JSON.stringify(defaults[k])) fields[k] = config[k];
  }
  if (type === "LORA" && typeof config["r"] === "number" && typeof config["lora_alpha"] === "number") {
    fields["scaling"] = config["use_rslora"]
      ? config["lora_alpha"] / Math.sqrt(config["r"])
      : config["lora_alpha"] / config["r"];
  }
  const file = join(dir, "adapter_model.safetensors");
  let tensors: ReturnType<typeof summarise> | null = null;
  let weightsError: string | null = null;
  if (existsSync(file)) {
    try {
      tensors = summarise([readSafetensorsHeader(file)]);
    } catch (err) {
      weightsError = (err as Error).message.split("\n")[0]!;
    }
  } else weightsError = "adapter_model.safetensors is missing";
  const subAdapters = readdirSync(dir).filter(
    (n) =>
      statSync(join(dir, n)).isDirectory() &&
      existsSync(join(dir, n, "adapter_config.json")) &&
      !/^checkpoint-\d+$/.test(n),
  );
  const checkpoints = readdirSync(dir)
    .filter((n) => /^checkpoint-\d+$/.test(n))
    .sort((a, b) => Number(a.slice(11)) - Number(b.slice(11)));
  let training: Record<string, unknown> | null = null;
  if (existsSync(join(dir, "trainer_state.json"))) {
    try {
      const state = readJsonObject(join(dir, "trainer_state.json"));
      const log = (state["log_history"] as Record<string, number>[] | undefined) ?? [];
      const lastLoss = [...log].reverse().find((e) => e["loss"] !== undefined)?.["loss"];
      const lastEval = [...log].reverse().find((e) => e["eval_loss"] !== undefined)?.["eval_loss"];
      training = {
        global_step: state["global_step"] ?? null,
        epoch: state["epoch"] ?? null,
        last_loss: lastLoss ?? null,
        last_eval_loss: lastEval ?? null,
      };
    } catch {
      /* not ours */
    }
  }
  return {
    kind: "adapter",
    path: dir,
    peft_type: config["peft_type"] ?? null,
    task_type: config["task_type"] ?? null,
    base_model_name_or_path: config["base_model_name_or_path"] ?? null,
    target_modules: config["target_modules"] ?? null,
    fields,
    parameters: tensors?.parameters ?? null,
    tensors: tensors?.tensors ?? null,
    dtypes: tensors?.dtypes ?? null,
    weight_bytes: tensors?.bytes ?? null,
    tensor_shapes: tensors?.shapes ?? null,
    ...(weightsError ? { weights_error: weightsError } : {}),
    other_adapters: subAdapters,
    checkpoints,
    training,
    tokenizer: tokenizerSummary(dir),
  };
}

function show(v: unknown): string {
  if (v === null || v === undefined) return "-";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** Target modules; long lists of full module paths (all-linear) are summarised by their last name. */
function showTargets(t: unknown): string {
  if (!Array.isArray(t) || t.length <= 6) return show(t);
  const names = [...new Set(t.map((n) => String(n).split(".").pop()!))];
  return `${t.length} modules: ${names.join(", ")}`;
}

/** Numbers rounded for reading (JSON output keeps them exact). */
function round(v: unknown): string {
  return typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(5))) : show(v);
}

/** "bfloat16: 942.4 MiB (float32: 1.8 GiB)": the weights in memory as dtype "auto" loads them, and in float32. */
function memoryText(i: Record<string, unknown>): string {
  const m = i["memory"] as { float32: number; bfloat16: number } | null;
  if (!m) return "-";
  return i["dtype"] === "float32"
    ? `float32: ${fmtBytes(m.float32)} (bfloat16: ${fmtBytes(m.bfloat16)})`
    : `${i["dtype"]}: ${fmtBytes(m.bfloat16)} (float32: ${fmtBytes(m.float32)})`;
}

/** The lines `peft info` prints for a model folder. */
export function modelText(i: Record<string, unknown>): string[] {
  const tok = i["tokenizer"] as { present: boolean; chat_template: boolean };
  const parameters = i["parameters"] === null ? "-" : fmtCount(i["parameters"] as number);
  const tensors = i["tensors"] !== null ? ` in ${i["tensors"]} tensors` : "";
  const dtypes = i["dtypes"] ? fmtDtypes(i["dtypes"] as Record<string, number>) : "-";
  const files = i["weight_files"] === 1 ? "1 file" : `${i["weight_files"]} files`;
  const stored = i["weight_bytes"] !== null ? ` (${fmtBytes(i["weight_bytes"] as number)} in ${files})` : "";
  const memory = i["quantization"] ? `${fmtBytes(i["weight_bytes"] as number)} (as stored)` : memoryText(i);
  const kvHeads = i["num_key_value_heads"] !== null ? ` (${i["num_key_value_heads"]} key/value)` : "";
  const tokenizer = tok.present ? `yes${tok.chat_template ? " (with chat template)" : ""}` : "no tokenizer.json";
  const lines = [
    `${i["path"]}: model`,
    `  model_type:        ${show(i["model_type"])}`,
    `  architecture:      ${Array.isArray(i["architectures"]) ? (i["architectures"] as string[]).join(", ") : "-"}`,
    `  parameters:        ${parameters}${tensors}`,
    `  stored dtype:      ${dtypes}${stored}`,
    `  torch_dtype:       ${show(i["torch_dtype"])}`,
    `  quantization:      ${quantizationText(i["quantization"] as Record<string, unknown> | null)}`,
    `  memory:            ${memory}`,
    `  vocab_size:        ${show(i["vocab_size"])}`,
    `  layers:            ${show(i["num_layers"])}`,
    `  hidden_size:       ${show(i["hidden_size"])}`,
    `  attention heads:   ${show(i["num_attention_heads"])}${kvHeads}`,
    `  intermediate_size: ${show(i["intermediate_size"])}`,
    `  max positions:     ${show(i["max_position_embeddings"])}`,
    `  tied embeddings:   ${show(i["tie_word_embeddings"])}`,
    `  tokenizer:         ${tokenizer}`,
  ];
  if (i["weights_error"]) lines.push(`  weights:           ${i["weights_error"]}`);
  return lines;
}

function adapterText(i: Record<string, unknown>): string[] {
  const tok = i["tokenizer"] as { present: boolean; chat_template: boolean };
  const lines = [
    `${i["path"]}: adapter`,
    `  peft_type:   ${show(i["peft_type"])}`,
    `  task_type:   ${show(i["task_type"])}`,
    `  base model:  ${show(i["base_model_name_or_path"])}`,
    `  targets:     ${showTargets(i["target_modules"])}`,
  ];
  const fields = Object.entries(i["fields"] as Record<string, unknown>).filter(([k]) => k !== "target_modules");
  if (fields.length > 0) {
    lines.push("  settings:");
    const w = Math.max(...fields.map(([k]) => k.length));
    for (const [k, v] of fields) lines.push(`    ${k.padEnd(w)}  ${round(v)}`);
  }
  if (i["parameters"] !== null) {
    lines.push(
      `  parameters:  ${fmtCount(i["parameters"] as number)} in ${i["tensors"]} tensors, ` +
        `${fmtDtypes(i["dtypes"] as Record<string, number>)} ` +
        `(${fmtBytes(i["weight_bytes"] as number)})`,
    );
    const shapes = Object.entries(i["tensor_shapes"] as Record<string, number[]>);
    for (const [name, shape] of shapes.slice(0, 4)) lines.push(`    ${name} [${shape.join(", ")}]`);
    if (shapes.length > 4) lines.push(`    … ${shapes.length - 4} more`);
  }
  if (i["weights_error"]) lines.push(`  weights:     ${i["weights_error"]}`);
  const others = i["other_adapters"] as string[];
  if (others.length > 0) lines.push(`  other adapters (subfolders): ${others.join(", ")}`);
  const training = i["training"] as Record<string, unknown> | null;
  if (training)
    lines.push(
      `  training:    step ${show(training["global_step"])}, last loss ` +
        `${round(training["last_loss"])}${training["last_eval_loss"] !== null ? `, last eval loss ${round(training["last_eval_loss"])}` : ""}`,
    );
  const ckpts = i["checkpoints"] as string[];
  if (ckpts.length > 0) lines.push(`  checkpoints: ${ckpts.join(", ")}`);
  lines.push(`  tokenizer:   ${tok.present ? `yes${tok.chat_template ? " (with chat template)" : ""}` : "no"}`);
  return lines;
}

/** Run `peft info`. */
export function info(argv: string[]): void {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: "boolean" } },
  });
  if (positionals.length !== 1)
    throw new CliError(
      positionals.length === 0 ? "peft info needs a folder" : `peft info takes one folder, got ${positionals.length}`,
      "usage: peft info DIR [--json]",
    );
  const dir = positionals[0]!;
  const kind = folderKind(dir);
  if (kind === "missing")
    throw new CliError(
      `${dir} does not exist`,
      "pass a model folder (config.json) or an adapter folder (adapter_config.json)",
    );
  if (kind === "not-a-folder")
    throw new CliError(
      `${dir} is a file, not a folder`,
      "pass the folder that holds config.json or adapter_config.json",
    );
  if (kind === "other") {
    const entries = readdirSync(dir);
    const adapters = entries.filter((n) => existsSync(join(dir, n, "adapter_config.json")));
    throw new CliError(
      `${dir} has neither config.json nor adapter_config.json ` +
        `(${entries.length ? `found: ${entries.slice(0, 8).join(", ")}` : "it is empty"})`,
      adapters.length
        ? `it holds adapter folders: try peft info ${join(dir, adapters[0]!)}`
        : "pass a model folder (config.json) or an adapter folder (adapter_config.json)",
    );
  }
  const result = kind === "model" ? modelInfo(dir) : adapterInfo(dir);
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else console.log((kind === "model" ? modelText(result) : adapterText(result)).join("\n"));
}
