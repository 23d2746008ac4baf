/**
 * The `peft train` command when things go wrong: divergence, interrupted saves, another run's checkpoint, bad option
 * values and config syntax, merging into the wrong base model.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { LoraConfig, getPeftModel } from "../src/peft/index.js";
import { parseJson } from "../src/io/json.js";
import { cliWorkspace, type CliWorkspace } from "./cli-workspace.js";
import { LLAMA } from "./tiny-models.js";

let ws: CliWorkspace;
before(() => (ws = cliWorkspace("peft-ts-cli-robust-", { ...LLAMA, vocab_size: 40 })));
after(() => rmSync(ws.root, { recursive: true, force: true }));

/** Write `<name>.json`, a LoRA run of `peft train` on the workspace's model with `args` over the defaults. */
function config(name: string, args: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  writeFileSync(
    join(ws.root, `${name}.json`),
    JSON.stringify({
      model_name_or_path: "model",
      dataset: "train.json",
      max_length: 64,
      peft: { peft_type: "LORA", r: 2, target_modules: ["q_proj"] },
      training_args: {
        output_dir: `out-${name}`,
        learning_rate: 0.01,
        per_device_train_batch_size: 2,
        max_steps: 2,
        logging_steps: 1,
        save_steps: 1,
        ...args,
      },
      ...extra,
    }),
  );
  return `${name}.json`;
}

describe("peft train: divergence", () => {
  it("exits 1 naming the step, keeps the good adapter, and still writes the log and state with NaN", () => {
    const good = ws.run("train", config("good", { output_dir: "out-div" }));
    assert.equal(good.status, 0, good.stderr);
    const adapter = readFileSync(join(ws.root, "out-div", "adapter_model.safetensors"));
    const allLinear = { peft: { peft_type: "LORA", r: 2, target_modules: "all-linear" } };
    const r = ws.run(
      "train",
      config("div", { output_dir: "out-div", learning_rate: 1e30, max_steps: 4, save_strategy: "no" }, allLinear),
    );
    assert.equal(r.status, 1, r.stderr);
    const state = parseJson(readFileSync(join(ws.root, "out-div", "trainer_state.json"), "utf8")) as {
      log_history: Record<string, number>[];
    };
    const first = state.log_history.find((e) => !Number.isFinite(e["loss"]) || !Number.isFinite(e["grad_norm"]))!;
    assert.ok(first, "lr 1e30 diverges within 4 steps");
    assert.match(
      r.stderr,
      new RegExp(`^warning: training diverged at step ${first["step"]}: .*learning_rate 1e\\+30 is too high`, "m"),
    );
    assert.match(
      r.stderr,
      new RegExp(
        `^error: training diverged at step ${first["step"]} .*the adapter already in out-div was kept, not replaced$`,
        "m",
      ),
    );
    assert.match(r.stderr, /^hint: lower training_args\.learning_rate/m);
    assert.deepEqual(readFileSync(join(ws.root, "out-div", "adapter_model.safetensors")), adapter);
  });
});

describe("peft train --resume", () => {
  it("refuses the checkpoint of another run in the same output_dir, naming what differs", () => {
    const a = ws.run("train", config("run-a", { output_dir: "out-shared", seed: 1 }));
    assert.equal(a.status, 0, a.stderr);
    const b = ws.run(
      "train",
      config("run-b", { output_dir: "out-shared", seed: 2, learning_rate: 0.02, max_steps: 4 }),
      "--resume",
    );
    assert.equal(b.status, 1, b.stderr);
    assert.match(
      b.stderr,
      /^error: out-shared\/checkpoint-2 was made by a different run; these differ: learning_rate 0\.01 → 0\.02; seed 1 → 2$/m,
    );
    assert.match(
      b.stderr,
      /^hint: resume with the config, data and model that made the checkpoint, or train in a new output_dir/m,
    );
    const same = ws.run("train", config("run-a2", { output_dir: "out-shared", seed: 1, max_steps: 3 }), "--resume");
    assert.equal(same.status, 0, same.stderr);
    assert.match(same.stderr, /resuming at step 2/);
  });
});

