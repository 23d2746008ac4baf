/** io/safetensors: exact dtype conversions, round trips, the golden HF files, corrupted files, atomic saves. */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, readFile, readdir, mkdir, cp, unlink } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import {
  readSafetensors,
  loadSafetensors,
  loadSafetensorsSharded,
  readSafetensorsFolder,
  readSafetensorsHeader,
  writeSafetensors,
  serializeSafetensors,
  parseSafetensors,
  rawToTensor,
  openSafetensors,
  resolveCheckpointFiles,
  SafetensorsError,
  MAX_HEADER_SIZE,
} from "../src/io/safetensors.js";
import type { RawTensor, SafetensorsDType } from "../src/io/safetensors.js";
import {
  f32BitsToF16Bits,
  f32BitsToBf16Bits,
  float16BitsToFloat32,
  bfloat16BitsToFloat32,
  float8BitsToFloat32,
  toFloat16Bits,
  fromFloat16Bits,
  toBfloat16Bits,
  fromBfloat16Bits,
  DTYPES,
} from "../src/io/dtypes.js";
import { writeFileAtomic } from "../src/io/atomic.js";
import { rng } from "./helpers.js";
import { REFERENCE } from "./golden.js";

// The golden HF model folders, vendored from Python transformers (scripts/vendor-reference.sh).
const REF = join(REFERENCE, "models");

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "peft-ts-safetensors-"));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}
function fromBits(b: number): number {
  u32[0] = b >>> 0;
  return f32[0]!;
}

/** Expected half bits of a float32 bit pattern: NaN as PyTorch writes it (sign | 0x7E00), else refF16. */
function refF16Bits(bits: number): number {
  const x = fromBits(bits);
  return Number.isNaN(x) ? ((bits >>> 16) & 0x8000) | 0x7e00 : refF16(x);
}

