/** The CLI side of half precision: model.dtype in `peft train` configs, dtype and memory in `peft info`. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrainConfig } from "../src/cli/train-config.js";
import { modelInfo } from "../src/cli/info.js";
import { CliError } from "../src/cli/errors.js";
import { gpt2 } from "./tiny-models.js";

const BASE = { model_name_or_path: "m", dataset: "d.jsonl", peft: { peft_type: "LORA" }, training_args: { output_dir: "out", bf16: true } };

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
    assert.equal(params, stored.reduce((s, [, t]) => s + t.size, 0));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
