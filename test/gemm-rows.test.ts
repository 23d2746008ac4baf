/**
 * Few-row products (decoding: one row per sequence) give each row the same bits whatever the other rows: a batch of
 * 8 sequences decodes exactly as each sequence alone. Checked on both backends, for weights stored as they are
 * (GPT-2's Conv1D) and transposed (Linear), with a bias, at shapes that reach every block and tail of the native
 * backend's few-row kernels; the values themselves against float64 dot products. Weights in bfloat16/float16 (read
 * in place and widened as they are loaded) give exactly the float32 product of the widened weight.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { backend, setBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import {
  contiguous,
  linear,
  matmul,
  narrow,
  reshape,
  tensor,
  tidy,
  toDtype,
  transpose,
  type Tensor,
} from "../src/tensor/index.js";
import { nativeOrReason, rng } from "./helpers.js";

/** [rows, cols] of seeded values in (-1, 1). */
function random(rows: number, cols: number, seed: number): Tensor {
  const next = rng(seed);
  return tensor(
    Float32Array.from({ length: rows * cols }, () => 2 * next() - 1),
    [rows, cols],
  );
}

const SHAPES: { k: number; n: number; transposed: boolean }[] = [
  { k: 768, n: 3072, transposed: false }, // B of 9 MiB, split over threads; rows of B 12 KiB apart (shorter passes)
  { k: 77, n: 1001, transposed: false }, // a short last pass, and columns after the last whole vectors
  { k: 5, n: 40000, transposed: false },
  { k: 768, n: 1001, transposed: true },
  { k: 61, n: 33, transposed: true },
];

const WEIGHT_DTYPES = ["float32", "bfloat16", "float16"] as const;

function checkRows(name: string, weights: "float32" | "bfloat16" | "float16"): void {
  for (const { k, n, transposed } of SHAPES) {
    tidy(() => {
      const w = toDtype(transposed ? random(n, k, 1) : random(k, n, 1), weights);
      const bias = reshape(random(1, n, 2), [n]);
      const x = random(8, k, 3);
      const productWith = (rows: Tensor, weight: Tensor) =>
        transposed ? linear(rows, weight, bias) : matmul(rows, weight);
      const product = (rows: Tensor) => productWith(rows, w);
      const batch = product(x).dataSync();
      const shape = `${name} ${weights} k=${k} n=${n}${transposed ? " tB" : ""}`;
      if (weights !== "float32")
        assert.deepEqual(batch, productWith(x, toDtype(w, "float32")).dataSync(), `${shape}: widened weight differs`);
      // Alone, two together (B transposed: six rows of B at a time), in a block of 4 with a row left over (5 rows),
      // and read through a transposed view of x.
      const two = product(narrow(x, 0, 2, 2)).dataSync();
      const five = product(narrow(x, 0, 0, 5)).dataSync();
      const viaView = product(transpose(contiguous(transpose(x, 0, 1)), 0, 1)).dataSync();
      for (let r = 0; r < 8; r++) {
        const alone = product(narrow(x, 0, r, 1)).dataSync();
        const row = batch.subarray(r * n, (r + 1) * n);
        assert.deepEqual(row, alone, `${shape}: row ${r} alone differs`);
        if (r < 5) assert.deepEqual(five.subarray(r * n, (r + 1) * n), alone, `${shape}: row ${r} of 5 differs`);
        if (r === 2 || r === 3)
          assert.deepEqual(two.subarray((r - 2) * n, (r - 1) * n), alone, `${shape}: row ${r} of 2 differs`);
        assert.deepEqual(viaView.subarray(r * n, (r + 1) * n), alone, `${shape}: row ${r} of x transposed differs`);
      }
      // Spot-check values against float64 sums.
      const xs = x.dataSync(),
        ws = w.dataSync(),
        bs = bias.dataSync();
      for (const [r, j] of [
        [0, 0],
        [7, n - 1],
        [3, n >> 1],
      ] as const) {
        let sum = transposed ? bs[j]! : 0;
        for (let p = 0; p < k; p++) sum += xs[r * k + p]! * ws[transposed ? j * k + p : p * n + j]!;
        assert.ok(Math.abs(batch[r * n + j]! - sum) <= 1e-4 * (1 + Math.abs(sum)), `${shape}: value (${r}, ${j})`);
      }
    });
  }
}

test("few-row products: each row's result does not depend on the other rows (native backend)", (t) => {
  const { native, loadError } = nativeOrReason();
  if (!native) return t.skip(`native addon not built: ${loadError}`);
  const previous = backend();
  setBackend(native);
  try {
    for (const weights of WEIGHT_DTYPES) checkRows("native", weights);
  } finally {
    setBackend(previous);
  }
});

test("few-row products: each row's result does not depend on the other rows (js backend)", () => {
  const previous = backend();
  setBackend(new JsBackend());
  try {
    for (const weights of WEIGHT_DTYPES) checkRows("js", weights);
  } finally {
    setBackend(previous);
  }
});
