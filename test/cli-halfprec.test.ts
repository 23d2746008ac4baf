/** The CLI side of half precision and QLoRA: model.dtype and model.quantization_config in `peft train`, dtype, quantisation and memory in `peft info`. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrainConfig } from "../src/cli/train-config.js";
import { modelInfo, modelText } from "../src/cli/info.js";
import { CliError } from "../src/cli/errors.js";
import { ConfigError } from "../src/errors.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { PeftModel } from "../src/peft/index.js";
import { gpt2 } from "./tiny-models.js";
import { cliWorkspace } from "./cli-workspace.js";
import { QUANT_FIXTURES } from "./quant-fixtures.js";

const BASE = {
  model_name_or_path: "m",
  dataset: "d.jsonl",
  peft: { peft_type: "LORA" },
  training_args: { output_dir: "out", bf16: true },
};

test("peft train configs take model.dtype (default float32) and reject bad values", () => {
  assert.equal(parseTrainConfig(BASE, "c.json").model.dtype, "float32");
  assert.equal(parseTrainConfig({ ...BASE, model: { dtype: "bfloat16" } }, "c.json").model.dtype, "bfloat16");
  assert.equal(parseTrainConfig({ ...BASE, model: { dtype: "auto" } }, "c.json").training_args["bf16"], true);
  const cliError = (pattern: RegExp) => (e: unknown) => e instanceof CliError && pattern.test(e.message);
  assert.throws(() => parseTrainConfig({ ...BASE, model: { dtype: "bf16" } }, "c.json"), cliError(/model\.dtype/));
  assert.throws(() => parseTrainConfig({ ...BASE, model: { dtpye: "bfloat16" } }, "c.json"), cliError(/model\.dtpye/));
});

test("peft info shows the dtype a model loads in and its memory", () => {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-info-"));
  try {
    const model = gpt2();
    model.savePretrained(dir, { dtype: "bfloat16" });
    const info = modelInfo(dir);
    const params = info["parameters"] as number;
    assert.equal(info["dtype"], "bfloat16");
    assert.deepEqual(info["memory"], { float32: params * 4, bfloat16: params * 2 });
    // The parameters stored once (the tied LM head is not in the file): the model's own count.
    const stored = [...model.stateDict()].filter(([k]) => k !== "lm_head.weight");
    assert.equal(
      params,
      stored.reduce((s, [, t]) => s + t.size, 0),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("peft train configs take model.quantization_config (BitsAndBytesConfig fields), checked before loading", () => {
  const q = { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true };
  assert.deepEqual(
    parseTrainConfig({ ...BASE, model: { dtype: "bfloat16", quantization_config: q } }, "c.json").model
      .quantization_config,
    q,
  );
  assert.equal(parseTrainConfig(BASE, "c.json").model.quantization_config, null);
  assert.throws(
    () =>
      parseTrainConfig(
        { ...BASE, model: { quantization_config: { load_in_4bit: true, bnb_4bit_quant_typ: "nf4" } } },
        "c.json",
      ),
    (e: Error) => e instanceof ConfigError && /bnb_4bit_quant_typ/.test(e.message),
  );
  assert.throws(
    () => parseTrainConfig({ ...BASE, model: { quantisation_config: q } }, "c.json"),
    (e: Error) => /did you mean "quantization_config"/.test(e.message),
  );
});

test(
  "peft train with model.quantization_config trains LoRA on an NF4 model with bf16 around " +
    "it; the adapter loads in float32",
  () => {
    const ws = cliWorkspace("peft-ts-qlora-cli-", {
      vocab_size: 100,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    });
    try {
      writeFileSync(
        join(ws.root, "qlora.json"),
        JSON.stringify({
          model_name_or_path: "model",
          dataset: "train.json",
          max_length: 64,
          model: {
            dtype: "bfloat16",
            quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true },
          },
          peft: {
            peft_type: "LORA",
            task_type: "CAUSAL_LM",
            r: 4,
            lora_alpha: 8,
            target_modules: ["q_proj", "v_proj", "up_proj"],
          },
          training_args: {
            output_dir: "out",
            learning_rate: 0.05,
            per_device_train_batch_size: 2,
            max_steps: 12,
            logging_steps: 1,
            save_strategy: "no",
            gradient_checkpointing: true,
          },
        }),
      );
      const run = ws.run("train", "qlora.json");
      assert.equal(run.status, 0, run.stderr);
      const losses = readFileSync(join(ws.root, "out", "training_log.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => typeof e["loss"] === "number")
        .map((e) => e["loss"] as number);
      // Two examples seen again and again: every step lowers the loss.
      assert.ok(
        losses.length === 12 &&
          losses.every((l, i) => i === 0 || l < losses[i - 1]!) &&
          losses[11]! < 0.95 * losses[0]!,
        `loss should fall: ${losses.join(", ")}`,
      );
      const float = AutoModelForCausalLM.fromPretrained(join(ws.root, "model"));
      const peft = PeftModel.fromPretrained(float, join(ws.root, "out"));
      assert.ok(peft.namedParameters().some(([k]) => k.includes("lora_B")));
    } finally {
      rmSync(ws.root, { recursive: true, force: true });
    }
  },
);

test("peft info shows a bitsandbytes checkpoint's quantisation", () => {
  const info = modelInfo(join(QUANT_FIXTURES, "bnb-nf4-llama"));
  assert.deepEqual(info["quantization"], {
    method: "bitsandbytes",
    bits: 4,
    quant_type: "nf4",
    double_quant: true,
    compute_dtype: "float32",
  });
  assert.match(modelText(info).join("\n"), /quantization: +bitsandbytes nf4 \(4-bit, double quantisation\)/);
});
