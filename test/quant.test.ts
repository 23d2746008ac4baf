/**
 * bitsandbytes numerics (src/backend/quant.ts) against the NumPy transcription's golden files
 * (scripts/make_quant_fixtures.py → test/fixtures/quant) bit for bit, and against values worked out by hand.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  FP4_CODE,
  NF4_CODE,
  blockAbsmax,
  dequantize4bit,
  dequantizeInt8Rows,
  dynamicMap,
  quantize4bit,
  quantizeInt8Rows,
  quantizeInt8Weight,
  roundToFloat16,
  type QuantType4,
} from "../src/backend/quant.js";
import { floatInput, readQuantFixture } from "./quant-fixtures.js";

/** Equal bit patterns (so -0 ≠ +0 and NaN = NaN), reporting the first difference. */
function assertSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Float32Array(actual),
    e = new Float32Array(expected);
  const ab = new Uint32Array(a.buffer),
    eb = new Uint32Array(e.buffer);
  for (let i = 0; i < ab.length; i++) {
    if (ab[i] !== eb[i])
      assert.fail(`${what}[${i}]: ${a[i]} (0x${ab[i]!.toString(16)}) vs expected ${e[i]} (0x${eb[i]!.toString(16)})`);
  }
}

describe("quant: code tables", () => {
  it("NF4, FP4 and the dynamic map equal bitsandbytes' (get_4bit_type, create_dynamic_map)", () => {
    const codes = readQuantFixture("codes.safetensors");
    assertSameBits(NF4_CODE, codes.get("nf4")!.data as Float32Array, "nf4");
    assertSameBits(FP4_CODE, codes.get("fp4")!.data as Float32Array, "fp4");
    assertSameBits(dynamicMap(), codes.get("dynamic")!.data as Float32Array, "dynamic");
  });

  it("FP4 codes are sign | 2-bit exponent | 1-bit mantissa over 12, NF4 is sorted from -1 to 1", () => {
    assert.deepEqual(
      Array.from(FP4_CODE.slice(0, 8), (v) => Math.round(v * 12 * 16) / 16),
      [0, 0.0625, 8, 12, 4, 6, 2, 3],
    );
    assert.equal(NF4_CODE[0], -1);
    assert.equal(NF4_CODE[7], 0);
    assert.equal(NF4_CODE[15], 1);
    for (let i = 1; i < 16; i++) assert.ok(NF4_CODE[i]! > NF4_CODE[i - 1]!);
  });
});

for (const type of ["nf4", "fp4"] as QuantType4[]) {
  describe(`quant: ${type} against the golden files`, () => {
    for (const [label, doubleQuant] of [
      ["small", false],
      ["dq", true],
    ] as const) {
      it(`${label}: packed bytes, absmax${doubleQuant ? ", nested absmax, offset" : ""} and dequantised values`, () => {
        const g = readQuantFixture(`${type}_${label}.safetensors`);
        const q = quantize4bit(floatInput(g.get("input")!), type, { doubleQuant });
        assert.deepEqual(Array.from(q.packed), Array.from(g.get("packed")!.data as Uint8Array), "packed");
        if (doubleQuant) {
          assert.deepEqual(
            Array.from(q.nested!.codes),
            Array.from(g.get("absmax")!.data as Uint8Array),
            "absmax codes",
          );
          assertSameBits(q.nested!.absmax, g.get("nested_absmax")!.data as Float32Array, "nested_absmax");
          assertSameBits(q.nested!.code, g.get("nested_quant_map")!.data as Float32Array, "nested_quant_map");
          assertSameBits([q.nested!.offset], g.get("offset")!.data as Float32Array, "offset");
        } else {
          assertSameBits(q.absmax!, g.get("absmax")!.data as Float32Array, "absmax");
        }
        assertSameBits(dequantize4bit(q), g.get("dequantized")!.data as Float32Array, "dequantized");
      });
    }
  });
}