describe("peft train: the first hour", () => {
  it(
    "--resume with a larger --max-steps shows the new total; resuming a finished run says so " +
      "and reports its last loss",
    () => {
      assert.equal(ws.run("train", config("len", {}), "--max-steps", "2").status, 0);
      const more = ws.run("train", config("len", {}), "--resume", "--max-steps", "3");
      assert.equal(more.status, 0, more.stderr);
      assert.match(more.stderr, /training: 3 steps, resuming at step 2/);
      assert.match(more.stderr, /^step 3\/3 \| loss \d/m);
      assert.doesNotMatch(more.stderr, /step \d+\/2\b/);
      const log = readFileSync(join(ws.root, "out-len", "training_log.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => parseJson(l) as Record<string, number>);
      const again = ws.run("train", config("len", {}), "--resume", "--max-steps", "3");
      assert.equal(again.status, 0, again.stderr);
      assert.match(
        again.stdout,
        /nothing to train: the run in out-len is already at step 3 of 3 \(raise --max-steps to train further\)/,
      );
      assert.match(
        again.stdout,
        new RegExp(`^train_loss: ${log[log.length - 1]!["loss"]!.toFixed(4)} \\(last logged\\)`, "m"),
      );
    },
  );

  it("a negative --max-steps is refused by its own check, not as an ambiguous argument", () => {
    const r = ws.run("train", config("neg", {}), "--max-steps", "-5");
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^error: --max-steps must be ≥ 1, got -5$/m);
  });

  it("a JSON config error names the line and column", () => {
    writeFileSync(join(ws.root, "broken.json"), '{\n  "model_name_or_path": "model",\n  "dataset": "train.json",\n}\n');
    const r = ws.run("train", "broken.json");
    assert.equal(r.status, 1);
    const where =
      /^error: broken\.json is not valid JSON: line 4, column 1: expected a double-quoted property name \(a trailing comma\?\), found "}"$/m;
    assert.match(r.stderr, where);
  });
});

describe("peft merge: the wrong base model", () => {
  it(
    "refuses another layer count or other shapes, warns for same-shaped other weights, naming " +
      "the adapter's base model",
    () => {
      const modelDir = join(ws.root, "model");
      const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, unknown>;
      const variant = (name: string, fields: Record<string, unknown>, seed: number) => {
        T.manualSeed(seed);
        AutoModelForCausalLM.fromConfig({ ...config, ...fields }).savePretrained(join(ws.root, name));
      };
      variant("model-3-layers", { num_hidden_layers: 3 }, 7);
      variant("model-wider", { hidden_size: 48, intermediate_size: 96 }, 7);
      variant("model-other-weights", {}, 99);
      cpSync(modelDir, join(ws.root, "model-copy"), { recursive: true });
      T.manualSeed(3);
      const lora = LoraConfig({
        task_type: "CAUSAL_LM",
        r: 2,
        target_modules: ["q_proj"],
        init_lora_weights: "gaussian",
      });
      getPeftModel(AutoModelForCausalLM.fromPretrained(modelDir), lora).savePretrained(join(ws.root, "adapter-merge"));
      const merge = (model: string) =>
        ws.run("merge", "--model", model, "--adapter", "adapter-merge", "--out", `merged-${model}`);
      const hint = new RegExp(
        `^hint: pass --model ${modelDir} \\(base_model_name_or_path in adapter_config\\.json\\)$`,
        "m",
      );

      const layers = merge("model-3-layers");
      assert.equal(layers.status, 1);
      assert.match(
        layers.stderr,
        /^error: the adapter adapter-merge has weights for 2 layers but --model model-3-layers has 3: it was trained on another/m,
      );
      assert.match(layers.stderr, hint);
      const wider = merge("model-wider");
      assert.equal(wider.status, 1);
      assert.match(
        wider.stderr,
        /^error: the adapter does not fit --model model-wider: .*size mismatch .*\[2, 32\] but the model expects \[2, 48\]/m,
      );
      assert.match(wider.stderr, hint);
      const other = merge("model-other-weights");
      assert.equal(other.status, 0, other.stderr);
      assert.match(
        other.stderr,
        /^warning: --model model-other-weights is not the adapter's base model ".*\/model" .*though the shapes fit/m,
      );
      for (const same of ["model", "model-copy"]) {
        const r = merge(same);
        assert.equal(r.status, 0, r.stderr);
        assert.doesNotMatch(
          r.stderr,
          /warning/,
          `${same}: the adapter's own base model (or a copy) merges without a word`,
        );
      }
    },
  );
});
