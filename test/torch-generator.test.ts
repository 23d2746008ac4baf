/**
 * TorchGenerator against Python torch 1.13's CPU generator (test/fixtures/methods-a/torch-generator.json, made by
 * scripts/make_method_fixtures_a.py): raw mt19937 draws, randperm, rand, uniform_, randn on both of torch's normal
 * paths, bernoulli, and one generator driven through a chain of calls.
 *
 * Exactness. Integer draws, permutations, float32 uniforms and Bernoulli masks are compared exactly (the same
 * integer and float32 operations as torch's kernels). Normals go through log/sqrt/cos/sin, which torch takes
 * from its vectorised math library and JS from V8: those may differ by an ulp, so normals are compared to 1e-6
 * relative (a wrong pairing or draw order is off by O(1)).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { TorchGenerator } from "../src/tensor/torch-generator.js";
import { tensor } from "../src/tensor/index.js";

const GOLDEN = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../test/fixtures/methods-a/torch-generator.json", import.meta.url)), "utf8"),
);

function assertNormalsClose(got: ArrayLike<number>, want: number[], what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-6 * Math.max(1, Math.abs(want[i]!));
    assert.ok(Math.abs(got[i]! - want[i]!) <= tol, `${what}[${i}]: ${got[i]} vs torch ${want[i]}`);
  }
}

describe("TorchGenerator (torch's CPU mt19937)", () => {
  it("gives torch's 32-bit draws for each seed (seeds above 2^32 keep their low 32 bits, as torch does)", () => {
    for (const { seed, values } of GOLDEN.random as { seed: number; values: number[] }[]) {
      const g = new TorchGenerator().manualSeed(seed);
      assert.deepEqual(
        values.map(() => g.random() % 2 ** 31),
        values,
        `seed ${seed}`,
      );
    }
  });

  it("randperm(n) matches torch for n from 1 to 100000", () => {
    for (const { seed, n, head, sum_sq_pos } of GOLDEN.randperm as {
      seed: number;
      n: number;
      head: number[];
      sum_sq_pos: number;
    }[]) {
      const perm = new TorchGenerator(seed).randperm(n);
      assert.deepEqual(perm.slice(0, 64), head, `seed ${seed} n ${n}`);
      // The whole permutation through Σ perm[i]·i (exact in float64 for n ≤ 1e5: below 2^53).
      assert.equal(
        perm.reduce((s, v, i) => s + v * i, 0),
        sum_sq_pos,
        `seed ${seed} n ${n} (whole permutation)`,
      );
      assert.deepEqual(
        [...perm].sort((a, b) => a - b),
        Array.from({ length: n }, (_, i) => i),
        "a permutation",
      );
    }
  });

  it("rand and uniform_(-b, b) give torch's float32 values exactly", () => {
    for (const { seed, n, values } of GOLDEN.rand as { seed: number; n: number; values: number[] }[]) {
      assert.deepEqual(Array.from(new TorchGenerator(seed).rand([n]).dataSync()), values, `rand seed ${seed}`);
    }
    for (const { seed, shape, bound, values } of GOLDEN.uniform as {
      seed: number;
      shape: number[];
      bound: number;
      values: number[];
    }[]) {
      const t = new TorchGenerator(seed).uniform(shape, -bound, bound);
      assert.deepEqual(t.shape, shape);
      assert.deepEqual(Array.from(t.dataSync()), values, `uniform seed ${seed}`);
    }
  });

  it(
    "randn follows torch's scalar path below 16 values and its blocked Box–Muller from 16 on " + "(ragged tails too)",
    () => {
      for (const { seed, n, values } of GOLDEN.randn as { seed: number; n: number; values: number[] }[]) {
        assertNormalsClose(new TorchGenerator(seed).randn([n]).dataSync(), values, `randn seed ${seed} n ${n}`);
      }
    },
  );

  it("bernoulli(p) on a float tensor of probabilities gives torch's mask exactly", () => {
    for (const { seed, p, values } of GOLDEN.bernoulli as { seed: number; p: number[]; values: number[] }[]) {
      const mask = new TorchGenerator(seed).bernoulli(tensor(Float32Array.from(p), [p.length]));
      assert.deepEqual(Array.from(mask.dataSync()), values, `bernoulli seed ${seed}`);
    }
    assert.throws(() => new TorchGenerator(0).bernoulli(tensor([0.5, 1.5], [2])), /\[0, 1\].*1\.5/);
  });

  it(
    "one generator through a chain of calls keeps torch's state between them (the cached " + "second normal included)",
    () => {
      for (const { seed, calls, values } of GOLDEN.chained as {
        seed: number;
        calls: [string, number][];
        values: number[][];
      }[]) {
        const g = new TorchGenerator(seed);
        calls.forEach(([op, n], i) => {
          if (op === "randperm") assert.deepEqual(g.randperm(n), values[i], `call ${i} randperm`);
          else if (op === "rand") assert.deepEqual(Array.from(g.rand([n]).dataSync()), values[i], `call ${i} rand`);
          else assertNormalsClose(g.randn([n]).dataSync(), values[i]!, `call ${i} randn(${n})`);
        });
      }
    },
  );
});