describe("quant: 4-bit by hand", () => {
  // Two blocks of 64: block 0 has absmax 2 (at index 1), block 1 absmax 0.5 (at index 64, negative).
  const x = new Float32Array(128);
  x[0] = 0.5;
  x[1] = 2;
  x[2] = -1;
  x[3] = 0.1;
  x[64] = -0.5;
  x[65] = 0.25;
  x[66] = 0.1;

  it("NF4: scaled values fall between the tree's pivots; high nibble first", () => {
    const q = quantize4bit(x, "nf4");
    assert.deepEqual(Array.from(q.absmax!), [2, 0.5]);
    // block 0: 0.5/2 = 0.25 → code 10 (0.2461, pivots 0.2035 < 0.25 ≤ 0.2920); 2/2 = 1 → 15; -0.5 → 2 (-0.5251); 0.05 → 8 (0.0796)
    assert.equal(q.packed[0], (10 << 4) | 15);
    assert.equal(q.packed[1], (2 << 4) | 8);
    assert.equal(q.packed[2], (7 << 4) | 7); // zeros → code 7 (0.0)
    // block 1: -1 → 0; 0.5 → 13 (0.5626; 0.5017 < 0.5 is false → 12 (0.4407))
    assert.equal(q.packed[32], (0 << 4) | 12);
    // 0.2 → 9 (0.1609; 0.1203 < 0.2 ≤ 0.2035)
    assert.equal(q.packed[33]! >> 4, 9);
    const d = dequantize4bit(q);
    assert.equal(d[0], Math.fround(NF4_CODE[10]! * 2));
    assert.equal(d[1], 2);
    assert.equal(d[64], -0.5);
    assert.equal(d[65], Math.fround(0.44070982933044434 * 0.5));
  });

  it("FP4: the sign is bit 3; 0.25 → 0b0111 (3/12), 1 → 0b0011 (12/12)", () => {
    const q = quantize4bit(x, "fp4");
    // 0.25 → 0b0111 (0.25); 1 → 0b0011; -0.5 → 0b1101 (-6/12); 0.05 → 0b0001 (0.0052, since 0.0026 < 0.05 ≤ 0.0859)
    assert.deepEqual(Array.from(q.packed.slice(0, 2)), [(0b0111 << 4) | 0b0011, (0b1101 << 4) | 0b0001]);
    assert.deepEqual(Array.from(dequantize4bit(q).slice(0, 3)), [0.5, 2, -1]);
  });

  it("a zero block keeps absmax 0 and dequantises to zeros; an odd count pads the last low nibble", () => {
    const q = quantize4bit(
      new Float32Array(65).fill(0).map((_, i) => (i === 64 ? 3 : 0)),
      "nf4",
    );
    assert.deepEqual(Array.from(q.absmax!), [0, 3]);
    assert.equal(q.packed.length, 33);
    assert.equal(q.packed[32], (15 << 4) | 7); // 3/3 → 15, the pad 0 → 7
    assert.deepEqual(Array.from(dequantize4bit(q)).map(Math.abs), [...new Array(64).fill(0), 3]);
  });

  it("double quantisation: absmax − mean through the dynamic map, restored within its 8-bit resolution", () => {
    const absmax = Float32Array.from({ length: 300 }, (_, i) => 0.01 + (i % 17) * 0.003);
    const values = new Float32Array(300 * 64);
    absmax.forEach((a, b) => {
      values[b * 64] = a;
    });
    const q = quantize4bit(values, "nf4", { doubleQuant: true });
    let mean = 0;
    for (const a of absmax) mean += a;
    assert.equal(q.nested!.offset, Math.fround(mean / 300));
    assert.equal(q.nested!.absmax.length, 2); // blocks of 256
    const restored = blockAbsmax(q);
    for (let b = 0; b < 300; b++) assert.ok(Math.abs(restored[b]! - absmax[b]!) < 0.03 * absmax[b]!, `block ${b}`);
  });
});

describe("quant: LLM.int8", () => {
  const g = readQuantFixture("int8.safetensors");
  const w = g.get("weight")!;
  const [rows, cols] = w.shape as [number, number];

  it("weights: float16 rounding, row absmax SCB and round-half-even codes equal the golden CB/SCB", () => {
    const q = quantizeInt8Weight(w.data as Float32Array, rows, cols);
    assert.deepEqual(Array.from(q.data), Array.from(g.get("CB")!.data as Int8Array));
    assertSameBits(q.scb, g.get("SCB")!.data as Float32Array, "SCB");
    const deq = new Float32Array(rows * cols);
    dequantizeInt8Rows(q, 0, rows, deq);
    assertSameBits(deq, g.get("dequantized")!.data as Float32Array, "dequantized");
  });

  it("by hand: [0.5, -1, 0.25] → absmax 1, codes [64 (63.5 ties to even), -127, 32 (31.75)]", () => {
    const q = quantizeInt8Rows(Float32Array.from([0.5, -1, 0.25]), 1, 3);
    assert.deepEqual(Array.from(q.data), [64, -127, 32]);
    assert.deepEqual(Array.from(q.scb), [1]);
  });

  it("the threshold takes outlier columns out of the absmax and zeroes them in every row", () => {
    const q = quantizeInt8Rows(Float32Array.from([1, 7, 0.5, 2, 1, -4]), 2, 3, 6);
    assert.deepEqual(q.outlierCols, [1]);
    assert.deepEqual(Array.from(q.scb), [1, 4]);
    assert.deepEqual(Array.from(q.data), [127, 0, 64, 64, 0, -127]);
  });

  it("float16 rounding: ties to even, subnormals, overflow", () => {
    assert.equal(roundToFloat16(1 + 2 ** -11), 1); // a tie rounds to the even 1
    assert.equal(roundToFloat16(1 + 3 * 2 ** -11), 1 + 2 ** -9);
    assert.equal(roundToFloat16(2 ** -25 * 3), 2 ** -24 * 2); // subnormal step 2^-24, 1.5 ulps → 2
    assert.equal(roundToFloat16(65519), 65504);
    assert.equal(roundToFloat16(65520), Infinity);
    assert.equal(roundToFloat16(0.1), 0.0999755859375);
  });
});
