/**
 * Safetensors element types, and 8-bit float decoding. The 16-bit float conversions live in the backend
 * (src/backend/half.ts, the engine stores those formats) and are re-exported here.
 */
import { minifloatToF32Bits, u32View } from "../backend/half.js";

export {
  float16BitsToFloat32,
  bfloat16BitsToFloat32,
  f32BitsToF16Bits,
  f32BitsToBf16Bits,
  float32ToFloat16Bits,
  float32ToBfloat16Bits,
  toFloat16Bits,
  fromFloat16Bits,
  toBfloat16Bits,
  fromBfloat16Bits,
} from "../backend/half.js";

/** Every dtype the safetensors format (v0.4.5) defines. */
export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

/** The typed array a raw tensor of each dtype is held in (half and 8-bit floats as their raw bits). */
export interface RawDataOf {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
  F8_E4M3: Uint8Array;
  F8_E5M2: Uint8Array;
}

/** Any of the typed arrays in RawDataOf. */
export type RawData = RawDataOf[SafetensorsDType];

type TypedArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): RawData;
  new (length: number): RawData;
  readonly BYTES_PER_ELEMENT: number;
};

/** Per-dtype facts: element size, the typed array that holds it, and whether it becomes a float32 tensor. */
export interface DTypeInfo {
  readonly size: number;
  readonly array: TypedArrayCtor;
  readonly kind: "float" | "int" | "bool";
  /**
   * Position in the Rust `Dtype` enum. The Rust writer (and the Python package) lays tensors out by descending
   * rank, then by name, so that each tensor starts at an offset aligned to its element size.
   */
  readonly rank: number;
}

/** Facts about every safetensors dtype, in the Rust enum's order. */
export const DTYPES: Readonly<Record<SafetensorsDType, DTypeInfo>> = {
  BOOL: { size: 1, array: Uint8Array as unknown as TypedArrayCtor, kind: "bool", rank: 0 },
  U8: { size: 1, array: Uint8Array as unknown as TypedArrayCtor, kind: "int", rank: 1 },
  I8: { size: 1, array: Int8Array as unknown as TypedArrayCtor, kind: "int", rank: 2 },
  F8_E5M2: { size: 1, array: Uint8Array as unknown as TypedArrayCtor, kind: "float", rank: 3 },
  F8_E4M3: { size: 1, array: Uint8Array as unknown as TypedArrayCtor, kind: "float", rank: 4 },
  I16: { size: 2, array: Int16Array as unknown as TypedArrayCtor, kind: "int", rank: 5 },
  U16: { size: 2, array: Uint16Array as unknown as TypedArrayCtor, kind: "int", rank: 6 },
  F16: { size: 2, array: Uint16Array as unknown as TypedArrayCtor, kind: "float", rank: 7 },
  BF16: { size: 2, array: Uint16Array as unknown as TypedArrayCtor, kind: "float", rank: 8 },
  I32: { size: 4, array: Int32Array as unknown as TypedArrayCtor, kind: "int", rank: 9 },
  U32: { size: 4, array: Uint32Array as unknown as TypedArrayCtor, kind: "int", rank: 10 },
  F32: { size: 4, array: Float32Array as unknown as TypedArrayCtor, kind: "float", rank: 11 },
  F64: { size: 8, array: Float64Array as unknown as TypedArrayCtor, kind: "float", rank: 12 },
  I64: { size: 8, array: BigInt64Array as unknown as TypedArrayCtor, kind: "int", rank: 13 },
  U64: { size: 8, array: BigUint64Array as unknown as TypedArrayCtor, kind: "int", rank: 14 },
};

/** Whether a string names a safetensors dtype. */
export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === "string" && Object.hasOwn(DTYPES, s);
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding 8-bit floats → float32 bit patterns, one table lookup per element.

const f8Tables = new Map<string, Uint32Array>();
function f8ToF32Table(dtype: "F8_E4M3" | "F8_E5M2"): Uint32Array {
  let t = f8Tables.get(dtype);
  if (!t) {
    t = new Uint32Array(256);
    // E4M3 is PyTorch's float8_e4m3fn: no infinities, only S.1111.111 is NaN.
    for (let b = 0; b < 256; b++)
      t[b] = dtype === "F8_E4M3" ? minifloatToF32Bits(b, 4, 3, true) : minifloatToF32Bits(b, 5, 2, false);
    f8Tables.set(dtype, t);
  }
  return t;
}

/** Decode 8-bit float bit patterns (E4M3FN or E5M2) into float32 (exact). */
export function float8BitsToFloat32(dtype: "F8_E4M3" | "F8_E5M2", src: Uint8Array, dst: Float32Array): void {
  const table = f8ToF32Table(dtype);
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
}
