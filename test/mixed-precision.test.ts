/**
 * Mixed precision: products under autocast against a float64 reference with the error bound of the format, and
 * Trainer runs with bf16/fp16 against the float32 run of the same model and data.
 *
 * The bound. Rounding to a format with unit roundoff u (bfloat16: 8 significant bits, u = 2^-8; float16: 11, u =
 * 2^-11, for values in its normal range) gives ã = a(1 + δ), |δ| ≤ u, so |ãb̃ − ab| ≤ (2u + u²)|a||b|; float32
 * accumulation of k products adds at most γ_k·Σ|ã||b̃| with γ_k = k·2^-24/(1 − k·2^-24). Per output element:
 * |ŷ − y| ≤ (2u + u²)·Σ|a||b| + γ_k·(1 + u)²·Σ|a||b|.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import { LoraConfig, TaskType, getPeftModel } from "../src/peft/index.js";
import { Dataset, DataCollatorForSeq2Seq, Trainer, TrainingArguments } from "../src/train/index.js";
import { randValues } from "./helpers.js";
import { llama, toyIds } from "./tiny-models.js";

const UNIT = { bfloat16: 2 ** -8, float16: 2 ** -11 } as const;

/** Checks every element of got = x·w (x [m, k], w [k, n], flat row-major) against the bound; returns the largest |error|. */
function checkProduct(
  got: ArrayLike<number>,
  x: number[],
  w: number[],
  m: number,
  k: number,
  n: number,
  u: number,
): number {
  const gamma = (k * 2 ** -24) / (1 - k * 2 ** -24);
  let worst = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let exact = 0,
        abs = 0;
      for (let p = 0; p < k; p++) {
        exact += x[i * k + p]! * w[p * n + j]!;
        abs += Math.abs(x[i * k + p]! * w[p * n + j]!);
      }
      const bound = (2 * u + u * u) * abs + gamma * (1 + u) ** 2 * abs;
      const err = Math.abs(got[i * n + j]! - exact);
      assert.ok(err <= bound, `element (${i}, ${j}): |${got[i * n + j]} − ${exact}| = ${err} > bound ${bound}`);
      worst = Math.max(worst, err / abs);
    }
  }
  return worst;
}

for (const dtype of ["bfloat16", "float16"] as const) {
  test(`autocast ${dtype}: forward and backward products stay within the format's rounding bound`, () => {
    const m = 6,
      k = 40,
      n = 9,
      u = UNIT[dtype];
    const xs = randValues(m * k, 1),
      ws = randValues(k * n, 2),
      bs = randValues(n, 3);
    const x = T.tensor(xs, [m, k]).requiresGrad_(),
      w = T.parameter(T.tensor(ws, [k, n]));
    const y = T.autocast(dtype, () => T.matmul(x, w));
    const worst = checkProduct(y.dataSync(), xs, ws, m, k, n, u);
    // The inputs really were rounded: the error is far above what float32 alone makes (k·2^-24 ≈ 2.4e-6).
    assert.ok(worst > 20 * k * 2 ** -24, `largest relative error ${worst} looks like a float32 product`);
    // Backward: dy = 1, so dX = 1·Wᵀ summed and dW = Xᵀ·1 summed, both from rounded operands.
    T.sum(y).backward();
    checkProduct(x.grad!.dataSync(), new Array(m * n).fill(1), transpose(ws, k, n), m, n, k, u);
    checkProduct(w.grad!.dataSync(), transpose(xs, m, k), new Array(m * n).fill(1), k, m, n, u);
    // linear (x·Wᵀ + b): the bias is added in float32 after the product.
    const lin = T.autocast(dtype, () =>
      T.linear(T.tensor(xs, [m, k]), T.tensor(transpose(ws, k, n), [n, k]), T.tensor(bs, [n])),
    );
    const noBias = Array.from(lin.dataSync(), (v, i) => v - bs[i % n]!);
    checkProduct(noBias, xs, ws, m, k, n, u + 2 ** -23);
    // Outside autocast the same product is float32.
    assert.ok(checkProduct(T.matmul(x, w).dataSync(), xs, ws, m, k, n, 0) <= 2 * k * 2 ** -24);
  });
}

function transpose(v: number[], rows: number, cols: number): number[] {
  return Array.from({ length: rows * cols }, (_, i) => v[(i % rows) * cols + Math.floor(i / rows)]!);
}

/** Losses of 12 Trainer steps of LoRA on the tiny LLaMA with the given precision flags. */
function lossCurve(flags: { bf16?: boolean; fp16?: boolean }): number[] {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-amp-"));
  try {
    const peft = getPeftModel(
      llama(21),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 8,
        lora_alpha: 16,
        target_modules: "all-linear",
        init_lora_weights: "gaussian",
      }),
    );
    const ids = Array.from(toyIds().dataSync());
    const rows = Array.from({ length: 8 }, (_, i) => ({
      input_ids: ids.slice(i * 16, i * 16 + 16),
      labels: ids.slice(i * 16, i * 16 + 16),
    }));
    const args = TrainingArguments({
      output_dir: dir,
      max_steps: 12,
      per_device_train_batch_size: 4,
      learning_rate: 2e-2,
      logging_steps: 1,
      save_strategy: "no",
      lr_scheduler_type: "constant",
      ...flags,
    });
    const trainer = new Trainer({
      model: peft,
      args,
      trainDataset: new Dataset(rows),
      dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
    });
    trainer.train();
    return trainer.state.log_history.map((e) => e["loss"] as number);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("Trainer bf16/fp16: the loss curve stays within 3% of float32's, and is not float32's", () => {
  const full = lossCurve({});
  assert.ok(full[11]! < full[0]! - 0.1, `float32 loss ${full[0]} → ${full[11]}`);
  for (const flags of [{ bf16: true }, { fp16: true }]) {
    const mixed = lossCurve(flags);
    assert.equal(mixed.length, full.length);
    mixed.forEach((l, i) => {
      assert.ok(
        Math.abs(l - full[i]!) <= 0.03 * full[i]!,
        `${JSON.stringify(flags)} step ${i + 1}: ${l} vs float32 ${full[i]}`,
      );
    });
    assert.ok(
      mixed.some((l, i) => l !== full[i]),
      `${JSON.stringify(flags)} gave float32's exact losses`,
    );
  }
});

test("bf16 and fp16 together are refused", () => {
  assert.throws(() => TrainingArguments({ output_dir: "x", bf16: true, fp16: true }), /choose one/);
});
