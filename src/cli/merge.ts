/**
 * `peft merge --model DIR --adapter DIR --out DIR`: fold the adapter into the base weights (mergeAndUnload) and
 * save a plain Hugging Face checkpoint (config.json + model.safetensors) with the tokenizer files.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelMismatchError } from "../errors.js";
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

/** Layer numbers in weight names (model.layers.3., transformer.h.3., encoder.layer.3., …). */
const LAYER = /\.(?:layers|h|layer|blocks?)\.(\d+)\./;

/**
 * Refuse a model with another layer count than the adapter's: an adapter for all layers of a 2-layer model would
 * leave a 3-layer model's third layer untrained (and one for 3 layers does not load into 2).
 */
function checkLayerCount(
  adapterDir: string,
  adapterConfig: Record<string, unknown>,
  modelDir: string,
  config: Record<string, unknown>,
  hint: string,
): void {
  const modelLayers = [config["num_hidden_layers"], config["n_layer"], config["num_layers"]].find(
    (n): n is number => typeof n === "number",
  );
  const file = join(adapterDir, "adapter_model.safetensors");
  if (modelLayers === undefined || !existsSync(file)) return;
  const indices = [...readSafetensorsHeader(file).tensors.keys()]
    .map((k) => LAYER.exec(k)?.[1])
    .filter((i) => i !== undefined)
    .map(Number);
  if (indices.length === 0) return;
  const adapterLayers = Math.max(...indices) + 1;
  // An adapter limited to some layers (layers_to_transform) legitimately covers fewer than the model has.
  const partial = adapterConfig["layers_to_transform"] !== null && adapterConfig["layers_to_transform"] !== undefined;
  if (adapterLayers > modelLayers || (adapterLayers < modelLayers && !partial)) {
    throw new ModelMismatchError(
      `the adapter ${adapterDir} has weights for ${adapterLayers} layers but --model ${modelDir} has ${modelLayers}: ` +
        "it was trained on another base model",
      hint,
    );
  }
}

/** Whether two model folders hold the same model: equal config.json and weight files (sizes, and bytes sampled across them). */
function sameModel(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  if (!readFileSync(join(a, "config.json")).equals(readFileSync(join(b, "config.json")))) return false;
  const weights = (d: string) =>
    readdirSync(d)
      .filter((f) => f.endsWith(".safetensors"))
      .sort();
  const [wa, wb] = [weights(a), weights(b)];
  return wa.length === wb.length && wa.every((f, i) => f === wb[i] && sameBytes(join(a, f), join(b, f)));
}

/** Equal sizes and equal 64 KiB samples at 16 places (the start, which holds the header, and evenly after it). */
function sameBytes(a: string, b: string): boolean {
  const size = statSync(a).size;
  if (statSync(b).size !== size) return false;
  const [fa, fb] = [openSync(a, "r"), openSync(b, "r")];
  try {
    const [ba, bb] = [Buffer.alloc(1 << 16), Buffer.alloc(1 << 16)];
    for (let i = 0; i < 16; i++) {
      const at = Math.floor((size * i) / 16);
      const [na, nb] = [readSync(fa, ba, 0, ba.length, at), readSync(fb, bb, 0, bb.length, at)];
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** Run `peft merge`. */
export function merge(argv: string[]): void {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      adapter: { type: "string" },
      out: { type: "string" },
      dtype: { type: "string" },
    },
  });
  if (positionals.length > 0)
    throw new CliError(
      `unexpected argument "${positionals[0]}"`,
      "usage: peft merge --model DIR --adapter DIR --out DIR",
    );
  for (const k of ["model", "adapter", "out"] as const) {
    if (!v[k])
      throw new CliError(`peft merge needs --${k} DIR`, "usage: peft merge --model DIR --adapter DIR --out DIR");
  }
  const dtype = v.dtype ?? "float32";
  if (!["float32", "float16", "bfloat16"].includes(dtype))
    throw new CliError(
      `--dtype must be float32, float16 or bfloat16, got "${dtype}"`,
      "float16/bfloat16 halve the file; weights load back as float32",
    );
  const [modelDir, adapterDir, out] = [v.model!, v.adapter!, v.out!];
  requireModelDir(modelDir);
  requireAdapterDir(adapterDir);
  if ([resolve(modelDir), resolve(adapterDir)].includes(resolve(out))) {
    throw new CliError(
      `--out ${out} is the model or adapter folder; merging would overwrite its inputs`,
      "pass a new folder as --out",
    );
  }
  const adapterConfig = readJsonObject(join(adapterDir, "adapter_config.json"));
  const task = taskOf(adapterConfig["task_type"]);
  const base = loadModel(
    modelDir,
    task,
    task === "sequence-classification" || task === "token-classification" ? headOverrides(adapterDir) : {},
    false,
  );
  const recorded =
    typeof adapterConfig["base_model_name_or_path"] === "string" ? adapterConfig["base_model_name_or_path"] : null;
  const recordedDir =
    recorded === null
      ? undefined
      : [recorded, join(adapterDir, recorded)].find((d) => existsSync(join(d, "config.json")));
  const named = "(base_model_name_or_path in adapter_config.json)";
  const rightModel = recordedDir
    ? `pass --model ${recordedDir} ${named}`
    : recorded
      ? `pass the folder of "${recorded}" as --model ${named}`
      : "pass the base model the adapter was trained on as --model";
  checkLayerCount(adapterDir, adapterConfig, modelDir, base.config, rightModel);
  let peft: PeftModel;
  try {
    peft = PeftModel.fromPretrained(base, adapterDir);
  } catch (err) {
    if (!/size mismatch/.test((err as Error).message)) throw err;
    throw new ModelMismatchError(`the adapter does not fit --model ${modelDir}: ${(err as Error).message}`, rightModel);
  }
  if (
    recordedDir
      ? !sameModel(recordedDir, modelDir)
      : recorded !== null && basename(recorded) !== basename(resolve(modelDir))
  ) {
    process.emitWarning(
      `--model ${modelDir} is not the adapter's base model "${recorded}" ` +
        `(base_model_name_or_path in adapter_config.json), ` +
        "though the shapes fit: the merge is only meaningful on the weights the adapter was " +
        "trained on; if they differ, " +
        rightModel,
    );
  }
  const merged = peft.mergeAndUnload();
  merged.savePretrained(out, { dtype: dtype as "float32" | "float16" | "bfloat16" });
  const tokenizerFrom = existsSync(join(adapterDir, "tokenizer.json")) ? adapterDir : modelDir;
  const copied = copyTokenizerFiles(tokenizerFrom, out);
  console.log(`merged ${String(adapterConfig["peft_type"])} adapter ${adapterDir} into ${modelDir}`);
  console.log(
    `saved to ${out}: config.json, ` +
      `model.safetensors${copied.length ? `, ${copied.join(", ")}` : " (no tokenizer files found to copy)"}`,
  );
}
