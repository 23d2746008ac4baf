/**
 * The decode batch's shared KV cache against a plain reference (each row's list of columns): rows joining with
 * shorter and longer prompts than the frontier, steps appended in place by the model or copied in, rows leaving
 * from the middle and the end (the longest one too, which drops the columns only padding used); then the engine
 * over such joins and leaves gets each request's tokens alone, and keeps the pool under its bound.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { backend } from "../src/backend/index.js";
import { fromPretrained } from "../src/models/auto.js";
import type { PastKeyValues } from "../src/models/outputs.js";
import { appendAlong, cat, contiguous, full, memory, tensor, tidy } from "../src/tensor/index.js";
import { BatchCache } from "../src/serve/batch-cache.js";
import { DecodeEngine, type SequenceRequest } from "../src/serve/engine.js";
import { ServedModel } from "../src/serve/model.js";

const LAYERS = 2,
  HEADS = 2,
  DIM = 3;
let counter = 0;

/** A column: HEADS·DIM distinct values, for one layer and side. */
function column(): number[] {
  return Array.from({ length: HEADS * DIM }, () => ++counter);
}

/** Reference: per row, per layer and side, its columns in order. */
type Row = { key: number[][]; value: number[][] }[];

/** Keys/values [rows.length, HEADS, width, DIM] of rows left-padded with -1 (must never be read). */
function asPast(rows: Row[], width: number): PastKeyValues {
  return Array.from({ length: LAYERS }, (_, l) => {
    const side = (name: "key" | "value") => {
      const data = new Float32Array(rows.length * HEADS * width * DIM).fill(-1);
      rows.forEach((row, r) => {
        const cols = row[l]![name];
        cols.forEach((col, j) => {
          const at = width - cols.length + j;
          for (let h = 0; h < HEADS; h++)
            for (let d = 0; d < DIM; d++) data[((r * HEADS + h) * width + at) * DIM + d] = col[h * DIM + d]!;
        });
      });
      return tensor(data, [rows.length, HEADS, width, DIM]);
    };
    return { key: side("key"), value: side("value") };
  });
}

function newRow(length: number): Row {
  return Array.from({ length: LAYERS }, () => ({
    key: Array.from({ length }, column),
    value: Array.from({ length }, column),
  }));
}

/** The cache holds exactly the reference's rows, each ending at the frontier, and masks the rest. */
function check(cache: BatchCache, rows: Row[], what: string): void {
  assert.deepEqual(
    cache.lengths,
    rows.map((r) => r[0]!.key.length),
    `${what}: lengths`,
  );
  assert.equal(cache.length, Math.max(...cache.lengths), `${what}: the frontier is the longest row`);
  const width = cache.length;
  const mask = cache.stepMask();
  rows.forEach((row, r) => {
    const len = row[0]!.key.length;
    const expected = [...new Array<number>(width - len).fill(0), ...new Array<number>(len + 1).fill(1)];
    assert.deepEqual(Array.from(mask.subarray(r * (width + 1), (r + 1) * (width + 1))), expected, `${what}: mask`);
  });
  tidy(() => {
    cache.past().forEach((kv, l) => {
      for (const name of ["key", "value"] as const) {
        const got = contiguous(kv[name]).dataSync();
        rows.forEach((row, r) => {
          const cols = row[l]![name];
          cols.forEach((col, j) => {
            const at = width - cols.length + j;
            const values = [];
            for (let h = 0; h < HEADS; h++)
              for (let d = 0; d < DIM; d++) values.push(got[((r * HEADS + h) * width + at) * DIM + d]);
            assert.deepEqual(values, col, `${what}: row ${r} layer ${l} ${name} position ${j}`);
          });
          // Padding is multiplied by zero attention weights: it has to be finite (0·NaN is NaN).
          for (let at = 0; at < width - cols.length; at++)
            for (let h = 0; h < HEADS; h++)
              for (let d = 0; d < DIM; d++)
                assert.ok(Number.isFinite(got[((r * HEADS + h) * width + at) * DIM + d]), `${what}: row ${r} padding`);
        });
      }
    });
  });
}

/** One decode step: the model appends a column to every row, in place (appendAlong) or as a new tensor (cat). */
function step(cache: BatchCache, rows: Row[], inPlace: boolean): void {
  tidy(() => {
    const past = cache.past();
    const present = past.map((kv, l) => {
      const side = (name: "key" | "value") => {
        const cols = rows.map(() => column());
        for (const [r, row] of rows.entries()) row[l]![name].push(cols[r]!);
        const data = new Float32Array(rows.length * HEADS * DIM);
        cols.forEach((col, r) => {
          for (let h = 0; h < HEADS; h++)
            for (let d = 0; d < DIM; d++) data[(r * HEADS + h) * DIM + d] = col[h * DIM + d]!;
        });
        const x = tensor(data, [rows.length, HEADS, 1, DIM]);
        const out = inPlace ? appendAlong(kv[name], x, 2) : cat([kv[name], x], 2);
        assert.equal(out.bufferRef === kv[name].bufferRef, inPlace, "appendAlong writes into the cache's buffer");
        return out;
      };
      return { key: side("key"), value: side("value") };
    });
    cache.advance(present);
  });
}

