/** A temporary folder for running the `peft` command on a tiny random Qwen2 model, and the train step its method tests share. */
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as T from "../src/tensor/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { bpeTokenizerJson, qwenConfig, ENDOFTEXT, IM_END } from "./tokenizer-fixtures.js";
import { loadSafetensors } from "../src/io/safetensors.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

/** A folder holding model/ (a Qwen2 model with the BPE fixture tokenizer) and train.json, and a runner of the `peft` command there. */
export interface CliWorkspace {
  root: string;
  run(...args: string[]): SpawnSyncReturns<string>;
}

/** Make a CliWorkspace whose model has the shape of the LLaMA config `llama` (weights drawn after manualSeed(7)). */
export function cliWorkspace(prefix: string, llama: Record<string, unknown>): CliWorkspace {
  const root = mkdtempSync(join(tmpdir(), prefix));
  T.manualSeed(7);
  const model = AutoModelForCausalLM.fromConfig({
    ...llama,
    model_type: "qwen2",
    max_position_embeddings: 128,
    tie_word_embeddings: true,
    bos_token_id: ENDOFTEXT,
    eos_token_id: IM_END,
    pad_token_id: ENDOFTEXT,
  });
  model.savePretrained(join(root, "model"));
  writeFileSync(join(root, "model", "tokenizer.json"), JSON.stringify(bpeTokenizerJson("qwen2")));
  writeFileSync(join(root, "model", "tokenizer_config.json"), JSON.stringify(qwenConfig()));
  writeFileSync(
    join(root, "train.json"),
    JSON.stringify([
      { instruction: "say hello", output: "hello world!" },
      { instruction: "whisper", output: "hello" },
    ]),
  );
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { root, run };
}

/** Write `<type>.json` (2 training steps of peft_type `type` with `fields`), run `peft train` on it and check that it saved a `type` adapter to out-<type>. */
export function trainMethod(ws: CliWorkspace, type: string, fields: Record<string, unknown>): void {
  writeFileSync(
    join(ws.root, `${type}.json`),
    JSON.stringify({
      model_name_or_path: "model",
      dataset: "train.json",
      max_length: 64,
      peft: { peft_type: type, task_type: "CAUSAL_LM", ...fields },
      training_args: {
        output_dir: `out-${type}`,
        learning_rate: 0.05,
        per_device_train_batch_size: 2,
        max_steps: 2,
        logging_steps: 1,
        save_strategy: "no",
      },
    }),
  );
  const train = ws.run("train", `${type}.json`);
  assert.equal(train.status, 0, `${type}: peft train failed:\n${train.stderr}`);
  assert.match(train.stdout, /trainable params: [\d,]+ \|\| all params/);
  const saved = JSON.parse(readFileSync(join(ws.root, `out-${type}`, "adapter_config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  assert.equal(saved["peft_type"], type);
}

/**
 * For each method: `peft train` saves an adapter whose tensors all match `key`, then `peft generate` runs with it and
 * `peft merge` folds it in.
 */
export function trainGenerateMerge(
  ws: CliWorkspace,
  methods: Record<string, { fields: Record<string, unknown>; key: RegExp }>,
): void {
  for (const [type, { fields, key }] of Object.entries(methods)) {
    trainMethod(ws, type, fields);
    const tensors = [...loadSafetensors(join(ws.root, `out-${type}`, "adapter_model.safetensors")).keys()];
    assert.ok(tensors.length > 0 && tensors.every((k) => key.test(k)), `${type}: ${tensors.join(", ")}`);
    const gen = ws.run(
      "generate",
      "--model",
      "model",
      "--adapter",
      `out-${type}`,
      "--prompt",
      "say hello",
      "--max-new-tokens",
      "3",
    );
    assert.equal(gen.status, 0, `${type}: peft generate failed:\n${gen.stderr}`);
    const merged = ws.run("merge", "--model", "model", "--adapter", `out-${type}`, "--out", `merged-${type}`);
    assert.equal(merged.status, 0, `${type}: peft merge failed:\n${merged.stderr}`);
  }
}
