/**
 * The 4-bit dequantise-and-multiply kernel (Backend.quantMatmul) against plain references: dequantise with the exact
 * reference code path (quant.ts' dequantize4bit), round to the compute dtype with half.ts' helpers where one is set,
 * then multiply in float64. NF4 and FP4, with and without double quantisation, shapes that are no multiples of the
 * block or panel sizes, both transposes, and the native kernel's thread counts (bit-identical). A few rows (decoding)
 * on the native backend give each row the same bits whatever the other rows.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/backend/backend.js";
import { fromBfloat16Bits, fromFloat16Bits, toBfloat16Bits, toFloat16Bits } from "../src/backend/half.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { setAdaptiveThreads, setThreads, threads } from "../src/backend/native/native-backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import {
  dequantize4bit,
  quantize4bit,
  type ComputeDType,
  type QuantizedMatrix,
  type QuantType4,
} from "../src/backend/quant.js";
import { mm, nativeOrReason, randValues, transposed } from "./helpers.js";

const { native } = nativeOrReason(); // null: the native cases skip themselves
const backends: [string, Backend | null][] = [
  ["js", new JsBackend()],
  ["native", native],
];

/** Values rounded to the compute dtype, as numbers (float32 values stay as they are). */
function rounded(values: ArrayLike<number>, compute: ComputeDType): number[] {
  const round =
    compute === "bfloat16"
      ? (v: number) => fromBfloat16Bits(toBfloat16Bits(v))
      : compute === "float16"
        ? (v: number) => fromFloat16Bits(toFloat16Bits(v))
        : (v: number) => v;
  return Array.from(values, round);
}

/** out = x·Wᵀ (or x·W) in float64 and the float32 accumulation bound depth·2⁻²³·(|x|·|W|) of each element. */
function reference(x: number[], rows: number, deq: number[], n: number, k: number, transpose: boolean) {
  const b = transpose ? deq : Array.from(transposed(deq, n, k));
  const depth = transpose ? n : k,
    cols = transpose ? k : n;
  const exact = mm(x, b, rows, depth, cols);
  const abs = mm(
    x.map(Math.abs),
    b.map((v) => Math.abs(v)),
    rows,
    depth,
    cols,
  );
  return { exact, bound: abs.map((v) => (depth + 2) * 2 ** -23 * v + 1e-30) };
}

/** The kernel's output for x [rows, depth] (a fresh float32 output). */
function run(b: Backend, x: ArrayLike<number>, rows: number, w: QuantizedMatrix, transpose: boolean): Float32Array {
  const out = new CpuStorage("float32", new Float32Array(rows * (transpose ? w.k : w.n)));
  b.quantMatmul(new CpuStorage("float32", Float32Array.from(x)), rows, w, transpose, out);
  return out.data as Float32Array;
}

function assertWithin(actual: Float32Array, ref: { exact: Float64Array; bound: Float64Array }, what: string): void {
  assert.equal(actual.length, ref.exact.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i]! - ref.exact[i]!);
    if (!(diff <= ref.bound[i]!)) assert.fail(`${what}[${i}]: ${actual[i]} vs ${ref.exact[i]} (bound ${ref.bound[i]})`);
  }
}

/** Identity rows: x = I (size × size). */
function identity(size: number): Float32Array {
  const x = new Float32Array(size * size);
  for (let i = 0; i < size; i++) x[i * size + i] = 1;
  return x;
}

// [n, k]: k not a multiple of 64 (blocks straddle rows, column panels cut blocks), n not a multiple of 16 (a short
// last row panel), a single row, and a shape wide enough for several panels of each kind.
const SHAPES: [number, number][] = [
  [37, 130],
  [600, 200],
  [1, 70],
  [257, 448],
];
const TYPES: [QuantType4, boolean][] = [
  ["nf4", false],
  ["nf4", true],
  ["fp4", false],
  ["fp4", true],
];

function matrix(n: number, k: number, type: QuantType4, dq: boolean, compute?: ComputeDType): QuantizedMatrix {
  const q = quantize4bit(Float32Array.from(randValues(n * k, n + k, 0, 0.3)), type, { doubleQuant: dq });
  return { format: "4bit", n, k, q, ...(compute ? { compute } : {}) };
}