describe("BatchCache", () => {
  it("holds each row's keys/values through joins, in-place and copied steps, and leaves", () => {
    // Free buffers of every size the cache will ask for, full of NaN: its buffers are not zeroed when made.
    for (let slots = 2; slots <= 12; slots++)
      for (let capacity = 16; capacity <= 120; capacity++)
        tidy(() => {
          full([slots, HEADS, capacity, DIM], Number.NaN);
        });
    const before = memory().liveBytes;
    const cache = new BatchCache();
    const rows: Row[] = [];
    const joinRows = (lengths: number[]) => {
      const fresh = lengths.map(newRow);
      tidy(() => cache.join(asPast(fresh, Math.max(...lengths)), lengths));
      rows.push(...fresh);
    };
    joinRows([3, 5]);
    check(cache, rows, "first join (one row padded)");
    step(cache, rows, true);
    step(cache, rows, false);
    check(cache, rows, "two steps");
    joinRows([2]);
    check(cache, rows, "a shorter prompt joins");
    joinRows([12, 1]);
    check(cache, rows, "a prompt longer than the frontier joins (rows move right)");
    for (let i = 0; i < 30; i++) step(cache, rows, i % 3 !== 0);
    check(cache, rows, "thirty steps (the buffers grow)");
    const remove = (r: number) => {
      cache.remove(r);
      const last = rows.pop()!;
      if (r < rows.length) rows[r] = last;
    };
    remove(1);
    check(cache, rows, "a middle row leaves");
    remove(2); // the longest row (12 + 32): the frontier drops to the next longest
    check(cache, rows, "the longest row leaves");
    remove(cache.rows - 1);
    check(cache, rows, "the last row leaves");
    step(cache, rows, true);
    check(cache, rows, "a step after the leaves");
    while (cache.rows > 0) remove(0);
    assert.equal(cache.length, 0);
    const kept = memory().liveBytes;
    assert.ok(kept > before, "the buffers are kept when the last row leaves");
    // The next batch reuses them (what the rows before left in them is not read).
    joinRows([6, 2, 4]);
    check(cache, rows, "a batch after the last one drained");
    step(cache, rows, true);
    check(cache, rows, "its first step");
    assert.equal(memory().liveBytes, kept, "no new buffers");
    while (cache.rows > 0) remove(0);
    cache.clear();
    assert.equal(memory().liveBytes, before, "clear frees the buffers");
  });
});

const ROOT = fileURLToPath(new URL("../../test/fixtures/mixed-batch/", import.meta.url));

function served(name: string): ServedModel {
  const m = new ServedModel(fromPretrained(join(ROOT, name, "model"), "causal-lm"));
  for (const a of ["left", "right"]) m.loadAdapter(a, join(ROOT, name, "adapters", a));
  return m;
}

/** A request's greedy tokens with the engine to itself. */
async function alone(engine: DecodeEngine, request: SequenceRequest): Promise<number[]> {
  return (await engine.submit(request).done).tokens;
}

for (const name of ["gpt2", "llama"]) {
  describe(`decode engine over the shared cache: ${name}`, () => {
    it("prefills several prompts at once, lets rows join and leave mid-batch, and matches each request alone", async () => {
      const model = served(name);
      const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (seed * 7 + i * 5) % 64);
      // A long prompt that ends early (the frontier drops when it leaves), short ones that run long, a waiting
      // request that arrives when the first ones are running; a small prefill budget splits the first prefill.
      const requests: SequenceRequest[] = [
        { promptIds: prompt(18, 1), adapter: "left", maxNewTokens: 2, ignoreEos: true },
        { promptIds: prompt(3, 2), adapter: "__base__", maxNewTokens: 12, ignoreEos: true },
        { promptIds: prompt(6, 3), adapter: "right", maxNewTokens: 9, ignoreEos: true },
        { promptIds: prompt(1, 4), adapter: "left", maxNewTokens: 10, ignoreEos: true },
        { promptIds: prompt(20, 5), adapter: "right", maxNewTokens: 4, ignoreEos: true },
      ];
      const single = new DecodeEngine(model);
      const expected: number[][] = [];
      for (const r of requests) expected.push(await alone(single, r));
      const engine = new DecodeEngine(model, { maxPrefillTokens: 40 });
      const results = requests.slice(0, 4).map((r) => engine.submit(r).done);
      let steps = 0;
      const late = new Promise<number[]>((resolve) => {
        engine.submit({
          ...requests[1]!,
          maxNewTokens: 3,
          onToken: () => {
            if (++steps === 2) void engine.submit(requests[4]!).done.then((r) => resolve(r.tokens));
          },
        });
      });
      const got = [...(await Promise.all(results)).map((r) => r.tokens), await late];
      for (const [i, tokens] of got.entries()) assert.deepEqual(tokens, expected[i], `request ${i}`);
    });
  });
}

describe("decode engine: the buffer pool stays bounded", () => {
  /** Most pooled bytes seen between steps while 40 requests of varied lengths run, 4 at a time. */
  async function poolPeak(limit: number): Promise<number> {
    const engine = new DecodeEngine(served("gpt2"), { poolLimitBytes: limit });
    let peak = 0,
      running = true;
    const watch = (): void => {
      peak = Math.max(peak, backend().pooledBytes());
      if (running) setImmediate(watch);
    };
    backend().trimPool();
    watch();
    await Promise.all(
      Array.from({ length: 4 }, async (_, client) => {
        for (let k = 0; k < 10; k++) {
          const length = 1 + ((client * 11 + k * 7) % 17);
          await engine.submit({
            promptIds: Array.from({ length }, (_, i) => (i * 3 + k) % 64),
            adapter: ["left", "right", "__base__"][k % 3]!,
            maxNewTokens: 1 + ((k * 5 + client) % 9),
            ignoreEos: true,
          }).done;
        }
      }),
    );
    running = false;
    return peak;
  }

  it("keeps the pool's free buffers under the engine's bound", async () => {
    const limit = 64 * 1024;
    const unbounded = await poolPeak(Number.POSITIVE_INFINITY);
    assert.ok(unbounded > 4 * limit, `without a bound the pool grows (${unbounded} bytes)`);
    const bounded = await poolPeak(limit);
    assert.ok(bounded <= limit, `pooled ${bounded} bytes, bound ${limit}`);
  });
});
