/**
 * bitsandbytes' quantisation numerics, float32 operation for float32 operation (bitsandbytes main, commit 95f9af3):
 * NF4/FP4 in blocks of 64 (functional.quantize_4bit, CUDA kernel kQuantizeBlockwise with dQuantizeNF4/dQuantizeFP4),
 * double quantisation of the absmax (8-bit dynamic map in blocks of 256 around the mean, dQuantize<0>) and LLM.int8's
 * row-wise int8 (int8_vectorwise_quant / int8_vectorwise_dequant). scripts/make_quant_fixtures.py transcribes the
 * same algorithm in NumPy; test/quant.test.ts checks both agree bit for bit.
 *
 * Values live in plain typed arrays (packed nibbles, absmax, int8 rows): a quantised weight is frozen, so it never
 * needs a pooled storage, and every backend's kernels read the same arrays.
 */

/** The two 4-bit data types of bitsandbytes. */
export type QuantType4 = "nf4" | "fp4";

const f = Math.fround;

/** functional.get_4bit_type: the listed values divided (float32) by their largest magnitude. */
function code4(values: readonly number[]): Float32Array {
  const max = Math.max(...values.map(Math.abs));
  return Float32Array.from(values, (v) => f(f(v) / f(max)));
}

/** The 16 NF4 values, code i at index i. */
export const NF4_CODE = code4([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** The 16 FP4 values (1 sign, 2 exponent, 1 mantissa bit, bias 2), code i at index i; code 8 is +0 (Python's `-0` is the int 0). */
export const FP4_CODE = code4([0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3]);

/** The code values of a 4-bit type. */
export function code4bit(type: QuantType4): Float32Array {
  return type === "nf4" ? NF4_CODE : FP4_CODE;
}

/**
 * torch.linspace(start, end, steps) in float32 as torch computes it on x86 CPUs (AVX2): the scalar loop in double,
 * rounded (lower half from start, upper half from end); the vectorised loop, two 8-lane vectors at a time, rounds
 * each vector's first value that way and adds lane·step in float32.
 */
function torchLinspace(start: number, end: number, steps: number): Float32Array {
  const step = (end - start) / (steps - 1),
    half = steps >> 1,
    width = 8;
  const scalar = (i: number) => f(i < half ? start + step * i : end - step * (steps - i - 1));
  const out = Float32Array.from({ length: steps }, (_, i) => scalar(i));
  for (let idx = 0; idx < steps - (steps % (2 * width)); idx += width) {
    const base = scalar(idx);
    for (let lane = 0; lane < width; lane++) out[idx + lane] = f(base + f(lane * f(step)));
  }
  return out;
}

/** functional.create_dynamic_map(): the signed 8-bit dynamic map of double quantisation (256 sorted values). */
export function dynamicMap(): Float32Array {
  const data: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const b = torchLinspace(0.1, 1, 2 ** i + 1);
    const scale = f(10 ** (i - 6));
    for (let j = 0; j + 1 < b.length; j++) {
      const mean = f(f(b[j]! + b[j + 1]!) / 2);
      data.push(f(scale * mean), f(-scale * mean));
    }
  }
  return Float32Array.from(data.sort((a, b) => a - b));
}

// dQuantizeNF4's pivots, in the order the tree reads them: the float32 literals of csrc/kernels.cu as the compiler rounds
// them, straight from the decimal. Four pivots sit at a float32 tie (midpoints of two code values) where rounding the
// decimal through a double would give the other neighbour, so they are written as their exact float32 values.
const NF4_PIVOTS = Float32Array.from([
  0.03979014977812767, 0.3893125355243683, 0.6427869200706482, 0.8614783883094788 /* 0.8614784181118011f */,
  0.5016633868217468 /* 0.5016634166240692f */, 0.2035212516784668, 0.2920137718319893,
  0.1202552542090416 /* 0.1202552504837513f */, -0.33967943489551544, -0.13791173323988914, -0.045525018125772476,
  -0.23460740596055984, -0.6106329262256622, -0.4599952697753906, -0.8480964303016663 /* -0.8480964004993439f */,
]);

/** dQuantizeNF4: the decision tree of the CUDA kernel (strict comparisons; NaN, from a zero block, gives 0). */
export function quantizeNF4(x: number): number {
  const p = NF4_PIVOTS;
  if (x > p[0]!) {
    if (x > p[1]!) {
      if (x > p[2]!) return x > p[3]! ? 0b1111 : 0b1110;
      return x > p[4]! ? 0b1101 : 0b1100;
    }
    if (x > p[5]!) return x > p[6]! ? 0b1011 : 0b1010;
    return x > p[7]! ? 0b1001 : 0b1000;
  }
  if (x > p[8]!) {
    if (x > p[9]!) return x > p[10]! ? 0b0111 : 0b0110;
    return x > p[11]! ? 0b0101 : 0b0100;
  }
  if (x > p[12]!) return x > p[13]! ? 0b0011 : 0b0010;
  return x > p[14]! ? 0b0001 : 0b0000;
}

const FP4_PIVOTS = Float32Array.from([0.29166667, 0.583333, 0.8333333, 0.4166667, 0.0859375, 0.20833333, 0.00260417]);

/** dQuantizeFP4: sign bit, then the kernel's tree over |x| (pivots are midpoints of the FP4 values / 12). */
export function quantizeFP4(x: number): number {
  const p = FP4_PIVOTS;
  const sign = x < 0 ? 0b1000 : 0;
  const a = Math.abs(x);
  if (a > p[0]!) {
    if (a > p[1]!) return (a > p[2]! ? 0b0011 : 0b0010) + sign;
    return (a > p[3]! ? 0b0101 : 0b0100) + sign;
  }
  if (a > p[4]!) return (a > p[5]! ? 0b0111 : 0b0110) + sign;
  return (a > p[6]! ? 0b0001 : 0b0000) + sign;
}

/** dQuantize<0>: the kernel's 7-step binary search over a sorted 256-value map, then rounding at the midpoint. */
export function quantizeDynamic(code: Float32Array, x: number): number {
  let pivot = 127,
    upperPivot = 255,
    lowerPivot = 0;
  let lower = -1,
    upper = 1;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upperPivot === 255) upper = code[upperPivot]!;
  if (lowerPivot === 0) lower = code[lowerPivot]!;
  if (x > val) return x > f(f(upper + val) * 0.5) ? upperPivot : pivot;
  return x < f(f(lower + val) * 0.5) ? lowerPivot : pivot;
}

/** max |x| per block of `blocksize` (the last block may be partial), as kQuantizeBlockwise reduces it. */
function absmaxPerBlock(values: Float32Array, blocksize: number): Float32Array {
  const blocks = Math.ceil(values.length / blocksize);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    const end = Math.min(values.length, (b + 1) * blocksize);
    for (let i = b * blocksize; i < end; i++) m = Math.max(m, Math.abs(values[i]!));
    absmax[b] = m;
  }
  return absmax;
}