describe("4-bit quantised products (Backend.quantMatmul)", () => {
  for (const [bname, b] of backends) {
    for (const [type, dq] of TYPES) {
      it(`${bname}, ${type}${dq ? " + double quant" : ""}: x·Wᵀ and x·W within float32 accumulation error`, (t) => {
        if (!b) return t.skip("native addon not built");
        for (const [n, k] of SHAPES) {
          const w = matrix(n, k, type, dq);
          const deq = Array.from(dequantize4bit(w.format === "4bit" ? w.q : assert.fail()));
          for (const rows of [1, 5, 33]) {
            const x = randValues(rows * k, rows, 0, 1),
              g = randValues(rows * n, rows + 1, 0, 1);
            assertWithin(
              run(b, x, rows, w, false),
              reference(x, rows, deq, n, k, false),
              `${n}×${k}, ${rows} rows, x·Wᵀ`,
            );
            assertWithin(run(b, g, rows, w, true), reference(g, rows, deq, n, k, true), `${n}×${k}, ${rows} rows, g·W`);
          }
        }
      });
    }

    for (const compute of ["float32", "bfloat16", "float16"] as const) {
      it(`${bname}: identity inputs give the dequantised weight bit for bit (compute ${compute})`, (t) => {
        if (!b) return t.skip("native addon not built");
        for (const [type, dq] of TYPES) {
          for (const [n, k] of SHAPES) {
            const w = matrix(n, k, type, dq, compute);
            const deq = Float32Array.from(rounded(dequantize4bit(w.format === "4bit" ? w.q : assert.fail()), compute));
            const what = `${type}${dq ? "+dq" : ""} ${n}×${k}`;
            assert.deepEqual(
              run(b, identity(k), k, w, false),
              Float32Array.from(transposed(deq, n, k)),
              `${what} I·Wᵀ`,
            );
            assert.deepEqual(run(b, identity(n), n, w, true), deq, `${what} I·W`);
          }
        }
      });
    }

    for (const compute of ["bfloat16", "float16"] as const) {
      it(`${bname}: bnb_4bit_compute_dtype ${compute} rounds x and W to it and sums in float32`, (t) => {
        if (!b) return t.skip("native addon not built");
        const [n, k] = [257, 448];
        const w = matrix(n, k, "nf4", true, compute);
        const deq = dequantize4bit(w.format === "4bit" ? w.q : assert.fail());
        const x = randValues(9 * k, 3, 0, 1),
          g = randValues(9 * n, 4, 0, 1);
        const refX = reference(rounded(x, compute), 9, rounded(deq, compute), n, k, false);
        const refG = reference(rounded(g, compute), 9, rounded(deq, compute), n, k, true);
        const y = run(b, x, 9, w, false);
        assertWithin(y, refX, `${compute} x·Wᵀ`);
        assertWithin(run(b, g, 9, w, true), refG, `${compute} g·W`);
        // The rounding shows: y is far closer to the rounded product than to the float32 one.
        const f32 = reference(x, 9, Array.from(deq), n, k, false).exact;
        const meanDiff = (ref: Float64Array) => y.reduce((s, v, i) => s + Math.abs(v - ref[i]!), 0) / y.length;
        assert.ok(meanDiff(refX.exact) * 100 < meanDiff(f32), "the product is the rounded one, not float32's");
      });
    }
  }

  it("native: a few rows (decoding) read W in place; each row's bits do not depend on the other rows or threads", (t) => {
    if (!native) return t.skip("native addon not built");
    const before = threads();
    setAdaptiveThreads(false);
    try {
      // k a multiple of the block (the in-place kernel's case); the larger W is split over threads.
      for (const [n, k, blocksize] of [
        [301, 512, 64],
        [1000, 1088, 64],
        [50, 256, 128],
      ] as const) {
        for (const [type, dq] of TYPES)
          for (const compute of ["float32", "bfloat16"] as const) {
            const q = quantize4bit(Float32Array.from(randValues(n * k, n + k, 0, 0.3)), type, {
              doubleQuant: dq,
              blocksize,
            });
            const w: QuantizedMatrix = { format: "4bit", n, k, q, compute };
            const x = randValues(8 * k, 7, 0, 1);
            const what = `${type}${dq ? "+dq" : ""} ${n}×${k}/${blocksize} ${compute}`;
            setThreads(2);
            const batch = run(native, x, 8, w, false);
            const deq = rounded(dequantize4bit(q), compute);
            assertWithin(batch, reference(rounded(x, compute), 8, deq, n, k, false), what);
            for (const count of [1, 3]) {
              setThreads(count);
              assert.deepEqual(run(native, x, 8, w, false), batch, `${what}: ${count} threads`);
            }
            setThreads(2);
            for (const r of [0, 3, 7])
              assert.deepEqual(
                run(native, x.slice(r * k, (r + 1) * k), 1, w, false),
                batch.subarray(r * n, (r + 1) * n),
                `${what}: row ${r} alone`,
              );
            assert.deepEqual(run(native, x.slice(0, 3 * k), 3, w, false), batch.subarray(0, 3 * n), `${what}: 3 rows`);
          }
      }
    } finally {
      setThreads(before);
      setAdaptiveThreads(process.env["PEFT_TS_ADAPTIVE_THREADS"] !== "0");
    }
  });

  it("native: results are bit-identical with 1, 2 and 3 threads", (t) => {
    if (!native) return t.skip("native addon not built");
    const before = threads();
    setAdaptiveThreads(false);
    try {
      for (const compute of ["float32", "bfloat16"] as const) {
        const [n, k] = [600, 200];
        const w = matrix(n, k, "nf4", true, compute);
        const x = randValues(40 * k, 5, 0, 1),
          g = randValues(40 * n, 6, 0, 1);
        const results = [1, 2, 3].map((count): Float32Array[] => {
          setThreads(count);
          return [run(native!, x, 40, w, false), run(native!, g, 40, w, true)];
        });
        for (const [i, r] of results.entries()) {
          assert.deepEqual(r[0], results[0]![0], `${compute} x·Wᵀ with ${i + 1} threads vs 1`);
          assert.deepEqual(r[1], results[0]![1], `${compute} g·W with ${i + 1} threads vs 1`);
        }
      }
    } finally {
      setThreads(before);
      setAdaptiveThreads(process.env["PEFT_TS_ADAPTIVE_THREADS"] !== "0");
    }
  });
});
