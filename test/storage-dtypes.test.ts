/**
 * Storage dtypes beyond float32/int32: bfloat16 and float16 (bits in a Uint16Array) and uint8 (raw bytes).
 * Expected values are worked out by hand from the formats' definitions: bfloat16 keeps 7 mantissa bits and float16
 * 10, both rounding to nearest with ties to even; 1.0 is 0x3F80 in bfloat16 and 0x3C00 in float16.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend, DType } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import { backend, setBackend } from "../src/backend/index.js";
import { tensor, memory, add, contiguous, transpose, narrow, keep } from "../src/tensor/index.js";
import { loadSafetensors, writeSafetensors, readSafetensors } from "../src/io/safetensors.js";
import { nativeOrReason } from "./helpers.js";

const { native } = nativeOrReason(); // null: the js rows still run
const backends: [string, () => Backend][] = [
  ["js", () => new JsBackend()],
  ...(native ? [["native", () => native] as [string, () => Backend]] : []),
];

/** Run fn with backend b active, restoring the previous one. */
function withBackend(b: Backend, fn: () => void): void {
  const before = backend();
  setBackend(b);
  try {
    fn();
  } finally {
    setBackend(before);
  }
}

for (const [name, make] of backends) {
  test(`${name}: values round to nearest even into bfloat16 and float16`, () =>
    withBackend(make(), () => {
      // 1 + 2^-8 is halfway between bfloat16's 1 and 1 + 2^-7: the tie goes to the even mantissa (1.0).
      // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up. float16 holds both exactly;
      // 3 + 2^-12 is below half its ulp at 3 (2^-9).
      const xs = [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2, 65504, 3 + 2 ** -12];
      const bf = tensor(xs, [xs.length], "bfloat16");
      assert.deepEqual(Array.from(bf.rawSync()), [0x3f80, 0x3f80, 0x3f82, 0xc000, 0x4780, 0x4040]);
      assert.deepEqual(Array.from(bf.dataSync()), [1, 1, 1 + 2 ** -6, -2, 65536, 3]);
      const h = tensor(xs, [xs.length], "float16");
      assert.deepEqual(Array.from(h.rawSync()), [0x3c00, 0x3c04, 0x3c0c, 0xc000, 0x7bff, 0x4200]);
      assert.deepEqual(Array.from(h.dataSync()), [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2, 65504, 3]);
    }));

  test(`${name}: copy converts between every dtype pair and keeps bits within one dtype`, () =>
    withBackend(make(), () => {
      const b = backend();
      const src = tensor([1.5, -2.25, 300, 7.9], [4]);
      const to = (dtype: DType) => {
        const out = b.alloc(dtype, 4);
        b.copy(src, out);
        return Array.from(out.data);
      };
      assert.deepEqual(to("bfloat16"), [0x3fc0, 0xc010, 0x4396, 0x40fd]);
      assert.deepEqual(to("float16"), [0x3e00, 0xc080, 0x5cb0, 0x47e6]);
      // uint8 truncates toward zero and keeps the low 8 bits (300 = 256 + 44); -2.25 → -2 → 254.
      assert.deepEqual(to("uint8"), [1, 254, 44, 7]);
      // A NaN with a payload survives a bfloat16 → bfloat16 copy of a strided view unchanged.
      const bf = tensor([1, 2, 3, 4, 5, 6], [2, 3], "bfloat16");
      bf.storage.data[4] = 0x7fc1;
      const t = contiguous(transpose(bf));
      assert.equal(t.dtype, "bfloat16");
      assert.deepEqual(Array.from(t.rawSync()), [0x3f80, 0x4080, 0x4000, 0x7fc1, 0x4040, 0x40c0]);
      const u = tensor([0, 255, 17, 3], [4], "uint8");
      assert.deepEqual(Array.from(narrow(u, 0, 1, 2).rawSync()), [255, 17]);
      assert.deepEqual(Array.from(narrow(u, 0, 1, 2).dataSync()), [255, 17]);
    }));

  test(`${name}: ops read half tensors as float32 values`, () =>
    withBackend(make(), () => {
      const y = add(tensor([1, 2.5, -3], [3], "bfloat16"), tensor([0.5, 0.5, 0.5], [3]));
      assert.equal(y.dtype, "float32");
      assert.deepEqual(Array.from(y.dataSync()), [1.5, 3, -2.5]);
    }));
}