/** The absmax of double quantisation: 8-bit codes of (absmax − offset), their own absmax per block, the map. */
export interface NestedAbsmax {
  readonly codes: Uint8Array;
  readonly absmax: Float32Array;
  readonly code: Float32Array;
  readonly blocksize: number;
  /** The mean of the first-level absmax (float32). */
  readonly offset: number;
}

/** A 4-bit quantised tensor in bitsandbytes' layout. */
export interface Quantized4bit {
  readonly quantType: QuantType4;
  readonly blocksize: number;
  /** Number of values (the product of the original shape). */
  readonly numel: number;
  /** ceil(numel / 2) bytes: value 2j in the high nibble, 2j + 1 in the low nibble. */
  readonly packed: Uint8Array;
  /** The float32 absmax per block, or null when it is double-quantised (`nested`). */
  readonly absmax: Float32Array | null;
  readonly nested: NestedAbsmax | null;
  /** The 16 code values (bitsandbytes' `quant_map`). */
  readonly code: Float32Array;
}

/** functional.quantize_blockwise with the dynamic map: 8-bit codes and absmax per block (kQuantizeBlockwise<General8bit>). */
export function quantizeBlockwise(
  values: Float32Array,
  code: Float32Array,
  blocksize: number,
): { codes: Uint8Array; absmax: Float32Array } {
  const absmax = absmaxPerBlock(values, blocksize);
  const codes = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++)
    codes[i] = quantizeDynamic(code, f(values[i]! * f(1 / absmax[(i / blocksize) | 0]!)));
  return { codes, absmax };
}

/** Double quantisation (compress_statistics): offset = mean(absmax), then 8-bit dynamic codes of absmax − offset in blocks of 256. */
export function nestAbsmax(absmax: Float32Array, blocksize = 256): NestedAbsmax {
  let sum = 0;
  for (const v of absmax) sum += v; // summed in double, rounded once (see the fixture script's docstring)
  const offset = f(sum / absmax.length);
  const centred = Float32Array.from(absmax, (v) => f(v - offset));
  const code = dynamicMap();
  return { ...quantizeBlockwise(centred, code, blocksize), code, blocksize, offset };
}

