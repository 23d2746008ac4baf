/**
 * `peft merge --model DIR --adapter DIR --out DIR`: fold the adapter into the base weights (mergeAndUnload) and
 * save a plain Hugging Face checkpoint (config.json + model.safetensors) with the tokenizer files.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PeftModel } from "../peft/index.js";
import { readJsonObject } from "../io/json.js";
import { readSafetensorsHeader } from "../io/safetensors.js";
import { CliError } from "./errors.js";
import { copyTokenizerFiles, loadModel, requireAdapterDir, requireModelDir, taskOf } from "./folders.js";

export const MERGE_USAGE = `usage: peft merge --model DIR --adapter DIR --out DIR [--dtype float32|float16|bfloat16]

Merge an adapter into its base model and save the result as a normal model folder.
  --model DIR     base model folder
  --adapter DIR   adapter folder (adapter_config.json + adapter_model.safetensors)
  --out DIR       where to write config.json, model.safetensors and the tokenizer files
  --dtype T       storage dtype of the saved weights (default float32)
`;

/** A classifier adapter carries its head (modules_to_save): its row count is the number of labels. */
function headOverrides(adapterDir: string): Record<string, unknown> {
  const file = join(adapterDir, "adapter_model.safetensors");
  if (!existsSync(file)) return {};
  for (const [name, info] of readSafetensorsHeader(file).tensors) {
    if (/(^|\.)(score|classifier)\.weight$/.test(name)) return { num_labels: info.shape[0] };
  }
  return {};
}

/** Run `peft merge`. */
export function merge(argv: string[]): void {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { model: { type: "string" }, adapter: { type: "string" }, out: { type: "string" }, dtype: { type: "string" } },
  });
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}"`, "usage: peft merge --model DIR --adapter DIR --out DIR");
  for (const k of ["model", "adapter", "out"] as const) {
    if (!v[k]) throw new CliError(`peft merge needs --${k} DIR`, "usage: peft merge --model DIR --adapter DIR --out DIR");
  }
  const dtype = v.dtype ?? "float32";
  if (!["float32", "float16", "bfloat16"].includes(dtype)) throw new CliError(`--dtype must be float32, float16 or bfloat16, got "${dtype}"`, "float16/bfloat16 halve the file; weights load back as float32");
  const [modelDir, adapterDir, out] = [v.model!, v.adapter!, v.out!];
  requireModelDir(modelDir);
  requireAdapterDir(adapterDir);
  if ([resolve(modelDir), resolve(adapterDir)].includes(resolve(out))) {
    throw new CliError(`--out ${out} is the model or adapter folder; merging would overwrite its inputs`, "pass a new folder as --out");
  }
  const adapterConfig = readJsonObject(join(adapterDir, "adapter_config.json"));
  const task = taskOf(adapterConfig["task_type"]);
  const base = loadModel(modelDir, task, task === "sequence-classification" || task === "token-classification" ? headOverrides(adapterDir) : {}, false);
  const peft = PeftModel.fromPretrained(base, adapterDir);
  const merged = peft.mergeAndUnload();
  merged.savePretrained(out, { dtype: dtype as "float32" | "float16" | "bfloat16" });
  const tokenizerFrom = existsSync(join(adapterDir, "tokenizer.json")) ? adapterDir : modelDir;
  const copied = copyTokenizerFiles(tokenizerFrom, out);
  console.log(`merged ${String(adapterConfig["peft_type"])} adapter ${adapterDir} into ${modelDir}`);
  console.log(`saved to ${out}: config.json, model.safetensors${copied.length ? `, ${copied.join(", ")}` : " (no tokenizer files found to copy)"}`);
}