/** Independent reference: nearest half by searching the sorted list of half values, ties to the even code. */
function halfValue(h: number): number {
  const e = (h >> 10) & 31,
    m = h & 1023;
  return e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
}
function refF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0,
    hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (halfValue(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  if (halfValue(lo) === a) return sign | lo;
  const up = lo + 1;
  const dl = a - halfValue(lo),
    du = (up === 0x7c00 ? 65536 : halfValue(up)) - a;
  return sign | (dl < du ? lo : du < dl ? up : (lo & 1) === 0 ? lo : up);
}
/** Independent reference for bfloat16: compare distances to the two truncation neighbours. */
function refBf16(x: number): number {
  const b = bitsOf(x);
  if (Number.isNaN(x)) return 0x7fc0;
  const t = b >>> 16,
    sign = t & 0x8000,
    mag = t & 0x7fff;
  const a = Math.abs(x);
  const lo = fromBits((mag << 16) >>> 0);
  if (lo === a) return t;
  const hiVal = mag + 1 === 0x7f80 ? 2 ** 128 : fromBits(((mag + 1) << 16) >>> 0);
  const dl = a - lo,
    du = hiVal - a;
  return sign | (dl < du ? mag : du < dl ? mag + 1 : (mag & 1) === 0 ? mag : mag + 1);
}

describe("half-precision conversions", () => {
  it("decodes every f16 and bf16 bit pattern exactly and re-encodes it to the same bits", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const out = new Float32Array(65536);
    float16BitsToFloat32(all, out);
    for (let h = 0; h < 65536; h++) {
      const v = out[h]!;
      const e = (h >> 10) & 31,
        m = h & 1023,
        s = h & 0x8000 ? -1 : 1;
      if (e === 31) assert.ok(m ? Number.isNaN(v) : v === s * Infinity, `f16 ${h.toString(16)}`);
      else assert.ok(Object.is(v, s * halfValue(h)), `f16 ${h.toString(16)}: ${v}`);
      // NaNs are written as PyTorch writes them (sign | 0x7E00); every other pattern survives.
      assert.equal(f32BitsToF16Bits(bitsOf(v)), e === 31 && m ? (h & 0x8000) | 0x7e00 : h);
    }
    bfloat16BitsToFloat32(all, out);
    // Compare bit patterns through a Uint32 view: loading a signalling NaN into a JS number may quiet it.
    const outBits = new Uint32Array(out.buffer);
    for (let b = 0; b < 65536; b++) {
      assert.equal(outBits[b], (b << 16) >>> 0, `bf16 ${b.toString(16)}`);
      const nan = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      assert.equal(f32BitsToBf16Bits(outBits[b]!), nan ? 0x7fc0 : b);
    }
  });

  it("f16: edge values (subnormals, max, inf, nan, signed zero) and ties to even", () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [2 ** -24, 0x0001],
      [-(2 ** -24), 0x8001],
      [1023 * 2 ** -24, 0x03ff],
      [2 ** -14, 0x0400],
      [65504, 0x7bff],
      [-65504, 0xfbff],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [NaN, 0x7e00],
      [1, 0x3c00],
      [0.1, 0x2e66],
      [1e-8, 0x0000],
      [1e6, 0x7c00],
      // ties: exactly halfway between two halves → the even one
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [2 ** -25, 0x0000],
      [3 * 2 ** -25, 0x0002],
      [5 * 2 ** -25, 0x0002],
      [65520, 0x7c00],
      [65519.99609375, 0x7bff],
      [2 ** -14 - 2 ** -25, 0x0400],
      [2047.5 * 2 ** -11 * 2 ** -14, 0x0400],
      [4097 / 2, 0x6800],
      [2 ** -25 * (1 + 2 ** -23), 0x0001],
    ];
    for (const [x, bits] of cases) {
      assert.equal(toFloat16Bits(x), bits, `f16(${x}) = ${toFloat16Bits(x).toString(16)}, want ${bits.toString(16)}`);
    }
    assert.equal(fromFloat16Bits(0x7bff), 65504);
    assert.equal(fromFloat16Bits(0x0001), 2 ** -24);
    assert.ok(Number.isNaN(fromFloat16Bits(0x7e00)));
  });

  it("f16: matches an independent nearest-even search at every rounding boundary and on random floats", () => {
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (halfValue(h) + halfValue(h + 1)) / 2; // exactly representable in float32
      const mb = bitsOf(mid);
      for (const b of [mb - 1, mb, mb + 1, bitsOf(halfValue(h))]) {
        for (const s of [0, 0x80000000]) {
          const bits = (b | s) >>> 0;
          assert.equal(f32BitsToF16Bits(bits), refF16Bits(bits), `f32 bits ${bits.toString(16)}`);
        }
      }
    }
    const r = rng(7);
    for (let i = 0; i < 100000; i++) {
      const bits = Math.floor(r() * 2 ** 32) >>> 0;
      assert.equal(f32BitsToF16Bits(bits), refF16Bits(bits), `f32 bits ${bits.toString(16)}`);
    }
  });

  it("bf16: edge values and ties to even; matches an independent reference on random floats", () => {
    const cases: [number, number][] = [
      [0, 0],
      [-0, 0x8000],
      [1, 0x3f80],
      [1 + 2 ** -8, 0x3f80],
      [1 + 3 * 2 ** -8, 0x3f82],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [NaN, 0x7fc0],
      [-NaN, 0x7fc0],
      [3.3895313892515355e38, 0x7f7f],
      [fromBits(0x7f7fffff), 0x7f80],
      [2 ** -133, 0x0001],
      [2 ** -126, 0x0080],
      [2 ** -134, 0x0000],
      [3 * 2 ** -134, 0x0002],
    ];
    for (const [x, bits] of cases) assert.equal(toBfloat16Bits(x), bits, `bf16(${x})`);
    assert.equal(fromBfloat16Bits(0x3f80), 1);
    const r = rng(11);
    for (let i = 0; i < 100000; i++) {
      const bits = Math.floor(r() * 2 ** 32) >>> 0;
      assert.equal(f32BitsToBf16Bits(bits), refBf16(fromBits(bits)), `f32 bits ${bits.toString(16)}`);
    }
  });

  it("decodes float8 E4M3FN and E5M2", () => {
    const out = new Float32Array(6);
    float8BitsToFloat32("F8_E4M3", Uint8Array.of(0x38, 0x7e, 0x7f, 0x01, 0xb8, 0x78), out);
    assert.deepEqual([...out.slice(0, 2)], [1, 448]);
    assert.ok(Number.isNaN(out[2]!));
    assert.deepEqual([...out.slice(3)], [2 ** -9, -1, 256]);
    float8BitsToFloat32("F8_E5M2", Uint8Array.of(0x3c, 0x7b, 0x7c, 0x7d, 0x01, 0xfc), out);
    assert.deepEqual([...out.slice(0, 3)], [1, 57344, Infinity]);
    assert.ok(Number.isNaN(out[3]!));
    assert.deepEqual([...out.slice(4)], [2 ** -16, -Infinity]);
  });
});

/** One raw tensor of every dtype, with edge values. */
function everyDtype(): Map<string, RawTensor> {
  const m = new Map<string, RawTensor>();
  m.set("f64", { dtype: "F64", shape: [2, 3], data: Float64Array.of(0, -0, Math.PI, 1e300, -Infinity, NaN) });
  m.set("f32", { dtype: "F32", shape: [5], data: Float32Array.of(1.5, -0, 3.4028234663852886e38, 1e-45, NaN) });
  m.set("f16", {
    dtype: "F16",
    shape: [8],
    data: Uint16Array.of(0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000),
  });
  m.set("bf16", { dtype: "BF16", shape: [2, 3], data: Uint16Array.of(0x0001, 0x3f80, 0x7f7f, 0x7f80, 0x7fc0, 0xbf80) });
  m.set("i64", { dtype: "I64", shape: [4], data: BigInt64Array.of(0n, -1n, 2147483647n, -2147483648n) });
  m.set("i32", { dtype: "I32", shape: [3], data: Int32Array.of(-2147483648, 0, 2147483647) });
  m.set("i16", { dtype: "I16", shape: [3], data: Int16Array.of(-32768, 1, 32767) });
  m.set("i8", { dtype: "I8", shape: [3], data: Int8Array.of(-128, 0, 127) });
  m.set("u8", { dtype: "U8", shape: [3], data: Uint8Array.of(0, 128, 255) });
  m.set("bool", { dtype: "BOOL", shape: [2, 2], data: Uint8Array.of(1, 0, 0, 1) });
  m.set("u16", { dtype: "U16", shape: [2], data: Uint16Array.of(0, 65535) });
  m.set("u32", { dtype: "U32", shape: [2], data: Uint32Array.of(0, 2147483647) });
  m.set("u64", { dtype: "U64", shape: [1], data: BigUint64Array.of(5n) });
  m.set("f8e4m3", { dtype: "F8_E4M3", shape: [2], data: Uint8Array.of(0x38, 0x7e) });
  m.set("f8e5m2", { dtype: "F8_E5M2", shape: [2], data: Uint8Array.of(0x3c, 0x7c) });
  m.set("scalar", { dtype: "F32", shape: [], data: Float32Array.of(42) });
  m.set("empty", { dtype: "F32", shape: [0, 64], data: new Float32Array(0) });
  return m;
}