/** The float32 absmax of block b: stored, or dequantised (code[q]·absmax2 + offset) when nested. */
function absmaxOfBlock(q: Quantized4bit, b: number): number {
  if (q.absmax) return q.absmax[b]!;
  const n = q.nested!;
  return f(f(n.code[n.codes[b]!]! * n.absmax[(b / n.blocksize) | 0]!) + n.offset);
}

/** The float32 absmax of every block. */
export function blockAbsmax(q: Quantized4bit): Float32Array {
  return Float32Array.from({ length: Math.ceil(q.numel / q.blocksize) }, (_, b) => absmaxOfBlock(q, b));
}

/** kQuantizeBlockwise<NF4|FP4>: absmax per block into `absmax`, x·(1/absmax) through the tree, two codes per byte into `packed`. */
export type Quantize4bitKernel = (
  values: Float32Array,
  quantType: QuantType4,
  blocksize: number,
  packed: Uint8Array,
  absmax: Float32Array,
) => void;

/** The reference Quantize4bitKernel (backends may bring a faster one with the same results). */
export const quantize4bitJs: Quantize4bitKernel = (values, quantType, blocksize, packed, absmax) => {
  absmax.set(absmaxPerBlock(values, blocksize));
  const scale = Float32Array.from(absmax, (a) => 1 / a); // 1/0 = Infinity: a zero block quantises NaN, as the kernel does
  const tree = quantType === "nf4" ? quantizeNF4 : quantizeFP4;
  const n = values.length;
  for (let i = 0; i < n; i += 2) {
    const s = scale[(i / blocksize) | 0]!;
    const hi = tree(f(values[i]! * s));
    const lo = tree(i + 1 < n ? f(values[i + 1]! * s) : 0 * s); // an odd tail is padded with 0.0
    packed[i >> 1] = (hi << 4) | lo;
  }
};

/** functional.quantize_4bit: absmax per block, x·(1/absmax) through the NF4/FP4 tree, two codes per byte. */
export function quantize4bit(
  values: Float32Array,
  quantType: QuantType4,
  opts: { blocksize?: number; doubleQuant?: boolean; kernel?: Quantize4bitKernel } = {},
): Quantized4bit {
  const blocksize = opts.blocksize ?? 64;
  if (blocksize % 2 !== 0) throw new Error(`quantize4bit: blocksize must be even, got ${blocksize}`);
  const n = values.length;
  const packed = new Uint8Array((n + 1) >> 1);
  const absmax = new Float32Array(Math.ceil(n / blocksize));
  (opts.kernel ?? quantize4bitJs)(values, quantType, blocksize, packed, absmax);
  const nested = opts.doubleQuant ? nestAbsmax(absmax) : null;
  return { quantType, blocksize, numel: n, packed, absmax: nested ? null : absmax, nested, code: code4bit(quantType) };
}

/** Dequantise values [start, start + count) of a 4-bit tensor into out[outOffset…]: code[q]·absmax in float32. */
export function dequantize4bitRange(
  q: Quantized4bit,
  start: number,
  count: number,
  out: Float32Array,
  outOffset = 0,
): void {
  const { packed, code, blocksize } = q;
  let block = -1,
    absmax = 0;
  for (let i = start, o = outOffset; i < start + count; i++, o++) {
    if (((i / blocksize) | 0) !== block) {
      block = (i / blocksize) | 0;
      absmax = absmaxOfBlock(q, block);
    }
    const byte = packed[i >> 1]!;
    out[o] = f(code[(i & 1) === 0 ? byte >> 4 : byte & 0x0f]! * absmax);
  }
}

/** functional.dequantize_4bit: every value, float32. */
export function dequantize4bit(q: Quantized4bit): Float32Array {
  const out = new Float32Array(q.numel);
  dequantize4bitRange(q, 0, q.numel, out);
  return out;
}

/** LLM.int8 weights: int8 rows and their absmax (bitsandbytes' `CB` and `SCB`). */
export interface QuantizedInt8 {
  readonly rows: number;
  readonly cols: number;
  readonly data: Int8Array;
  readonly scb: Float32Array;
}

