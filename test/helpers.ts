/**
 * Shared test utilities: a deterministic PRNG, random tensors, closeness and identity checks, float64 reference products,
 * finite-difference gradients, temporary folders.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Tensor, tensor, noGrad, tidy } from "../src/tensor/index.js";
import type { Backend } from "../src/backend/backend.js";
import { loadNativeBackend } from "../src/backend/native/native-backend.js";

/** Deterministic PRNG (mulberry32) independent of the engine's own generator. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values in ±[lo, hi] with random signs: away from 0 so that kinks (relu, abs, max) are not crossed by a finite difference. */
export function randValues(n: number, seed: number, lo = 0.1, hi = 1): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (lo + (hi - lo) * r()));
}

/** A float32 tensor of random values (see randValues). */
export function randTensor(shape: number[], seed: number, lo = 0.1, hi = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(randValues(n, seed, lo, hi), shape);
}

/** Assert that two arrays agree within |a − b| ≤ atol + rtol·|b|, naming the first bad index. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol = 0,
  what = "values",
): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!,
      e = expected[i]!;
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}[${i}]: ${a} vs expected ${e} (|diff| ${Math.abs(a - e)} > ${atol} + ${rtol}·|expected|)`);
    }
  }
}

/** A tensor's values as a plain array. */
export function values(t: Tensor): number[] {
  return Array.from(t.dataSync());
}

/** Assert bit-identical float32 arrays (the first differing index is named). */
export function assertSame(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i])
      assert.fail(`${what}[${i}]: ${actual[i]} vs ${expected[i]} (expected identical values)`);
  }
}

/** The largest |a[i] − b[i]|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** The largest |a[i]|. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** a [m, k] · b [k, n] in float64 (row-major flat arrays; each sum taken in order of k). */
export function mm(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p]!;
      for (let j = 0; j < n; j++) out[i * n + j]! += aip * b[p * n + j]!;
    }
  return out;
}

/** The transpose [cols, rows] of a row-major [rows, cols] matrix, in float64. */
export function transposed(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j]!;
  return out;
}

/**
 * Compare the autograd gradient of L = Σ w ⊙ f(inputs) (w fixed random weights) with central finite differences.
 * L is accumulated in double from f's float32 outputs, so the numeric side's error is f's own rounding
 * (~1e-7 relative) divided by 2·eps, plus the O(eps²) truncation term: with eps = 1e-2 both stay below 1e-3
 * for the O(1) functions tested, hence the default tolerance atol 2e-3, rtol 1e-2.
 */
export function gradCheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: Tensor[],
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number } = {},
): void {
  const eps = opts.eps ?? 1e-2,
    atol = opts.atol ?? 2e-3,
    rtol = opts.rtol ?? 1e-2;
  const values = inputs.map((t) => Array.from(t.dataSync()));
  const weightsFor = (n: number) => randValues(n, opts.seed ?? 99, 0.5, 1.5);
  const objective = (vals: number[][]): number =>
    tidy(() => {
      const ts = vals.map((v, i) => tensor(v, [...inputs[i]!.shape]));
      const out = noGrad(() => f(...ts)).dataSync();
      const w = weightsFor(out.length);
      let s = 0;
      for (let i = 0; i < out.length; i++) s += w[i]! * out[i]!;
      return s;
    });
  const analytic = tidy(() => {
    const leaves = values.map((v, i) => tensor(v, [...inputs[i]!.shape]).requiresGrad_());
    const out = f(...leaves);
    const w = tensor(weightsFor(out.size), [...out.shape]);
    out.backward(w);
    return leaves.map((l) => Array.from(l.grad?.dataSync() ?? new Float32Array(l.size)));
  });
  values.forEach((v, which) => {
    const numeric = v.map((x, i) => {
      const plus = values.map((vv) => [...vv]);
      const minus = values.map((vv) => [...vv]);
      plus[which]![i] = x + eps;
      minus[which]![i] = x - eps;
      return (objective(plus) - objective(minus)) / (2 * eps);
    });
    assertClose(analytic[which]!, numeric, atol, rtol, `gradient of input ${which}`);
  });
}

/**
 * The native backend, or null and the reason it did not load. A missing addon fails the suite (a build that broke
 * would otherwise hide behind green js cases); a contributor without OpenBLAS runs with PEFT_TS_REQUIRE_NATIVE=0,
 * and then the native cases skip with that reason.
 */
export function nativeOrReason(): { native: Backend | null; loadError: string } {
  try {
    return { native: loadNativeBackend(), loadError: "" };
  } catch (err) {
    const reason = (err as Error).message;
    if (process.env["PEFT_TS_REQUIRE_NATIVE"] !== "0")
      throw new Error(
        `the native addon does not load: ${reason}. Run bash scripts/setup.sh (it needs OpenBLAS), or set ` +
          "PEFT_TS_REQUIRE_NATIVE=0 to run the tests without it (its cases then skip)",
      );
    return { native: null, loadError: reason };
  }
}

/** Temporary folders for one test file: `make()` creates one under the OS temp dir, `removeAll()` (call it in `after`) deletes them. */
export function tempDirs(prefix: string): { make(): string; removeAll(): void } {
  const made: string[] = [];
  return {
    make: () => {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      made.push(dir);
      return dir;
    },
    removeAll: () => {
      for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The maximum of |x·sign − y| where each row (sign per row) or column of a row-major matrix may be flipped. */
export function diffUpToSign(
  ours: ArrayLike<number>,
  theirs: ArrayLike<number>,
  rows: number,
  cols: number,
  perRow: boolean,
): number {
  let worst = 0;
  for (let l = 0; l < (perRow ? rows : cols); l++) {
    const at = (i: number) => (perRow ? l * cols + i : i * cols + l);
    let dot = 0;
    for (let i = 0; i < (perRow ? cols : rows); i++) dot += ours[at(i)]! * theirs[at(i)]!;
    const sign = dot < 0 ? -1 : 1;
    for (let i = 0; i < (perRow ? cols : rows); i++)
      worst = Math.max(worst, Math.abs(sign * ours[at(i)]! - theirs[at(i)]!));
  }
  return worst;
}
