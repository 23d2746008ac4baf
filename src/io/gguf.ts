/**
 * GGUF (version 3), the file format of llama.cpp/ggml: a header, typed key/value metadata, tensor descriptions and
 * the tensors' data, each aligned to `general.alignment` (32) bytes. Layout facts from ggml's docs/gguf.md.
 * Tensor shapes are given here in PyTorch order (outermost first) and stored reversed, as ggml's `ne` (innermost first).
 */
import { writeFileAtomic } from "./atomic.js";
import { float32ToBfloat16Bits, float32ToFloat16Bits, fromFloat16Bits, toFloat16Bits } from "./dtypes.js";

/** GGUF metadata value types (gguf_type). */
const VALUE_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** A metadata value with its GGUF type. */
export type GgufValue =
  | { type: "uint32" | "int32" | "float32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "string[]"; value: readonly string[] }
  | { type: "int32[]" | "float32[]"; value: ArrayLike<number> };

/** ggml tensor types peft-ts writes (ggml_type values). */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
/** A tensor type peft-ts writes. */
export type GgmlType = keyof typeof GGML_TYPE;

/** A tensor to write: float32 values in row-major PyTorch order, stored as `type`. */
export interface GgufTensor {
  name: string;
  shape: readonly number[];
  type: GgmlType;
  data: Float32Array;
}

/** Q8_0 packs 32 values into a float16 scale and 32 int8s. */
export const Q8_0_BLOCK = 32;
const ALIGNMENT = 32;
const MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32

/** Growable little-endian byte sink. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // reserve() may replace the buffer, so it runs before the buffer is read.
  u8(v: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, v);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, v, true);
  }
  u64(v: number): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  padTo(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  const array = (elementType: number, n: number, each: (i: number) => void) => {
    w.u32(VALUE_TYPE.ARRAY);
    w.u32(elementType);
    w.u64(n);
    for (let i = 0; i < n; i++) each(i);
  };
  switch (v.type) {
    case "uint32":
      w.u32(VALUE_TYPE.UINT32);
      w.u32(v.value);
      break;
    case "int32":
      w.u32(VALUE_TYPE.INT32);
      w.i32(v.value);
      break;
    case "float32":
      w.u32(VALUE_TYPE.FLOAT32);
      w.f32(v.value);
      break;
    case "bool":
      w.u32(VALUE_TYPE.BOOL);
      w.u8(v.value ? 1 : 0);
      break;
    case "string":
      w.u32(VALUE_TYPE.STRING);
      w.string(v.value);
      break;
    case "string[]":
      array(VALUE_TYPE.STRING, v.value.length, (i) => w.string(v.value[i]!));
      break;
    case "int32[]":
      array(VALUE_TYPE.INT32, v.value.length, (i) => w.i32(v.value[i]!));
      break;
    case "float32[]":
      array(VALUE_TYPE.FLOAT32, v.value.length, (i) => w.f32(v.value[i]!));
      break;
  }
}

/**
 * Q8_0 as ggml's reference quantiser (quantize_row_q8_0_ref) computes it: per block of 32, d = max|x| / 127 stored
 * as float16, q = round-half-away(x / d).
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % Q8_0_BLOCK !== 0)
    throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values per row, got ${values.length}`);
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * (2 + Q8_0_BLOCK));
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(values[b * Q8_0_BLOCK + i]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const at = b * (2 + Q8_0_BLOCK);
    view.setUint16(at, toFloat16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const x = Math.fround(values[b * Q8_0_BLOCK + i]! * id);
      view.setInt8(at + 2 + i, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}

/** The inverse of quantizeQ8_0 (scale × int8), for checks and readers. */
export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  const blocks = bytes.length / (2 + Q8_0_BLOCK);
  const out = new Float32Array(blocks * Q8_0_BLOCK);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = b * (2 + Q8_0_BLOCK);
    const d = fromFloat16Bits(view.getUint16(at, true));
    for (let i = 0; i < Q8_0_BLOCK; i++) out[b * Q8_0_BLOCK + i] = d * view.getInt8(at + 2 + i);
  }
  return out;
}

/** A tensor's bytes in its GGUF type. */
function encodeTensor(t: GgufTensor): Uint8Array {
  const size = t.shape.reduce((a, b) => a * b, 1);
  if (size !== t.data.length)
    throw new Error(
      `GGUF tensor ${t.name}: shape [${t.shape.join(", ")}] holds ${size} values, data has ${t.data.length}`,
    );
  switch (t.type) {
    case "F32":
      return new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
    case "F16":
    case "BF16": {
      const bits = new Uint16Array(t.data.length);
      (t.type === "F16" ? float32ToFloat16Bits : float32ToBfloat16Bits)(t.data, bits);
      return new Uint8Array(bits.buffer);
    }
    case "Q8_0":
      if (t.shape[t.shape.length - 1]! % Q8_0_BLOCK !== 0)
        throw new Error(`GGUF tensor ${t.name}: Q8_0 rows must hold a multiple of ${Q8_0_BLOCK} values`);
      return quantizeQ8_0(t.data);
  }
}