/** Round to the nearest integer, ties to even (torch.round). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** float32 → float16 → float32, round to nearest even (what `tensor.half()` keeps of a value). */
export function roundToFloat16(x: number): number {
  const a = Math.abs(x);
  if (!(a < 65520)) return Number.isNaN(x) ? x : x > 0 ? Infinity : -Infinity;
  const exp = Math.max(Math.floor(Math.log2(a || 1)), -14);
  let ulp = 2 ** (exp - 10);
  if (a / ulp >= 2048)
    ulp *= 2; // Math.log2 can be off by one next to a power of two
  else if (exp > -14 && a / ulp < 1024) ulp /= 2;
  return roundHalfEven(x / ulp) * ulp;
}

/**
 * int8_vectorwise_quant of a float32 [rows, cols] matrix: per row, absmax over |x| < threshold (all values when
 * threshold is 0), q = round(x·(127/absmax)); entries of outlier columns (any |x| ≥ threshold) are 0 when rows > 1,
 * the outliers themselves always. Returns the outlier columns too. A zero row quantises to zeros.
 */
export function quantizeInt8Rows(
  values: Float32Array,
  rows: number,
  cols: number,
  threshold = 0,
): QuantizedInt8 & { outlierCols: number[] } {
  const isOutlier = (v: number) => threshold > 0 && Math.abs(v) >= threshold;
  const outlierCol = new Uint8Array(cols);
  const scb = new Float32Array(rows);
  const data = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c]!;
      if (isOutlier(v)) outlierCol[c] = 1;
      else m = Math.max(m, Math.abs(v));
    }
    scb[r] = m;
    const scale = f(127 / m);
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c]!;
      const q = isOutlier(v) ? 0 : roundHalfEven(f(v * scale));
      data[r * cols + c] = Number.isFinite(q) ? q : 0;
    }
  }
  const outlierCols: number[] = [];
  outlierCol.forEach((o, c) => {
    o && outlierCols.push(c);
  });
  if (rows > 1) for (const c of outlierCols) for (let r = 0; r < rows; r++) data[r * cols + c] = 0;
  return { rows, cols, data, scb, outlierCols };
}

/** Int8Params._quantize: the weight rounded to float16, then row-wise int8 (no threshold). */
export function quantizeInt8Weight(values: Float32Array, rows: number, cols: number): QuantizedInt8 {
  const { data, scb } = quantizeInt8Rows(Float32Array.from(values, roundToFloat16), rows, cols);
  return { rows, cols, data, scb };
}

/** int8_vectorwise_dequant's 1/127 and the int8 product's 1/127² (MM_DEQUANT_CONST), as float32. */
export const INV_127 = f(7.874015718698502e-3);
export const MM_DEQUANT = f(6.200012e-5);

/** Dequantise rows [row0, row0 + count) of an int8 weight into out: (q·SCB)·(1/127) in float32. */
export function dequantizeInt8Rows(
  w: QuantizedInt8,
  row0: number,
  count: number,
  out: Float32Array,
  outOffset = 0,
): void {
  for (let r = row0, o = outOffset; r < row0 + count; r++) {
    const s = w.scb[r]!;
    for (let c = 0; c < w.cols; c++, o++) out[o] = f(f(w.data[r * w.cols + c]! * s) * INV_127);
  }
}

/** A frozen quantised weight [n, k] (PyTorch's Linear layout: n outputs, k inputs) as the quantised products read it. */
/** bnb_4bit_compute_dtype: the dtype the input and the dequantised 4-bit weight are rounded to before the product. */
export type ComputeDType = "float32" | "bfloat16" | "float16";

export type QuantizedMatrix =
  | {
      readonly format: "4bit";
      readonly n: number;
      readonly k: number;
      readonly q: Quantized4bit;
      /** Products see x and W rounded to this dtype, summed in float32 (default float32: no rounding). */
      readonly compute?: ComputeDType;
    }
  | { readonly format: "int8"; readonly n: number; readonly k: number; readonly w: QuantizedInt8 };

/** Dequantise rows [r0, r1) of a quantised matrix into out (row-major, (r1 − r0)·k values). */
export function dequantizeRows(w: QuantizedMatrix, r0: number, r1: number, out: Float32Array): void {
  if (w.format === "4bit") dequantize4bitRange(w.q, r0 * w.k, (r1 - r0) * w.k, out);
  else dequantizeInt8Rows(w.w, r0, r1 - r0, out);
}

/** Rows of W dequantised at once by the quantised products: a panel of about 256 KiB, which stays in cache. */
export function panelRows(k: number): number {
  return Math.max(1, Math.floor(65536 / Math.max(k, 1)));
}
