/**
 * Exact conversions between float32 and the 16-bit float formats the engine stores (IEEE half and bfloat16).
 *
 * Conversions work on bit patterns (Uint32 views of float32 arrays) rather than on JS numbers, so they are
 * exact and keep NaN payloads where PyTorch does: upcasting f16/bf16 to float32 is exact for every value, and
 * downcasting rounds to nearest, ties to even, with NaN written as PyTorch writes it (f16: sign | 0x7E00,
 * bf16: 0x7FC0), so values we store are bit-identical to `tensor.half()` / `tensor.bfloat16()` output.
 */

// ---------------------------------------------------------------------------------------------------------------
// Decoding: 16-bit floats → float32 bit patterns. A table makes f16 one lookup per element.

/** float32 bit pattern of a minifloat with `e` exponent bits and `m` mantissa bits (IEEE-style unless fn). */
export function minifloatToF32Bits(bits: number, e: number, m: number, finiteOnly: boolean): number {
  const sign = (bits >>> (e + m)) & 1;
  const exp = (bits >>> m) & ((1 << e) - 1);
  const mant = bits & ((1 << m) - 1);
  const bias = (1 << (e - 1)) - 1;
  const s = sign << 31;
  if (finiteOnly ? exp === (1 << e) - 1 && mant === (1 << m) - 1 : exp === (1 << e) - 1) {
    if (!finiteOnly && mant === 0) return (s | 0x7f800000) >>> 0; // ±inf
    // NaN: keep the payload's top bits and force quiet, as a hardware upcast does.
    return (s | 0x7fc00000 | (mant << (23 - m))) >>> 0;
  }
  if (exp === 0) {
    if (mant === 0) return s >>> 0;
    // Subnormal minifloat: normalise (every such value is a normal float32).
    let p = 0;
    let mm = mant;
    while ((mm & (1 << m)) === 0) {
      mm <<= 1;
      p++;
    }
    const e32 = 1 - bias - p + 127;
    return (s | (e32 << 23) | ((mm & ((1 << m) - 1)) << (23 - m))) >>> 0;
  }
  return (s | ((exp - bias + 127) << 23) | (mant << (23 - m))) >>> 0;
}

let f16Table: Uint32Array | null = null;
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = minifloatToF32Bits(h, 5, 10, false);
  }
  return f16Table;
}

/** The bits of a float32 array, as a Uint32Array on the same memory. */
export function u32View(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Decode IEEE half-precision bit patterns into float32 (exact; dst.length ≥ src.length). */
export function float16BitsToFloat32(src: Uint16Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
}

/** Decode bfloat16 bit patterns into float32 (exact: bfloat16 is the top half of a float32). */
export function bfloat16BitsToFloat32(src: Uint16Array, dst: Float32Array): void {
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding: float32 → 16-bit floats, round to nearest, ties to even (what torch's .half()/.bfloat16() do).

/** IEEE half bits of a float32 bit pattern, rounded to nearest even; NaN → sign | 0x7E00 like PyTorch. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;
  // 65520 is halfway between the largest half (65504) and 65536: ties-to-even rounds it up to infinity.
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs < 0x38800000) {
    // Below 2^-14 the half is subnormal: its integer mantissa is value · 2^24, rounded half to even.
    // Values up to 2^-25 (exactly half the smallest subnormal, a tie) round to ±0.
    if (abs <= 0x33000000) return sign;
    const e = abs >>> 23;
    const m = (abs & 0x7fffff) | 0x800000;
    const shift = 126 - e; // value = m · 2^(e − 150), so value · 2^24 = m / 2^(126 − e); shift ∈ [14, 24]
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++;
    return sign | q; // q = 1024 is the smallest normal's encoding, which is the right result
  }
  // Normal: re-bias the exponent (127 → 15) and drop 13 mantissa bits; a carry rolls into the exponent.
  const r = abs - 0x38000000;
  let q = r >>> 13;
  const rem = r & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q++;
  return sign | q;
}

/** bfloat16 bits of a float32 bit pattern, rounded to nearest even; NaN → 0x7FC0 like PyTorch. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  // Adding 0x7FFF plus the lowest kept bit rounds half to even; the sum stays below 2^32 for non-NaN inputs.
  return ((x >>> 0) + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

/** Encode float32 values as IEEE half bits (round to nearest even; dst.length ≥ src.length). */
export function float32ToFloat16Bits(src: Float32Array, dst: Uint16Array): void {
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToF16Bits(bits[i]!);
}

/** Encode float32 values as bfloat16 bits (round to nearest even; dst.length ≥ src.length). */
export function float32ToBfloat16Bits(src: Float32Array, dst: Uint16Array): void {
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToBf16Bits(bits[i]!);
}

/** Round float32 values in place to the nearest bfloat16 or float16 value (ties to even), keeping them float32. */
export function roundToHalfInPlace(values: Float32Array, dtype: "bfloat16" | "float16"): void {
  const bits = u32View(values);
  if (dtype === "bfloat16") {
    for (let i = 0; i < bits.length; i++) bits[i] = f32BitsToBf16Bits(bits[i]!) << 16;
    return;
  }
  const table = f16ToF32Table();
  for (let i = 0; i < bits.length; i++) bits[i] = table[f32BitsToF16Bits(bits[i]!)]!;
}

const scalarF32 = new Float32Array(1);
const scalarU32 = new Uint32Array(scalarF32.buffer);

/** The half-precision bits of a number (first rounded to float32, the engine's type). */
export function toFloat16Bits(x: number): number {
  scalarF32[0] = x;
  return f32BitsToF16Bits(scalarU32[0]!);
}

/** The value of IEEE half bits, as a number. */
export function fromFloat16Bits(h: number): number {
  scalarU32[0] = f16ToF32Table()[h & 0xffff]!;
  return scalarF32[0]!;
}

/** The bfloat16 bits of a number (first rounded to float32, the engine's type). */
export function toBfloat16Bits(x: number): number {
  scalarF32[0] = x;
  return f32BitsToBf16Bits(scalarU32[0]!);
}

/** The value of bfloat16 bits, as a number. */
export function fromBfloat16Bits(b: number): number {
  scalarU32[0] = (b & 0xffff) << 16;
  return scalarF32[0]!;
}
