/**
 * `peft export gguf|ollama`: write a model and/or a LoRA adapter as llama.cpp GGUF files, and for Ollama a
 * Modelfile beside them.
 */
import { existsSync, mkdirSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PeftModel } from "../peft/index.js";
import { readJsonObject } from "../io/json.js";
import { writeFileAtomic } from "../io/atomic.js";
import { exportLoraToGguf, exportModelToGguf, type GgufOutType } from "../export/gguf.js";
import { modelfile } from "../export/ollama.js";
import { CliError } from "./errors.js";
import { findTokenizerDir, loadModel, loadTokenizer, requireAdapterDir, requireModelDir } from "./folders.js";

export const EXPORT_USAGE = `usage: peft export gguf   --model DIR [--adapter DIR --merge] [--outtype f16] --out FILE.gguf
       peft export gguf   --adapter DIR [--model DIR] [--outtype f32] --out FILE.gguf
       peft export ollama --model DIR [--adapter DIR] [--outtype f16] --out DIR

Write llama.cpp GGUF files (LLaMA, Mistral, Qwen2 and GPT-2 models; LoRA adapters).
  --model DIR      model folder (config.json, weights, tokenizer.json)
  --adapter DIR    LoRA adapter folder; alone (or with --model for the base's config), it is written as a GGUF
                   adapter; with --merge it is merged into the model first
  --merge          merge --adapter into --model and write one model file
  --outtype T      f32, f16, bf16 or q8_0 (models; default f16) / f32, f16, bf16 (adapters; default f32)
  --out PATH       the .gguf file (gguf), or the folder for model.gguf, adapter.gguf and Modelfile (ollama)
`;

const OUT_TYPES = ["f32", "f16", "bf16", "q8_0"] as const;

/** The base model folder of an adapter: --model, or the adapter's base_model_name_or_path. */
function baseOf(adapterDir: string, model: string | undefined): string {
  if (model) return model;
  const recorded = readJsonObject(join(adapterDir, "adapter_config.json"))["base_model_name_or_path"];
  if (typeof recorded !== "string" || !existsSync(join(recorded, "config.json"))) {
    throw new CliError(
      `the adapter's base model (${String(recorded)}) is not a local folder`,
      "pass it with --model DIR",
    );
  }
  return recorded;
}

function writeModel(modelDir: string, adapterDir: string | undefined, outType: GgufOutType, out: string): void {
  const base = loadModel(modelDir, "causal-lm");
  const model = adapterDir ? PeftModel.fromPretrained(base, adapterDir).mergeAndUnload() : base;
  const tokenizerDir = findTokenizerDir(undefined, [adapterDir, modelDir]);
  const names = exportModelToGguf(model, loadTokenizer(tokenizerDir), tokenizerDir, out, {
    outType,
    name: basename(resolve(modelDir)),
  });
  console.log(`wrote ${out}: ${names.length} tensors (${outType})${adapterDir ? `, ${adapterDir} merged in` : ""}`);
}

function writeAdapter(adapterDir: string, modelDir: string, outType: GgufOutType, out: string): void {
  if (outType === "q8_0")
    throw new CliError("--outtype q8_0 is for models; adapters are f32, f16 or bf16", "drop --outtype or pick f16");
  const names = exportLoraToGguf(adapterDir, readJsonObject(join(modelDir, "config.json")), out, { outType });
  console.log(`wrote ${out}: ${names.length / 2} LoRA layers (${outType})`);
}

/** Run `peft export`. */
export function exportCommand(argv: string[]): void {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      adapter: { type: "string" },
      merge: { type: "boolean" },
      outtype: { type: "string" },
      out: { type: "string" },
    },
  });
  const [format, extra] = positionals;
  if (format !== "gguf" && format !== "ollama")
    throw new CliError(
      `peft export needs a format: gguf or ollama${format ? `, got "${format}"` : ""}`,
      "usage: peft export gguf|ollama … (peft export --help)",
    );
  if (extra !== undefined) throw new CliError(`unexpected argument "${extra}"`, "see peft export --help");
  if (!v.out) throw new CliError("peft export needs --out", format === "gguf" ? "--out FILE.gguf" : "--out DIR");
  if (!v.model && !v.adapter)
    throw new CliError("peft export needs --model DIR, --adapter DIR, or both", "see peft export --help");
  if (v.merge && !(v.model && v.adapter))
    throw new CliError("--merge needs both --model and --adapter", "see peft export --help");
  if (v.outtype !== undefined && !(OUT_TYPES as readonly string[]).includes(v.outtype))
    throw new CliError(
      `--outtype must be one of ${OUT_TYPES.join(", ")}, got "${v.outtype}"`,
      "f16 halves the file; q8_0 quarters it",
    );
  if (v.model) requireModelDir(v.model);
  if (v.adapter) requireAdapterDir(v.adapter);
  const outType = v.outtype as GgufOutType | undefined;

  if (format === "gguf") {
    mkdirSync(dirname(resolve(v.out)), { recursive: true });
    if (v.adapter && !v.merge) writeAdapter(v.adapter, baseOf(v.adapter, v.model), outType ?? "f32", v.out);
    else writeModel(v.model!, v.merge ? v.adapter : undefined, outType ?? "f16", v.out);
    return;
  }
  if (!v.model)
    throw new CliError(
      "peft export ollama needs --model DIR (the base model is part of what Ollama runs)",
      "add --model DIR",
    );
  mkdirSync(v.out, { recursive: true });
  writeModel(v.model, v.merge ? v.adapter : undefined, outType ?? "f16", join(v.out, "model.gguf"));
  const separateAdapter = v.adapter && !v.merge;
  if (separateAdapter) writeAdapter(v.adapter!, v.model, "f32", join(v.out, "adapter.gguf"));
  const tokenizer = loadTokenizer(findTokenizerDir(undefined, [v.adapter, v.model]));
  const stops = [tokenizer.eosToken, ...tokenizer.additionalSpecialTokens.filter((t) => /end|eot/i.test(t))].filter(
    (t): t is string => !!t,
  );
  const template = typeof tokenizer.chatTemplate === "string" ? tokenizer.chatTemplate : null;
  writeFileAtomic(
    join(v.out, "Modelfile"),
    modelfile({
      model: "model.gguf",
      adapter: separateAdapter ? "adapter.gguf" : undefined,
      chatTemplate: template,
      stops,
    }),
  );
  console.log(`wrote ${join(v.out, "Modelfile")}: ollama create NAME -f ${join(v.out, "Modelfile")}`);
}