test("native conversions between float32 and the half formats match the reference on every kind of value", (t) => {
  const native = backends.find(([n]) => n === "native");
  if (!native) return t.skip("native addon not built");
  const nb = native[1](),
    js = new JsBackend();
  // Random bit patterns hit every class: NaNs with payloads, infinities, subnormals, overflow, ties.
  const bits = new Uint32Array(20000);
  let s = 7;
  for (let i = 0; i < bits.length; i++) bits[i] = s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  const src = new CpuStorage("float32", new Float32Array(bits.buffer));
  const view = { storage: src, shape: [bits.length - 3], strides: [1], offset: 3 };
  for (const dtype of ["bfloat16", "float16"] as const) {
    const a = nb.alloc(dtype, bits.length - 3),
      b = js.alloc(dtype, bits.length - 3);
    nb.copy(view, a);
    js.copy(view, b);
    assert.deepEqual(a.data, b.data, `float32 → ${dtype}`);
    const wa = nb.alloc("float32", a.size),
      wb = js.alloc("float32", a.size);
    nb.copy({ storage: a, shape: [a.size], strides: [1], offset: 0 }, wa);
    js.copy({ storage: a, shape: [a.size], strides: [1], offset: 0 }, wb);
    assert.deepEqual(
      new Uint32Array((wa.data as Float32Array).buffer),
      new Uint32Array((wb.data as Float32Array).buffer),
      `${dtype} → float32`,
    );
  }
});

test("half and byte storages count their real size in memory()", () => {
  const before = memory().liveBytes;
  const t = keep(tensor(new Array(1000).fill(1), [1000], "bfloat16"));
  assert.equal(memory().liveBytes - before, 2000);
  const u = keep(tensor(new Array(1000).fill(1), [1000], "uint8"));
  assert.equal(memory().liveBytes - before, 3000);
  t.dispose();
  u.dispose();
  assert.equal(memory().liveBytes, before);
});

test("only float32 tensors can require gradients", () => {
  assert.throws(() => tensor([1], [1], "bfloat16").requiresGrad_(), /only float32 tensors/);
});

test("safetensors: bfloat16, float16 and uint8 tensors are saved as BF16/F16/U8 and load back bit for bit", () => {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-dtypes-"));
  try {
    const bf = tensor([1, -0.5, 3.140625], [3], "bfloat16");
    const h = tensor([1, -0.5, 3.140625], [3], "float16");
    const u = tensor([0, 128, 255, 9], [2, 2], "uint8");
    const path = join(dir, "t.safetensors");
    writeSafetensors(
      path,
      new Map([
        ["bf", bf],
        ["h", h],
        ["u", u],
      ]),
    );
    const raw = readSafetensors(path).tensors;
    assert.equal(raw.get("bf")!.dtype, "BF16");
    assert.deepEqual(Array.from(raw.get("bf")!.data as Uint16Array), [0x3f80, 0xbf00, 0x4049]);
    assert.equal(raw.get("h")!.dtype, "F16");
    assert.deepEqual(Array.from(raw.get("h")!.data as Uint16Array), [0x3c00, 0xb800, 0x4248]);
    assert.equal(raw.get("u")!.dtype, "U8");
    // Kept as stored, and saved again: the same bytes.
    const kept = loadSafetensors(path, { floatDtype: "keep", keepBytes: true });
    assert.deepEqual(
      [...kept.values()].map((t) => t.dtype),
      ["bfloat16", "float16", "uint8"],
    );
    const again = join(dir, "again.safetensors");
    writeSafetensors(again, kept);
    assert.deepEqual(readFileSync(again), readFileSync(path));
    // Default: floats become float32 (exact), bytes int32.
    const plain = loadSafetensors(path);
    assert.deepEqual(Array.from(plain.get("bf")!.dataSync()), [1, -0.5, 3.140625]);
    assert.equal(plain.get("u")!.dtype, "int32");
    // An F32 file read as bfloat16 rounds each value to nearest even.
    const f32 = join(dir, "f32.safetensors");
    writeSafetensors(f32, new Map([["x", tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8], [2])]]));
    const asBf = loadSafetensors(f32, { floatDtype: "bfloat16" }).get("x")!;
    assert.equal(asBf.dtype, "bfloat16");
    assert.deepEqual(Array.from(asBf.rawSync()), [0x3f80, 0x3f82]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
