/**
 * What the fast paths promise beyond equal values: frozen weights cost no weight-gradient product, a frozen embedding
 * table no scatter, dropout keeps no mask, the pieces of a split meet in one gradient buffer, KV caches grow in place
 * without disturbing views handed out earlier, and the profiler sees every kernel.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  backend,
  setBackend,
  profiledBackend,
  profileEntries,
  profileReset,
  setProfiling,
  profileReport,
} from "../src/backend/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { getPeftModel, LoraConfig, TaskType } from "../src/peft/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import * as T from "../src/tensor/index.js";

/** Runs fn with every kernel call recorded; returns the profile entries. */
function profiled(fn: () => void): { name: string; calls: number; ms: number }[] {
  const before = backend();
  setBackend(profiledBackend(before));
  setProfiling(true);
  profileReset();
  try {
    fn();
    return profileEntries();
  } finally {
    setProfiling(false);
    setBackend(before);
  }
}

describe("fast-path invariants", () => {
  it("a LoRA step computes weight gradients for the LoRA factors only, and no embedding-table gradient", () => {
    T.manualSeed(3);
    const base = AutoModelForCausalLM.fromConfig({
      model_type: "gpt2",
      vocab_size: 50,
      n_embd: 16,
      n_layer: 2,
      n_head: 2,
      n_positions: 32,
    });
    const model = getPeftModel(
      base,
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        lora_alpha: 8,
        target_modules: ["c_attn"],
        fan_in_fan_out: true,
      }),
    );
    model.train();
    const ids = T.tensor(
      Int32Array.from({ length: 10 }, (_, i) => (i * 7) % 50),
      [2, 5],
    );
    const entries = profiled(() =>
      T.tidy(() => (model.forward({ inputIds: ids, labels: ids }) as ModelOutput).loss!.backward()),
    );
    const gemms = entries.filter((e) => e.name.startsWith("gemm "));
    // Weight gradients are the products over tokens (k = 10) with A transposed; only LoRA's (one side of rank 4) may exist.
    const weightGrads = gemms
      .map((e) => /^gemm (\d+)x(\d+)x(\d+) tA/.exec(e.name))
      .filter((m): m is RegExpExecArray => m !== null && m[2] === "10");
    assert.ok(
      weightGrads.length > 0,
      `expected the LoRA factors' weight gradients among ${gemms.map((e) => e.name).join(", ")}`,
    );
    for (const m of weightGrads)
      assert.ok(m[1] === "4" || m[3] === "4", `a frozen weight got a weight-gradient product: ${m[0]}`);
    assert.ok(!entries.some((e) => e.name === "scatterAdd"), "the frozen embedding table must not get a gradient");
    for (const [name, p] of model.namedParameters()) {
      if (name.includes("lora_")) assert.ok(p.grad, `${name} has no gradient`);
      else assert.equal(p.grad, null, `${name} is frozen but has a gradient`);
    }
    assert.match(profileReport({ wallMs: 1 }), /kernel \(self time\)[\s\S]*all kernels/);
  });

  it("dropout draws its mask from the stream once and regenerates it in the backward pass", () => {
    const input = T.parameter(
      T.tensor(
        Array.from({ length: 64 }, (_, i) => i / 10 - 3),
        [8, 8],
      ),
    );
    const gen = new T.Generator(9);
    const entries = profiled(() => T.tidy(() => T.sum(T.dropout(input, 0.25, true, gen)).backward()));
    assert.deepEqual(
      entries.filter((e) => e.name === "dropout").map((e) => e.calls),
      [2],
    );
    assert.ok(!entries.some((e) => e.name === "random"), "no mask tensor is drawn");
    assert.equal(gen.getState().counter, 64);
    // Kept elements get 1/(1 − p), dropped ones 0, and the gradient is the same mask.
    const g = Array.from(input.grad!.dataSync());
    assert.ok(g.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6));
    input.dispose();
  });

  it("the three pieces of a split get their gradients in one buffer (no scatters, no adds of full-size zeros)", () => {
    const x = T.parameter(
      T.tensor(
        Array.from({ length: 24 }, (_, i) => i),
        [2, 12],
      ),
    );
    const entries = profiled(() =>
      T.tidy(() => {
        const [a, b, c] = T.split(x, [4, 4, 4], 1);
        T.sum(T.add(T.mul(a!, b!), T.mul(c!, 3))).backward();
      }),
    );
    assert.ok(!entries.some((e) => e.name === "scatterAdd"));
    assert.equal(entries.find((e) => e.name === "assign")?.calls, 3);
    const v = Array.from(x.grad!.dataSync());
    assert.deepEqual(v.slice(0, 12), [4, 5, 6, 7, 0, 1, 2, 3, 3, 3, 3, 3]);
    x.dispose();
  });

  it("appendAlong grows a cache in place, keeps earlier views intact, and copies for a second continuation", () => {
    T.noGrad(() => {
      const first = T.tensor([1, 2, 3, 4], [1, 1, 2, 2]);
      const a = T.appendAlong(first, T.tensor([5, 6], [1, 1, 1, 2]), 2);
      const b = T.appendAlong(a, T.tensor([7, 8], [1, 1, 1, 2]), 2);
      assert.equal(b.bufferRef, a.bufferRef, "the second append reuses the buffer");
      assert.deepEqual(Array.from(a.dataSync()), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3, 4, 5, 6, 7, 8]);
      // Another continuation of `a` must not overwrite b's last position.
      const c = T.appendAlong(a, T.tensor([9, 9], [1, 1, 1, 2]), 2);
      assert.notEqual(c.bufferRef, a.bufferRef);
      assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.deepEqual(Array.from(c.dataSync()), [1, 2, 3, 4, 5, 6, 9, 9]);
      for (const t of [first, a, b, c]) t.dispose();
    });
  });
});