/** The bytes of a GGUF file holding `metadata` (in order) and `tensors`. */
export function serializeGguf(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[]): Uint8Array {
  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, value] of metadata) {
    w.string(key);
    writeValue(w, value);
  }
  const encoded = tensors.map(encodeTensor);
  let offset = 0;
  tensors.forEach((t, i) => {
    w.string(t.name);
    w.u32(t.shape.length);
    for (const dim of [...t.shape].reverse()) w.u64(dim);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offset += Math.ceil(encoded[i]!.length / ALIGNMENT) * ALIGNMENT;
  });
  w.padTo(ALIGNMENT);
  for (const bytes of encoded) {
    w.bytes(bytes);
    w.padTo(ALIGNMENT);
  }
  return w.result();
}

/** Write a GGUF file atomically. */
export function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensor[],
): void {
  writeFileAtomic(path, serializeGguf(metadata, tensors));
}

/** A tensor description read back from a GGUF file (shape in PyTorch order). */
export interface GgufTensorInfo {
  shape: number[];
  type: number;
  /** The tensor's bytes. */
  bytes: Uint8Array;
}

/** Read a GGUF file's metadata (values as plain JS values) and tensors; for inspection and tests. */
export function parseGguf(bytes: Uint8Array): { metadata: Map<string, unknown>; tensors: Map<string, GgufTensorInfo> } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const u32 = () => {
    const v = view.getUint32(at, true);
    at += 4;
    return v;
  };
  const u64 = () => {
    const v = Number(view.getBigUint64(at, true));
    at += 8;
    return v;
  };
  const str = () => {
    const n = u64();
    const s = new TextDecoder().decode(bytes.subarray(at, at + n));
    at += n;
    return s;
  };
  const scalar = (type: number): unknown => {
    switch (type) {
      case VALUE_TYPE.UINT8:
        return view.getUint8(at++);
      case VALUE_TYPE.INT8:
        return view.getInt8(at++);
      case VALUE_TYPE.UINT16: {
        const v = view.getUint16(at, true);
        at += 2;
        return v;
      }
      case VALUE_TYPE.INT16: {
        const v = view.getInt16(at, true);
        at += 2;
        return v;
      }
      case VALUE_TYPE.UINT32:
        return u32();
      case VALUE_TYPE.INT32: {
        const v = view.getInt32(at, true);
        at += 4;
        return v;
      }
      case VALUE_TYPE.FLOAT32: {
        const v = view.getFloat32(at, true);
        at += 4;
        return v;
      }
      case VALUE_TYPE.BOOL:
        return view.getUint8(at++) !== 0;
      case VALUE_TYPE.STRING:
        return str();
      case VALUE_TYPE.UINT64:
        return u64();
      case VALUE_TYPE.INT64: {
        const v = Number(view.getBigInt64(at, true));
        at += 8;
        return v;
      }
      case VALUE_TYPE.FLOAT64: {
        const v = view.getFloat64(at, true);
        at += 8;
        return v;
      }
      case VALUE_TYPE.ARRAY: {
        const et = u32();
        const n = u64();
        return Array.from({ length: n }, () => scalar(et));
      }
      default:
        throw new Error(`GGUF: unknown value type ${type} at byte ${at}`);
    }
  };
  if (u32() !== MAGIC) throw new Error("not a GGUF file (bad magic)");
  const version = u32();
  if (version !== 3) throw new Error(`GGUF version ${version} is not supported (only 3)`);
  const nTensors = u64();
  const nKv = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    metadata.set(key, scalar(u32()));
  }
  const infos: [string, number[], number, number][] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, u64).reverse();
    infos.push([name, dims, u32(), u64()]);
  }
  const alignment = Number(metadata.get("general.alignment") ?? ALIGNMENT);
  const dataStart = Math.ceil(at / alignment) * alignment;
  const tensors = new Map<string, GgufTensorInfo>();
  infos.forEach(([name, shape, type, offset], i) => {
    const end = i + 1 < infos.length ? infos[i + 1]![3] : bytes.length - dataStart;
    tensors.set(name, { shape, type, bytes: bytes.subarray(dataStart + offset, dataStart + end) });
  });
  return { metadata, tensors };
}
