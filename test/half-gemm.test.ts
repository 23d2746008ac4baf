/**
 * Matrix products with bfloat16/float16 operands against the float32 product of the widened values (widening is
 * exact, so only the summation order may differ: |Δ| ≤ 1e-5·(1 + |ref|) is ~100 float32 ulps, far below a wrong
 * element). Shapes cover both transposes of the half operand, several panels, few rows, batches, bias and
 * accumulation, on the js and native backends.
 */
import { test } from "node:test";
import type { Backend, GemmSpec, Storage } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import {
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
} from "../src/backend/half.js";
import { assertClose, nativeOrReason, rng } from "./helpers.js";

const { native } = nativeOrReason(); // null: the js rows still run
const backends: [string, () => Backend][] = [
  ["js", () => new JsBackend()],
  ...(native ? [["native", () => native] as [string, () => Backend]] : []),
];

function randomF32(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

/** A half storage of random values and the float32 storage of the same (widened) values. */
function halfPair(dtype: "bfloat16" | "float16", n: number, seed: number): [Storage, Storage] {
  const bits = new Uint16Array(n),
    wide = new Float32Array(n);
  if (dtype === "bfloat16") {
    float32ToBfloat16Bits(randomF32(n, seed), bits);
    bfloat16BitsToFloat32(bits, wide);
  } else {
    float32ToFloat16Bits(randomF32(n, seed), bits);
    float16BitsToFloat32(bits, wide);
  }
  return [new CpuStorage(dtype, bits), new CpuStorage("float32", wide)];
}

interface Case {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  batch: number;
  halfA: boolean;
  bias: boolean;
  accumulate: boolean;
}

const cases: Case[] = [
  { m: 5, n: 7, k: 3, transA: false, transB: true, batch: 1, halfA: false, bias: false, accumulate: false },
  { m: 33, n: 70, k: 40, transA: false, transB: true, batch: 1, halfA: false, bias: true, accumulate: false },
  { m: 3, n: 90, k: 17, transA: true, transB: false, batch: 2, halfA: false, bias: false, accumulate: true },
  { m: 1, n: 50, k: 64, transA: false, transB: false, batch: 1, halfA: false, bias: true, accumulate: true },
  { m: 12, n: 9, k: 11, transA: true, transB: true, batch: 3, halfA: true, bias: false, accumulate: false },
  // n·k above one panel (1 Mi elements), more than 8 rows: the product runs in several panels (B transposed: of
  // output columns; B as stored: of terms, each added to the output, after the bias and the accumulated output).
  { m: 9, n: 2100, k: 600, transA: false, transB: true, batch: 1, halfA: false, bias: true, accumulate: false },
  { m: 10, n: 1800, k: 700, transA: false, transB: false, batch: 1, halfA: false, bias: false, accumulate: false },
  { m: 20, n: 1100, k: 1000, transA: true, transB: false, batch: 2, halfA: false, bias: true, accumulate: true },
  // At most 8 rows: the few-row kernels read the half weight in place.
  { m: 4, n: 1800, k: 700, transA: false, transB: false, batch: 1, halfA: false, bias: false, accumulate: false },
];

for (const [name, make] of backends) {
  for (const dtype of ["bfloat16", "float16"] as const) {
    test(`${name}: ${dtype} products equal float32 products of the widened values`, () => {
      const b = make();
      let seed = 1;
      for (const c of cases) {
        const aSize = c.batch * c.m * c.k,
          bSize = c.batch * c.k * c.n;
        const [aHalf, aWide] = halfPair(dtype, aSize, seed++);
        const [bHalf, bWide] = halfPair(dtype, bSize, seed++);
        const bias = c.bias ? new CpuStorage("float32", randomF32(c.n, seed++)) : null;
        const start = randomF32(c.batch * c.m * c.n, seed++);
        const spec = (a: Storage, bs: Storage, out: Storage): GemmSpec => ({
          a,
          aOffset: 0,
          transA: c.transA,
          lda: c.transA ? c.m : c.k,
          aBatchStrides: [c.m * c.k],
          b: bs,
          bOffset: 0,
          transB: c.transB,
          ldb: c.transB ? c.k : c.n,
          bBatchStrides: [c.k * c.n],
          batchShape: [c.batch],
          m: c.m,
          n: c.n,
          k: c.k,
          out,
          accumulate: c.accumulate,
          bias,
          alpha: 0.5,
        });
        const got = new CpuStorage("float32", start.slice()),
          want = new CpuStorage("float32", start.slice());
        b.gemm(spec(c.halfA ? aHalf : aWide, bHalf, got));
        b.gemm(spec(aWide, bWide, want));
        assertClose(got.data as Float32Array, want.data as Float32Array, 1e-5, 1e-5, JSON.stringify(c));
      }
    });
  }
}
