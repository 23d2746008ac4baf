/**
 * Quantised Linear layers (nn/layers/quantized.ts) and their kernels: the forward and the input gradient against
 * "dequantise, then a float64 product of the same float32 values" (so only the kernels' float32 rounding differs),
 * on both backends and across several panels; LLM.int8's product bit for bit against the golden file.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import { panelRows, quantize4bit, quantizeInt8Weight, type QuantizedMatrix } from "../src/backend/quant.js";
import { backend, setBackend } from "../src/backend/index.js";
import { Linear4bit, Linear8bitLt } from "../src/nn/index.js";
import { tensor, sum, mul } from "../src/tensor/index.js";
import { assertClose, mm, nativeOrReason, randValues, transposed } from "./helpers.js";
import { floatInput, readQuantFixture } from "./quant-fixtures.js";

const { native } = nativeOrReason(); // null: the native cases skip themselves
const backends: [string, Backend | null][] = [
  ["js", new JsBackend()],
  ["native", native],
];

/** Run fn with backend b active. */
function withBackend<T>(b: Backend, fn: () => T): T {
  const before = backend();
  setBackend(b);
  try {
    return fn();
  } finally {
    setBackend(before);
  }
}

/** |a − ref| ≤ 1e-5·(|ref| + rowScale): float32 accumulation error of a k-term dot product stays far below that. */
function assertMatchesProduct(actual: ArrayLike<number>, expected: Float64Array, what: string): void {
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  assertClose(actual, expected, 1e-5 * scale, 1e-5, what);
}

const n = 600,
  k = 130; // k is no multiple of 64: blocks straddle rows; n > panelRows(k): several panels
const W = Float32Array.from(randValues(n * k, 7, 0, 0.2));
const X = Float32Array.from(randValues(5 * k, 8, 0, 1));
const DY = Float32Array.from(randValues(5 * n, 9, 0, 1));

describe("quantised products (Backend.quantMatmul)", () => {
  assert.ok(n > panelRows(k));
  const matrices: [string, QuantizedMatrix, Linear4bit | Linear8bitLt][] = (() => {
    const q = quantize4bit(W, "nf4", { doubleQuant: true });
    const l4 = new Linear4bit(k, n, q);
    const l8 = new Linear8bitLt(k, n, quantizeInt8Weight(W, n, k));
    return [
      ["nf4+dq", l4.matrix, l4],
      ["fp4", new Linear4bit(k, n, quantize4bit(W, "fp4")).matrix, l4],
      ["int8", l8.matrix, l8],
    ];
  })();
  for (const [bname, b] of backends) {
    for (const [label, w, layer] of matrices) {
      it(`${bname}, ${label}: x·Wᵀ and dy·W equal the products with the dequantised weight`, (t) => {
        if (!b) return t.skip("native addon not built");
        const deq = new Float32Array(n * k);
        const l = w.format === "4bit" ? new Linear4bit(k, n, w.q) : layer;
        deq.set(l.dequantizeWeight().dataSync());
        const out = new CpuStorage("float32", new Float32Array(5 * n)),
          dx = new CpuStorage("float32", new Float32Array(5 * k));
        b.quantMatmul(new CpuStorage("float32", X), 5, w, false, out);
        assertMatchesProduct(out.data, mm(X, transposed(deq, n, k), 5, k, n), "x·Wᵀ");
        b.quantMatmul(new CpuStorage("float32", DY), 5, w, true, dx);
        assertMatchesProduct(dx.data, mm(DY, deq, 5, n, k), "dy·W");
      });
    }
  }
});

describe("4-bit quantisation kernels (Backend.quantize4bit)", () => {
  for (const [bname, b] of backends) {
    for (const name of ["nf4_small", "fp4_small", "nf4_dq"]) {
      it(`${bname}: ${name} packs the golden bytes and absmax (pivot ties included)`, (t) => {
        if (!b) return t.skip("native addon not built");
        const g = readQuantFixture(`${name}.safetensors`);
        const q = quantize4bit(floatInput(g.get("input")!), name.startsWith("nf4") ? "nf4" : "fp4", {
          kernel: (...a) => b.quantize4bit(...a),
        });
        assert.deepEqual(Array.from(q.packed), Array.from(g.get("packed")!.data as Uint8Array));
        assert.deepEqual(Array.from(q.absmax!), Array.from(g.get("absmax_fp32")!.data as Float32Array));
      });
    }
  }
});

describe("Linear4bit / Linear8bitLt modules", () => {
  it("Linear4bit.fromFloat: forward with bias, input and bias gradients, no weight parameter", () => {
    const w = tensor(W.subarray(0, 40 * k), [40, k]);
    const bias = tensor(randValues(40, 3), [40]);
    const layer = Linear4bit.fromFloat(w, bias, { quantType: "nf4", doubleQuant: false });
    assert.deepEqual(
      layer.namedParameters().map(([name]) => name),
      ["bias"],
    );
    const x = tensor(X.subarray(0, 3 * k), [3, 1, k]);
    x.requiresGrad = true;
    const y = layer.forward(x);
    assert.deepEqual(y.shape, [3, 1, 40]);
    const deq = layer.dequantizeWeight().dataSync();
    const ref = mm(X.subarray(0, 3 * k), transposed(deq, 40, k), 3, k, 40).map((v, i) => v + bias.dataSync()[i % 40]!);
    assertMatchesProduct(y.dataSync(), ref, "y");
    const g = tensor(randValues(120, 4), [3, 1, 40]);
    sum(mul(y, g)).backward();
    assertMatchesProduct(x.grad!.dataSync(), mm(g.dataSync(), deq, 3, 40, k), "dx");
    const gb = g.dataSync();
    assertClose(
      layer.bias!.grad!.dataSync(),
      Array.from({ length: 40 }, (_, j) => gb[j]! + gb[40 + j]! + gb[80 + j]!),
      1e-6,
      1e-6,
      "dbias",
    );
  });

  it("setWeight re-quantises: quantise(dequantise(W)) gives the same codes", () => {
    const layer = Linear4bit.fromFloat(tensor(W.subarray(0, 64 * k), [64, k]), null, {
      quantType: "nf4",
      doubleQuant: true,
    });
    const before = Array.from(layer.quantized.packed);
    layer.setWeight(layer.dequantizeWeight());
    assert.deepEqual(Array.from(layer.quantized.packed), before);
  });

  for (const [bname, b] of backends) {
    it(`${bname}: Linear8bitLt's LLM.int8 product equals the golden outputs bit for bit (threshold 0 and 6)`, (t) => {
      if (!b) return t.skip("native addon not built");
      const g = readQuantFixture("int8.safetensors");
      const w = g.get("weight")!,
        [rows, cols] = w.shape as [number, number];
      const x = tensor(g.get("x")!.data as Float32Array, g.get("x")!.shape);
      const bias = tensor(g.get("bias")!.data as Float32Array, [rows]);
      for (const threshold of [0, 6]) {
        const layer = Linear8bitLt.fromFloat(tensor(w.data as Float32Array, [rows, cols]), bias, threshold);
        const y: Float32Array | Int32Array = withBackend(b, () => layer.forward(x).dataSync());
        assert.deepEqual(
          Array.from(y),
          Array.from(g.get(`y_threshold${threshold}`)!.data as Float32Array),
          `threshold ${threshold}`,
        );
      }
    });
  }
});