function rawBytes(r: RawTensor): Buffer {
  return Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength);
}

describe("round trips", () => {
  it("every dtype survives write → read exactly (bytes, shapes, metadata)", async () => {
    const path = join(tmp, "every.safetensors");
    const tensors = everyDtype();
    const metadata = { format: "pt", "ünïcode ✓": 'line\nbreak "quoted" 🤗', empty: "" };
    writeSafetensors(path, tensors, metadata);
    const back = readSafetensors(path);
    assert.deepEqual(back.metadata, metadata);
    assert.deepEqual([...back.tensors.keys()].sort(), [...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const b = back.tensors.get(name)!;
      assert.equal(b.dtype, t.dtype, name);
      assert.deepEqual(b.shape, t.shape, name);
      assert.ok(b.data instanceof DTYPES[t.dtype].array, `${name} is held in its dtype's typed array`);
      assert.ok(rawBytes(b).equals(rawBytes(t)), `${name} bytes`);
    }
    // In-memory parse of the same bytes agrees.
    const parsed = parseSafetensors(await readFile(path));
    for (const [name, t] of tensors) assert.ok(rawBytes(parsed.tensors.get(name)!).equals(rawBytes(t)), name);
  });

  it("no metadata → no __metadata__ key; empty metadata → {} (as Python writes them)", async () => {
    const t = new Map([["x", { dtype: "F32", shape: [1], data: Float32Array.of(1) } as RawTensor]]);
    const none = Buffer.from(serializeSafetensors(t));
    assert.ok(none.subarray(8).toString().startsWith('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'));
    assert.equal(parseSafetensors(none).metadata, null);
    const empty = Buffer.from(serializeSafetensors(t, {}));
    assert.ok(empty.subarray(8).toString().startsWith('{"__metadata__":{},"x":'));
    assert.deepEqual(parseSafetensors(empty).metadata, {});
  });

  it("converts to engine tensors: floats → float32 exactly, integers and BOOL → int32", async () => {
    const path = join(tmp, "every2.safetensors");
    writeSafetensors(path, everyDtype());
    const ts = loadSafetensors(path);
    const vals = (n: string) => [...ts.get(n)!.dataSync()];
    assert.equal(ts.get("f16")!.dtype, "float32");
    assert.deepEqual(vals("f16").slice(0, 6), [2 ** -24, 1023 * 2 ** -24, 2 ** -14, 65504, Infinity, -Infinity]);
    assert.ok(Number.isNaN(vals("f16")[6]!) && Object.is(vals("f16")[7], -0));
    assert.deepEqual(vals("bf16").slice(0, 4), [fromBits(0x00010000), 1, fromBits(0x7f7f0000), Infinity]);
    assert.deepEqual(ts.get("bf16")!.shape, [2, 3]);
    assert.deepEqual(vals("f64").slice(0, 3), [0, -0, Math.fround(Math.PI)]);
    assert.equal(vals("f64")[3], Infinity); // 1e300 rounds to float32 infinity
    assert.equal(ts.get("i64")!.dtype, "int32");
    assert.deepEqual(vals("i64"), [0, -1, 2147483647, -2147483648]);
    assert.deepEqual(vals("u8"), [0, 128, 255]);
    assert.deepEqual(vals("i8"), [-128, 0, 127]);
    assert.deepEqual(vals("bool"), [1, 0, 0, 1]);
    assert.deepEqual(vals("u16"), [0, 65535]);
    assert.deepEqual(vals("f8e4m3"), [1, 448]);
    assert.deepEqual(ts.get("scalar")!.shape, []);
    assert.equal(ts.get("scalar")!.item(), 42);
    assert.deepEqual(ts.get("empty")!.shape, [0, 64]);
    // rawToTensor agrees with the file path.
    assert.deepEqual([...rawToTensor(everyDtype().get("f16")!).dataSync()].slice(0, 4), vals("f16").slice(0, 4));
  });

  it("I64 values outside int32 raise a clear error in the engine conversion (raw read still works)", async () => {
    const path = join(tmp, "big-i64.safetensors");
    writeSafetensors(
      path,
      new Map([["ids", { dtype: "I64", shape: [3], data: BigInt64Array.of(1n, 2n ** 40n, 3n) } as RawTensor]]),
    );
    assert.throws(
      () => loadSafetensors(path),
      (e: SafetensorsError) =>
        e.code === "VALUE_OUT_OF_RANGE" &&
        e.message.includes(path) &&
        /"ids" \(I64\) holds 1099511627776 at flat index 1, outside the int32 range/.test(e.message) &&
        e.message.includes("Hint:"),
    );
    assert.equal((readSafetensors(path).tensors.get("ids")!.data as BigInt64Array)[1], 2n ** 40n);
    for (const [dtype, v] of [
      ["I64", -(2n ** 31n) - 1n],
      ["I64", 2n ** 31n],
      ["U64", 2n ** 63n],
      ["U64", 2n ** 32n],
    ] as const) {
      const data = dtype === "I64" ? BigInt64Array.of(v) : BigUint64Array.of(v);
      assert.throws(() => rawToTensor({ dtype, shape: [1], data }), new RegExp(`holds ${v} at flat index 0`));
    }
    assert.deepEqual(
      [...rawToTensor({ dtype: "I64", shape: [2], data: BigInt64Array.of(-(2n ** 31n), 2n ** 31n - 1n) }).dataSync()],
      [-(2 ** 31), 2 ** 31 - 1],
    );
    assert.deepEqual(
      [...rawToTensor({ dtype: "U64", shape: [1], data: BigUint64Array.of(2n ** 31n - 1n) }).dataSync()],
      [2 ** 31 - 1],
    );
  });

  it("saves engine tensors as F32/I32, F16/BF16 (round to nearest even) and I64 on request", async () => {
    const vals = Float32Array.of(
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65520,
      2 ** -25,
      3 * 2 ** -25,
      -0,
      NaN,
      1 + 2 ** -8,
      0.1,
    );
    const x = T.tensor(vals, [3, 3]);
    const ids = T.tensor(Int32Array.of(-5, 0, 7));
    const path = join(tmp, "engine.safetensors");
    writeSafetensors(
      path,
      new Map([
        ["x", x],
        ["ids", ids],
      ]),
      { a: "b" },
    );
    const raw = readSafetensors(path);
    assert.equal(raw.tensors.get("x")!.dtype, "F32");
    assert.ok(rawBytes(raw.tensors.get("x")!).equals(Buffer.from(vals.buffer)));
    assert.equal(raw.tensors.get("ids")!.dtype, "I32");

    writeSafetensors(
      path,
      new Map([
        ["x", x],
        ["ids", ids],
      ]),
      null,
      { dtype: "F16", intDtype: "I64" },
    );
    const h = readSafetensors(path);
    assert.equal(h.metadata, null);
    assert.deepEqual(
      [...(h.tensors.get("x")!.data as Uint16Array)],
      [0x3c00, 0x3c02, 0x7c00, 0x0000, 0x0002, 0x8000, 0x7e00, 0x3c04, 0x2e66],
    );
    assert.deepEqual([...(h.tensors.get("ids")!.data as BigInt64Array)], [-5n, 0n, 7n]);

    writeSafetensors(path, new Map([["x", x]]), null, { dtype: "BF16" });
    const b = readSafetensors(path);
    assert.deepEqual(
      [...(b.tensors.get("x")!.data as Uint16Array)],
      [...vals].map((v) => toBfloat16Bits(v)),
    );
    assert.equal((b.tensors.get("x")!.data as Uint16Array)[7], 0x3f80); // 1 + 2^-8 is a tie → 1.0
  });

  it("saves non-contiguous views in row-major order", async () => {
    const x = T.tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const path = join(tmp, "view.safetensors");
    writeSafetensors(
      path,
      new Map([
        ["t", T.transpose(x)],
        ["n", T.narrow(x, 1, 1, 2)],
      ]),
    );
    const back = loadSafetensors(path);
    assert.deepEqual(back.get("t")!.toArray(), [
      [1, 4],
      [2, 5],
      [3, 6],
    ]);
    assert.deepEqual(back.get("n")!.toArray(), [
      [2, 3],
      [5, 6],
    ]);
  });

  it("lays tensors out like the Rust/Python writer: descending dtype alignment, then name as UTF-8 bytes", () => {
    const t = (dtype: SafetensorsDType, n: number): RawTensor => ({
      dtype,
      shape: [n],
      data: new DTYPES[dtype].array(n),
    });
    // "\u{1F600}" sorts after "\uFFFD" in UTF-8/code-point order although its first UTF-16 unit is smaller.
    const bytes = serializeSafetensors(
      new Map([
        ["b", t("U8", 3)],
        ["a", t("F32", 1)],
        ["c", t("I64", 1)],
        ["\u{1F600}", t("F16", 1)],
        ["\uFFFD", t("F16", 1)],
        ["z", t("BOOL", 1)],
        ["m", t("BF16", 1)],
        ["d", t("F64", 1)],
      ]),
      { format: "pt" },
    );
    const len = Number(Buffer.from(bytes).readBigUInt64LE(0));
    assert.equal(len % 8, 0);
    const header = Buffer.from(bytes.subarray(8, 8 + len)).toString();
    assert.deepEqual(Object.keys(JSON.parse(header)), [
      "__metadata__",
      "c",
      "d",
      "a",
      "m",
      "\uFFFD",
      "\u{1F600}",
      "b",
      "z",
    ]);
    assert.match(
      header,
      /^\{"__metadata__":\{"format":"pt"\},"c":\{"dtype":"I64","shape":\[1\],"data_offsets":\[0,8\]\},"d":/,
    );
    assert.match(header, / *$/);
  });

  it("reads only the requested tensors, and names an unknown one", async () => {
    const path = join(tmp, "pick.safetensors");
    writeSafetensors(path, everyDtype());
    const some = readSafetensors(path, { names: ["i8", "f16"] });
    assert.deepEqual([...some.tensors.keys()].sort(), ["f16", "i8"]);
    const one = loadSafetensors(path, { names: ["bool"] });
    assert.deepEqual([...one.keys()], ["bool"]);
    assert.throws(
      () => loadSafetensors(path, { names: ["nope"] }),
      (e: SafetensorsError) => e.code === "MISSING_TENSOR" && /has no tensor "nope"/.test(e.message),
    );
    const f = openSafetensors(path);
    try {
      assert.equal(f.readTensor("i32").dataSync()[2], 2147483647);
      assert.equal(f.info("u8").dtype, "U8");
    } finally {
      f.close();
    }
  });

  it("rejects bad save requests before touching the disk", () => {
    const bad: [string, Map<string, T.Tensor | RawTensor>, RegExp][] = [
      [
        "length",
        new Map([["x", { dtype: "F32", shape: [3], data: new Float32Array(2) } as RawTensor]]),
        /"x": data has 8 bytes but shape \[3\] × F32 needs 12/,
      ],
      [
        "dtype",
        new Map([["x", { dtype: "F128" as SafetensorsDType, shape: [1], data: new Float32Array(1) }]]),
        /unknown dtype "F128"/,
      ],
      [
        "shape",
        new Map([["x", { dtype: "F32", shape: [-1], data: new Float32Array(1) } as RawTensor]]),
        /shape \[-1\] is not a list of integers/,
      ],
      [
        "bool",
        new Map([["x", { dtype: "BOOL", shape: [2], data: Uint8Array.of(1, 2) } as RawTensor]]),
        /BOOL byte 2 at index 1/,
      ],
      ["reserved", new Map([["__metadata__", T.tensor([1])]]), /"__metadata__" is reserved/],
    ];
    for (const [what, tensors, re] of bad) {
      assert.throws(
        () => serializeSafetensors(tensors),
        (e: SafetensorsError) => e.code === "BAD_ARGUMENT" && re.test(e.message) && e.message.includes("Hint:"),
        what,
      );
    }
    assert.throws(
      () => serializeSafetensors(new Map(), { n: 1 as unknown as string }),
      /metadata\["n"\] is 1, not a string/,
    );
    const gone = T.tensor([1]);
    gone.dispose();
    assert.throws(() => serializeSafetensors(new Map([["g", gone]])), /"g" was disposed/);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("golden Hugging Face files", () => {
  const model = (name: string) => join(REF, name, "model.safetensors");

  it("gpt2: header names, shapes and dtypes match the model's config", async () => {
    const header = readSafetensorsHeader(model("gpt2"));
    const c = JSON.parse(readFileSync(join(REF, "gpt2", "case.json"), "utf8")) as {
      num_parameters: number;
      config_kwargs: { vocab_size: number; n_embd: number; n_layer: number; n_positions: number };
    };
    const { vocab_size: V, n_embd: D, n_layer: L, n_positions: P } = c.config_kwargs;
    assert.deepEqual(header.metadata, { format: "pt" });
    const shapes = Object.fromEntries([...header.tensors].map(([k, v]) => [k, v.shape]));
    assert.deepEqual(shapes["transformer.wte.weight"], [V, D]);
    assert.deepEqual([V, D], [256, 64]);
    assert.deepEqual(shapes["transformer.wpe.weight"], [P, D]);
    assert.deepEqual(shapes["transformer.h.0.attn.c_attn.weight"], [D, 3 * D]); // Conv1D stores [in, out]
    assert.deepEqual(shapes["transformer.h.1.mlp.c_proj.weight"], [4 * D, D]);
    assert.equal(header.tensors.size, 4 + 12 * L);
    assert.ok(!header.tensors.has("lm_head.weight"), "lm_head is tied to wte and not saved");
    assert.ok([...header.tensors.values()].every((t) => t.dtype === "F32"));
    let n = 0;
    for (const t of header.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
    assert.equal(n, c.num_parameters);
    const ts = loadSafetensors(model("gpt2"));
    assert.deepEqual(ts.get("transformer.wte.weight")!.shape, [256, 64]);
    const raw = readSafetensors(model("gpt2"), { names: ["transformer.ln_f.bias"] });
    assert.deepEqual(
      [...ts.get("transformer.ln_f.bias")!.dataSync()],
      [...(raw.tensors.get("transformer.ln_f.bias")!.data as Float32Array)],
    );
  });

  for (const [half, full, dtype, toBits, relErr] of [
    ["gpt2-f16", "gpt2", "F16", toFloat16Bits, 2 ** -11],
    ["llama-bf16", "llama", "BF16", toBfloat16Bits, 2 ** -8],
  ] as const) {
    it(
      `${half}: the upcast weights are ${full}'s rounded to ${dtype} (bit for bit), and writing ` +
        `${full}'s as ${dtype} reproduces the file`,
      async () => {
        const h = readSafetensors(model(half));
        const f = loadSafetensors(model(full));
        const up = loadSafetensors(model(half));
        assert.deepEqual([...h.tensors.keys()].sort(), [...f.keys()].sort());
        for (const [name, r] of h.tensors) {
          assert.equal(r.dtype, dtype, name);
          const ref = f.get(name)!.dataSync();
          const bits = r.data as Uint16Array;
          const u = up.get(name)!.dataSync();
          assert.deepEqual(up.get(name)!.shape, f.get(name)!.shape);
          for (let i = 0; i < ref.length; i++) {
            assert.equal(bits[i], toBits(ref[i]!), `${name}[${i}]`);
            assert.ok(
              Math.abs(u[i]! - ref[i]!) <= relErr * Math.abs(ref[i]!) + 2 ** -24,
              `${name}[${i}]: ${u[i]} vs ${ref[i]}`,
            );
          }
        }
        const out = join(tmp, `${half}.safetensors`);
        writeSafetensors(out, f, { format: "pt" }, { dtype });
        assert.ok((await readFile(out)).equals(await readFile(model(half))), "byte-identical to the Python file");
      },
    );
  }

  it("gpt2: engine tensors written with {format: pt} are byte-identical to the Python file", async () => {
    const ts = loadSafetensors(model("gpt2"));
    const out = join(tmp, "gpt2.safetensors");
    writeSafetensors(out, ts, { format: "pt" });
    assert.ok((await readFile(out)).equals(await readFile(model("gpt2"))));
  });

  it("every golden .safetensors file (models, adapters, expected outputs) re-serializes byte for byte", async () => {
    const files: string[] = [];
    const walk = async (d: string) => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(d, e.name));
        else if (e.name.endsWith(".safetensors")) files.push(join(d, e.name));
      }
    };
    await walk(join(REF, ".."));
    assert.ok(files.length > 50, `found ${files.length} files`);
    for (const file of files) {
      const { metadata, tensors } = readSafetensors(file);
      assert.ok(Buffer.from(serializeSafetensors(tensors, metadata)).equals(await readFile(file)), file);
    }
  });

  it("llama-sharded: the index's 3 shards load completely", async () => {
    const dir = join(REF, "llama-sharded");
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8")) as {
      weight_map: Record<string, string>;
      metadata: { total_size: number };
    };
    const resolved = resolveCheckpointFiles(dir);
    assert.equal(resolved.files.length, 3);
    assert.equal(new Set(Object.values(index.weight_map)).size, 3);
    const ts = loadSafetensorsSharded(dir);
    assert.deepEqual([...ts.keys()].sort(), Object.keys(index.weight_map).sort());
    let n = 0;
    for (const t of ts.values()) n += t.size;
    const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as { num_parameters: number };
    assert.equal(n, c.num_parameters);
    assert.equal(n * 4, index.metadata.total_size);
    assert.deepEqual(ts.get("model.embed_tokens.weight")!.shape, [256, 64]);
    assert.deepEqual(ts.get("model.layers.0.self_attn.k_proj.weight")!.shape, [32, 64]); // 2 kv heads × 16
    const raw = readSafetensorsFolder(dir, { names: ["lm_head.weight"] });
    assert.deepEqual([...raw.tensors.keys()], ["lm_head.weight"]);
    assert.deepEqual(
      [...(raw.tensors.get("lm_head.weight")!.data as Float32Array)],
      [...ts.get("lm_head.weight")!.dataSync()],
    );
    // A single-file folder goes through the same entry point.
    assert.equal(loadSafetensorsSharded(join(REF, "gpt2")).size, 28);
  });

  it("sharded checkpoints: missing shard, index/shard disagreements, bad index, empty folder", async () => {
    const src = join(REF, "llama-sharded");
    const fresh = async (name: string) => {
      const d = join(tmp, name);
      await cp(src, d, { recursive: true });
      return d;
    };
    const expectErr = (dir: string, code: string, re: RegExp) =>
      assert.throws(
        () => loadSafetensorsSharded(dir),
        (e: SafetensorsError) => {
          assert.equal(e.code, code, e.message);
          assert.match(e.message, re);
          assert.match(e.message, /Hint: /);
          return true;
        },
      );
    const idx = (d: string) => join(d, "model.safetensors.index.json");
    const edit = async (d: string, f: (j: { weight_map: Record<string, string> }) => void) => {
      const j = JSON.parse(await readFile(idx(d), "utf8"));
      f(j);
      await writeFile(idx(d), JSON.stringify(j));
    };

    const a = await fresh("missing-shard");
    await unlink(join(a, "model-00002-of-00003.safetensors"));
    expectErr(a, "MISSING_SHARD", /lists shard .*model-00002-of-00003\.safetensors which does not exist/);

    const b = await fresh("phantom-tensor");
    await edit(b, (j) => (j.weight_map["model.extra.weight"] = "model-00001-of-00003.safetensors"));
    expectErr(
      b,
      "INDEX_MISMATCH",
      /model-00001-of-00003\.safetensors: has no tensor "model\.extra\.weight" although the index lists it there/,
    );

    const c = await fresh("unlisted-tensor");
    await edit(c, (j) => delete j.weight_map["lm_head.weight"]);
    expectErr(c, "INDEX_MISMATCH", /holds tensor "lm_head\.weight" but the index does not list it/);

    const d = await fresh("wrong-shard");
    await edit(d, (j) => (j.weight_map["lm_head.weight"] = "model-00001-of-00003.safetensors"));
    expectErr(d, "INDEX_MISMATCH", /index assigns it to .*model-00001-of-00003/);

    const e = await fresh("bad-index");
    await writeFile(idx(e), '{"weight_map": ');
    expectErr(e, "BAD_INDEX", /index\.json: is not valid JSON/);
    await writeFile(idx(e), JSON.stringify({ weight_map: { x: "../../etc/passwd" } }));
    expectErr(e, "BAD_INDEX", /not a file name inside the folder/);

    const f = join(tmp, "empty-folder");
    await mkdir(f);
    expectErr(f, "NO_CHECKPOINT", /has neither model\.safetensors nor model\.safetensors\.index\.json/);
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** A file from a header (object or literal text), padded like the writer does unless told otherwise. */
function fileBytes(
  header: object | string | Buffer,
  data: Uint8Array,
  opts: { length?: bigint; pad?: boolean } = {},
): Buffer {
  let h = Buffer.isBuffer(header)
    ? header
    : Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  if (opts.pad !== false) h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.length ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

describe("corrupted files fail with specific, clear errors", () => {
  const ok = {
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
  };
  const data16 = new Uint8Array(16);
  const good = fileBytes(ok, data16);
  const cases: [string, Buffer, string, RegExp][] = [
    ["empty file", Buffer.alloc(0), "FILE_TOO_SMALL", /file is 0 bytes long, shorter than the 8-byte header length/],
    ["5-byte file", Buffer.alloc(5), "FILE_TOO_SMALL", /file is 5 bytes long/],
    [
      "huge header length",
      fileBytes(ok, data16, { length: 2n ** 40n }),
      "HEADER_TOO_LARGE",
      /header length 1099511627776 is above the 100000000-byte limit/,
    ],
    [
      "git-lfs pointer",
      Buffer.from("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"),
      "HEADER_TOO_LARGE",
      /git lfs pull/,
    ],
    [
      "header length > file",
      fileBytes(ok, data16, { length: 1000n }),
      "HEADER_PAST_EOF",
      /header length 1000 is larger than the \d+ bytes that follow it/,
    ],
    ["bad JSON", fileBytes('{"a": {"dtype": "F32",', data16), "HEADER_NOT_JSON", /header is not valid JSON/],
    [
      "header not an object",
      fileBytes("[1, 2]", new Uint8Array(0)),
      "HEADER_NOT_OBJECT",
      /header does not start with '\{'/,
    ],
    [
      "header not UTF-8",
      fileBytes(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), new Uint8Array(0)),
      "HEADER_NOT_UTF8",
      /header is not valid UTF-8/,
    ],
    [
      "metadata not str→str",
      fileBytes({ __metadata__: { n: 1 }, ...ok }, data16),
      "BAD_METADATA",
      /__metadata__\["n"\] is 1, not a string/,
    ],
    ["entry not an object", fileBytes({ a: [1] }, new Uint8Array(0)), "BAD_ENTRY", /header entry "a" is not an object/],
    [
      "missing dtype",
      fileBytes({ a: { shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      "BAD_ENTRY",
      /tensor "a" has no "dtype"/,
    ],
    [
      "missing shape",
      fileBytes({ a: { dtype: "F32", data_offsets: [0, 8] } }, new Uint8Array(8)),
      "BAD_ENTRY",
      /tensor "a" has no "shape"/,
    ],
    [
      "missing data_offsets",
      fileBytes({ a: { dtype: "F32", shape: [2] } }, new Uint8Array(8)),
      "BAD_ENTRY",
      /tensor "a" has no "data_offsets"/,
    ],
    [
      "dtype not a string",
      fileBytes({ a: { dtype: 4, shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      "BAD_ENTRY",
      /tensor "a": dtype is 4, not a string/,
    ],
    [
      "shape not a list",
      fileBytes({ a: { dtype: "F32", shape: 2, data_offsets: [0, 8] } }, new Uint8Array(8)),
      "BAD_ENTRY",
      /tensor "a": shape is 2, not a list/,
    ],
    [
      "unknown dtype",
      fileBytes({ a: { dtype: "F128", shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      "UNKNOWN_DTYPE",
      /tensor "a" has unknown dtype "F128" \(known: .*BF16/,
    ],
    [
      "negative dim",
      fileBytes({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      "BAD_SHAPE",
      /shape \[-2\] has dimension -2, not an integer ≥ 0/,
    ],
    [
      "fractional dim",
      fileBytes({ a: { dtype: "F32", shape: [1.5, 2], data_offsets: [0, 12] } }, new Uint8Array(12)),
      "BAD_SHAPE",
      /has dimension 1\.5/,
    ],
    [
      "offsets not a pair",
      fileBytes({ a: { dtype: "F32", shape: [2], data_offsets: [0, 4, 8] } }, new Uint8Array(8)),
      "BAD_OFFSETS",
      /data_offsets \[0,4,8\] is not a pair of integers/,
    ],
    [
      "negative offset",
      fileBytes({ a: { dtype: "F32", shape: [2], data_offsets: [-8, 0] } }, new Uint8Array(8)),
      "BAD_OFFSETS",
      /not a pair of integers ≥ 0/,
    ],
    [
      "offsets reversed",
      fileBytes({ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, new Uint8Array(8)),
      "BAD_OFFSETS",
      /end before they begin/,
    ],
    [
      "shape/length mismatch",
      fileBytes({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
      "LENGTH_MISMATCH",
      /tensor "a": data_offsets \[0, 8\] span 8 bytes but shape \[3\] × F32 \(4 bytes\) needs 12/,
    ],
    [
      "overlapping tensors",
      fileBytes(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        new Uint8Array(12),
      ),
      "OVERLAP",
      /tensor "b" \(data_offsets \[4, 12\]\) overlaps tensor "a" which ends at byte 8/,
    ],
    [
      "gap between tensors",
      fileBytes(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [12, 20] },
        },
        new Uint8Array(20),
      ),
      "GAP",
      /bytes \[8, 12\) of the data section belong to no tensor \(gap before "b"\)/,
    ],
    [
      "gap at the start",
      fileBytes({ a: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)),
      "GAP",
      /bytes \[0, 4\) .*gap before "a"/,
    ],
    [
      "truncated data",
      good.subarray(0, good.length - 3),
      "TRUNCATED",
      /file is truncated: the header describes 16 bytes of tensor data but only 13 follow it/,
    ],
    [
      "offsets past the end",
      fileBytes(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [256], data_offsets: [8, 1032] },
        },
        data16,
      ),
      "TRUNCATED",
      /tensor "b" has data_offsets \[8, 1032\]/,
    ],
    [
      "trailing bytes",
      Buffer.concat([good, Buffer.alloc(4)]),
      "TRAILING_BYTES",
      /4 bytes after the last tensor belong to no tensor/,
    ],
  ];

  for (const [what, bytes, code, re] of cases) {
    it(what, async () => {
      const path = join(tmp, `corrupt-${what.replace(/\W+/g, "-")}.safetensors`);
      await writeFile(path, bytes);
      const check = (e: unknown) => {
        assert.ok(e instanceof SafetensorsError, `not a SafetensorsError: ${String(e)}`);
        assert.equal(e.code, code, e.message);
        assert.match(e.message, re);
        assert.ok(e.message.startsWith(`${path}: `), `names the file: ${e.message}`);
        assert.match(e.message, /\. Hint: \S/);
        return true;
      };
      assert.throws(() => readSafetensors(path), check);
      assert.throws(() => loadSafetensors(path), check);
      assert.throws(() => parseSafetensors(bytes, { file: path }), check);
    });
  }

  it("a missing file", async () => {
    const path = join(tmp, "does-not-exist.safetensors");
    assert.throws(
      () => loadSafetensors(path),
      (e: SafetensorsError) =>
        e.code === "CANNOT_OPEN" &&
        e.message.startsWith(`${path}: cannot open the file (ENOENT`) &&
        /Hint: check the path/.test(e.message),
    );
  });

  it("the well-formed base case and a header with no tensors parse", async () => {
    assert.equal(parseSafetensors(good).tensors.size, 2);
    assert.equal(parseSafetensors(fileBytes({}, new Uint8Array(0))).tensors.size, 0);
    assert.equal(MAX_HEADER_SIZE, 100_000_000);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("atomic writes", () => {
  const tmpFiles = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith(".tmp"));

  it("a failure midway through the chunks leaves the previous file intact and no temp file", async () => {
    const dir = join(tmp, "atomic1");
    await mkdir(dir);
    const path = join(dir, "config.json");
    writeFileAtomic(path, '{"old": true}');
    function* failing() {
      yield Buffer.from('{"new": ');
      throw new Error("disk on fire");
    }
    assert.throws(
      () => writeFileAtomic(path, failing()),
      /saving .*config\.json failed: disk on fire\. The previous config\.json \(if any\) is unchanged/,
    );
    assert.equal(await readFile(path, "utf8"), '{"old": true}');
    assert.deepEqual(await tmpFiles(dir), []);
    writeFileAtomic(path, [Buffer.from("a"), Buffer.from("b")]);
    assert.equal(await readFile(path, "utf8"), "ab");
  });

  it("a failing temp-file creation (missing directory) is reported with a hint", async () => {
    assert.throws(
      () => writeFileAtomic(join(tmp, "no", "such", "dir", "x.bin"), new Uint8Array(4)),
      /creating the temporary file .* failed .*Hint: check that the directory .* exists/,
    );
  });

  it("writeSafetensors: a failing rename keeps what was there; bad arguments never create a temp file", async () => {
    const dir = join(tmp, "atomic2");
    await mkdir(dir);
    // The target is a non-empty directory: the temp file is written, then rename() fails.
    const target = join(dir, "model.safetensors");
    await mkdir(target);
    await writeFile(join(target, "keep.txt"), "keep");
    assert.throws(() => writeSafetensors(target, new Map([["x", T.tensor([1, 2, 3])]])), /failed: .*unchanged/);
    assert.equal(await readFile(join(target, "keep.txt"), "utf8"), "keep");
    assert.deepEqual(await tmpFiles(dir), []);

    const path = join(dir, "adapter.safetensors");
    writeSafetensors(path, new Map([["x", T.tensor([1, 2, 3])]]));
    const before = await readFile(path);
    assert.throws(
      () =>
        writeSafetensors(path, new Map([["x", { dtype: "F32", shape: [9], data: new Float32Array(1) } as RawTensor]])),
      /needs 36/,
    );
    assert.ok((await readFile(path)).equals(before));
    assert.deepEqual(await tmpFiles(dir), []);
    writeSafetensors(path, new Map([["x", T.tensor([4, 5])]]));
    assert.deepEqual([...loadSafetensors(path).get("x")!.dataSync()], [4, 5]);
  });
});
