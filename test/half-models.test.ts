/**
 * Models whose frozen weights stay in bfloat16/float16 (fromPretrained's dtype, HF's torch_dtype).
 *
 * References: widening a half value to float32 is exact, so a half model must compute what a float32 model loaded
 * from the same half file computes (up to the order sgemm sums in: the half product runs panel by panel); weights
 * must keep their exact bits through load and save; LoRA on a half base trains float32 adapters.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { LoraConfig, TaskType, getPeftModel } from "../src/peft/index.js";
import { AdamW } from "../src/optim/index.js";
import { ConfigError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { assertClose } from "./helpers.js";
import { gpt2, llama, logits, toyIds, trainSteps } from "./tiny-models.js";

/** A temporary folder for fn, removed afterwards. */
function inTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-half-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const [family, make] of [
  ["gpt2", gpt2],
  ["llama", llama],
] as const) {
  for (const dtype of ["bfloat16", "float16"] as const) {
    test(
      `${family} ${dtype}: weights stay ${dtype} in memory, compute like float32 on the same ` +
        `values, save the same bytes`,
      () =>
        inTmp((dir) => {
          make().savePretrained(dir, { dtype });
          const half = AutoModelForCausalLM.fromPretrained(dir, { dtype: "auto" });
          assert.equal(half.dtype, dtype);
          for (const [name, p] of half.namedParameters()) {
            assert.equal(p.dtype, dtype, `${name} is ${p.dtype}`);
            assert.equal(p.requiresGrad, false, `${name} is frozen`);
          }
          const wide = AutoModelForCausalLM.fromPretrained(dir);
          assert.equal(wide.dtype, "float32");
          assert.equal(half.memoryFootprint() * 2, wide.memoryFootprint());
          // Same values, same products up to sgemm's summation order.
          assertClose(logits(half), logits(wide), 1e-5, 1e-5, "logits");
          // Saved again: the same tensors, bit for bit, and the same dtype in config.json.
          const again = join(dir, "again");
          half.savePretrained(again);
          const a = readSafetensors(join(dir, "model.safetensors")).tensors,
            b = readSafetensors(join(again, "model.safetensors")).tensors;
          assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
          for (const [k, t] of a) assert.deepEqual(Buffer.from(b.get(k)!.data.buffer), Buffer.from(t.data.buffer), k);
          assert.equal(JSON.parse(readFileSync(join(again, "config.json"), "utf8")).torch_dtype, dtype);
        }),
    );
  }
}

test("dtype converts a float32 checkpoint: bfloat16 rounds each weight to nearest even", () =>
  inTmp((dir) => {
    const model = llama();
    model.savePretrained(dir);
    const half = AutoModelForCausalLM.fromPretrained(dir, { dtype: "bfloat16" });
    const w = model.stateDict().get("model.layers.0.mlp.up_proj.weight")!;
    const h = half.stateDict().get("model.layers.0.mlp.up_proj.weight")!;
    assert.equal(h.dtype, "bfloat16");
    assert.deepEqual(Array.from(h.rawSync()), Array.from(T.toDtype(w, "bfloat16").rawSync()));
    // "auto" on a float32 checkpoint keeps float32.
    assert.equal(AutoModelForCausalLM.fromPretrained(dir, { dtype: "auto" }).dtype, "float32");
    // Saved as float32 when asked: the widened values.
    half.savePretrained(join(dir, "f32"), { dtype: "float32" });
    const back = readSafetensors(join(dir, "f32", "model.safetensors")).tensors.get(
      "model.layers.0.mlp.up_proj.weight",
    )!;
    assert.equal(back.dtype, "F32");
    assert.deepEqual(Array.from(back.data as Float32Array), Array.from(h.dataSync()));
  }));

test("a bad dtype is a ConfigError naming the choices", () =>
  inTmp((dir) => {
    gpt2().savePretrained(dir);
    assert.throws(
      () => AutoModelForCausalLM.fromPretrained(dir, { dtype: "half" as never }),
      (err: unknown) => err instanceof ConfigError && /auto, float32, bfloat16, float16/.test(err.hint ?? ""),
    );
  }));

test("LoRA on a bfloat16 base: adapters and optimizer state are float32, and the loss falls", () =>
  inTmp((dir) => {
    llama().savePretrained(dir, { dtype: "bfloat16" });
    const base = AutoModelForCausalLM.fromPretrained(dir, { dtype: "auto" });
    const peft = getPeftModel(
      base,
      LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] }),
    );
    const trainable = peft.namedParameters().filter(([, p]) => p.requiresGrad);
    assert.ok(trainable.length > 0);
    for (const [name, p] of trainable) assert.equal(p.dtype, "float32", name);
    peft.train();
    const opt = new AdamW(
      trainable.map(([, p]) => p),
      { lr: 1e-2 },
    );
    const losses = trainSteps(peft, opt, toyIds(), 8);
    assert.ok(losses[7]! < losses[0]! - 0.05, `loss ${losses[0]} → ${losses[7]}`);
    for (const [, p] of trainable) assert.equal(p.grad === null || p.grad.dtype === "float32", true);
  }));

test("fromConfig builds a model directly in bfloat16 with transformers' init, without a float32 copy", () => {
  const config = {
    model_type: "llama",
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    initializer_range: 0.02,
  };
  T.resetPeakBytes();
  const before = T.memory().liveBytes;
  T.manualSeed(8);
  const half = AutoModelForCausalLM.fromConfig(config, { dtype: "bfloat16" });
  const peak = T.memory().peakBytes - before;
  assert.equal(half.dtype, "bfloat16");
  for (const [name, p] of half.stateDict()) {
    assert.equal(p.dtype, "bfloat16", name);
    const v = Array.from(p.dataSync());
    if (name.endsWith("norm.weight"))
      assert.ok(
        v.every((x) => x === 1),
        `${name} starts at 1`,
      );
    else {
      // N(0, 0.02²) draws: the sample mean and standard deviation of ≥ 1024 values are within a few standard errors.
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      assert.ok(Math.abs(mean) < 0.004 && Math.abs(std - 0.02) < 0.003, `${name}: mean ${mean}, std ${std}`);
    }
  }
  // Reproducible: the same seed gives the same bits.
  T.manualSeed(8);
  const again = AutoModelForCausalLM.fromConfig(config, { dtype: "bfloat16" });
  for (const [name, p] of half.stateDict()) assert.deepEqual(again.stateDict().get(name)!.rawSync(), p.rawSync(), name);
  // Never the whole model in float32: the peak stays below the half model plus one float32 module's scratch.
  const footprint = half.memoryFootprint();
  assert.ok(peak < footprint + 2 * 64 * 32 * 4 + 1024, `peak ${peak} B for a ${footprint} B model`);
  assert.throws(() => AutoModelForCausalLM.fromConfig(config, { dtype: "int8" as never }), ConfigError);
});
