/** An open safetensors file: tensors read on demand into their final buffers, converting in chunks. */
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import type { DType, Storage } from "../../backend/backend.js";
import { isHalf } from "../../backend/backend.js";
import { type Tensor, empty } from "../../tensor/index.js";
import {
  DTYPES,
  float16BitsToFloat32,
  bfloat16BitsToFloat32,
  float8BitsToFloat32,
  float32ToFloat16Bits,
  float32ToBfloat16Bits,
} from "../dtypes.js";
import type { RawData, SafetensorsDType } from "../dtypes.js";
import { CheckpointError } from "../../errors.js";
import { type RawTensor, SafetensorsError, type SafetensorsHeader, type TensorInfo, checkHost } from "./format.js";
import { REDOWNLOAD, headerLength, parseHeader, q, unknownNames } from "./validate.js";

// Conversions (F16 → float32 and the like) stream through a scratch buffer this big, so converting never
// needs the whole raw tensor in memory next to its float32 copy.
export const CHUNK_BYTES = 4 << 20;

/** An open safetensors file: validated header, tensors read on demand (like Python's safe_open). */
export class SafetensorsFile {
  private constructor(
    /** The path, as given (used in error messages). */
    readonly path: string,
    private fd: number | null,
    /** The validated header. */
    readonly header: SafetensorsHeader,
  ) {}

  /** Open and validate a file; nothing but the header is read. */
  static open(path: string): SafetensorsFile {
    checkHost(path);
    if (existsSync(path) && statSync(path).isDirectory()) {
      throw new CheckpointError(
        `${path} is a directory, not a safetensors file`,
        "pass the .safetensors file itself, or load the folder with loadSafetensorsSharded(dir) / fromPretrained(dir)",
      );
    }
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new SafetensorsError(
        "CANNOT_OPEN",
        path,
        `cannot open the file (${(err as Error).message})`,
        code === "ENOENT"
          ? "check the path; for a model folder use loadSafetensorsSharded(dir), which also finds sharded checkpoints"
          : "check the path and its permissions",
      );
    }
    try {
      const size = fstatSync(fd).size;
      const prefix = new Uint8Array(8);
      if (size >= 8) readExactly(path, fd, prefix, 0);
      const len = headerLength(path, size, prefix);
      const bytes = new Uint8Array(len);
      readExactly(path, fd, bytes, 8);
      return new SafetensorsFile(path, fd, parseHeader(path, size, len, bytes));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** `__metadata__`, or null. */
  get metadata(): Record<string, string> | null {
    return this.header.metadata;
  }

  /** Tensor names in file order. */
  keys(): string[] {
    return [...this.header.tensors.keys()];
  }

  /** The header entry of a tensor (throws a clear error for an unknown name). */
  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (!info) unknownNames(this.path, [name], this.header.tensors);
    return info!;
  }

  /** One tensor as stored: its own buffer, typed array of the file's dtype (zero copies beyond the read). */
  readRaw(name: string): RawTensor {
    const info = this.info(name);
    const { size, array } = DTYPES[info.dtype];
    const [begin, end] = info.dataOffsets;
    // A fresh ArrayBuffer per tensor is always aligned for its typed array, and frees independently.
    const data = new array((end - begin) / size);
    readExactly(this.path, this.handle(), new Uint8Array(data.buffer, 0, end - begin), this.header.dataStart + begin);
    return { dtype: info.dtype, shape: info.shape, data };
  }

  /**
   * One tensor as an engine tensor, read in place: float dtypes become float32 (or opts.floatDtype), integers and
   * BOOL int32 (U8 stays uint8 with opts.keepBytes).
   */
  readTensor(name: string, opts: TensorReadOptions = {}): Tensor {
    const info = this.info(name);
    const t = empty(info.shape, engineDType(info.dtype, opts));
    try {
      this.fill(name, info, t.storage);
      return t;
    } catch (err) {
      t.dispose();
      throw err;
    }
  }

  /** Read a tensor's bytes into `out` (the engine storage), converting chunk by chunk where dtypes differ. */
  private fill(name: string, info: TensorInfo, storage: Storage): void {
    const { size } = DTYPES[info.dtype];
    const start = this.header.dataStart + info.dataOffsets[0];
    const n = (info.dataOffsets[1] - info.dataOffsets[0]) / size;
    const out = storage.data;
    if (STORED_AS[info.dtype] === storage.dtype) {
      // Same element type as the engine: read the bytes directly into the tensor's storage.
      readExactly(this.path, this.handle(), new Uint8Array(out.buffer, out.byteOffset, n * size), start);
      return;
    }
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / size));
    const scratch = new Uint8Array(Math.min(n, perChunk) * size);
    for (let i = 0; i < n; i += perChunk) {
      const m = Math.min(perChunk, n - i);
      const bytes = scratch.subarray(0, m * size);
      readExactly(this.path, this.handle(), bytes, start + i * size);
      decodeInto(this.path, name, info.dtype, bytes, storage, i);
    }
  }

  private handle(): number {
    if (this.fd === null)
      throw new SafetensorsError(
        "BAD_ARGUMENT",
        this.path,
        "the file was closed",
        "read tensors before calling close()",
      );
    return this.fd;
  }

  /** Close the file (idempotent). */
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function readExactly(file: string, fd: number, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    // Node's read() is limited to 2 GiB per call; loop for huge tensors and for short reads.
    const want = Math.min(into.length - done, 1 << 30);
    const bytesRead = readSync(fd, into, done, want, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(
        "TRUNCATED",
        file,
        `unexpected end of file at byte ${position + done} (the file shrank while being read?)`,
        REDOWNLOAD,
      );
    }
    done += bytesRead;
  }
}

/** Typed view of `bytes` as dtype's array (bytes is a fresh, aligned scratch buffer or an aligned view). */
export function typed(dtype: SafetensorsDType, bytes: Uint8Array): RawData {
  const { size, array } = DTYPES[dtype];
  // Typed arrays need element-aligned offsets; copy the rare misaligned input instead of failing.
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return new array(b.buffer, b.byteOffset, b.length / size);
}

const INT32_MAX = 2 ** 31 - 1;

/**
 * Convert raw values of `dtype` into a storage from element `at` on: a plain copy where the engine dtype holds the
 * same bits, 16-bit targets rounded through float32, everything else as convertInto converts it.
 */
export function decodeInto(
  file: string,
  name: string,
  dtype: SafetensorsDType,
  bytes: Uint8Array,
  storage: Storage,
  at: number,
): void {
  const src = typed(dtype, bytes);
  if (STORED_AS[dtype] === storage.dtype) return storage.data.set(src as ArrayLike<number>, at);
  if (!isHalf(storage.dtype))
    return convertInto(file, name, dtype, bytes, storage.data as Float32Array | Int32Array, at);
  const values = new Float32Array(src.length);
  convertInto(file, name, dtype, bytes, values, 0);
  const round = storage.dtype === "bfloat16" ? float32ToBfloat16Bits : float32ToFloat16Bits;
  round(values, (storage.data as Uint16Array).subarray(at, at + src.length));
}

/** Convert raw values of `dtype` into engine values at out[at…] (float32 or int32). */
function convertInto(
  file: string,
  name: string,
  dtype: SafetensorsDType,
  bytes: Uint8Array,
  out: Float32Array | Int32Array,
  at: number,
): void {
  const src = typed(dtype, bytes);
  const dst = out.subarray(at, at + src.length);
  switch (dtype) {
    case "F16":
      float16BitsToFloat32(src as Uint16Array, dst as Float32Array);
      return;
    case "BF16":
      bfloat16BitsToFloat32(src as Uint16Array, dst as Float32Array);
      return;
    case "F8_E4M3":
    case "F8_E5M2":
      float8BitsToFloat32(dtype, src as Uint8Array, dst as Float32Array);
      return;
    case "BOOL": {
      // Python/numpy read any non-zero byte as True; normalise to 1 so the tensor holds 0/1 only.
      const b = src as Uint8Array;
      for (let i = 0; i < b.length; i++) dst[i] = b[i] !== 0 ? 1 : 0;
      return;
    }
    case "I64":
    case "U64": {
      // Check the 64-bit values as (low, high) int32 pairs instead of BigInts (much faster): a value fits in
      // int32 exactly when its high word is the sign extension of its low word (and, unsigned, is zero).
      const w = new Int32Array(src.buffer, src.byteOffset, src.length * 2);
      const unsigned = dtype === "U64";
      for (let i = 0; i < src.length; i++) {
        const lo = w[2 * i]!,
          hi = w[2 * i + 1]!;
        if (hi !== lo >> 31 || (unsigned && hi !== 0))
          throw outOfRange(file, name, dtype, at + i, (src as BigInt64Array | BigUint64Array)[i]!);
        dst[i] = lo;
      }
      return;
    }
    case "U32": {
      const b = src as Uint32Array;
      for (let i = 0; i < b.length; i++) {
        if (b[i]! > INT32_MAX) throw outOfRange(file, name, dtype, at + i, b[i]!);
        dst[i] = b[i]!;
      }
      return;
    }
    default:
      // F64 (rounded to nearest float32 by the typed-array conversion), F32, I32, I16, U16, I8, U8: exact or
      // value-preserving element conversions.
      dst.set(src as ArrayLike<number>);
  }
}

function outOfRange(
  file: string,
  name: string,
  dtype: SafetensorsDType,
  index: number,
  v: bigint | number,
): SafetensorsError {
  return new SafetensorsError(
    "VALUE_OUT_OF_RANGE",
    file,
    `tensor ${q(name)} (${dtype}) holds ${v} at flat index ${index}, outside the int32 range of engine tensors`,
    "peft-ts integer tensors are int32; read it with readSafetensors() to get the raw 64-bit values",
  );
}

/** How stored dtypes map to engine dtypes. */
export interface TensorReadOptions {
  /**
   * Engine dtype of float tensors: "float32" (default), "bfloat16" or "float16" (rounded to nearest even), or "keep":
   * F16 and BF16 stay as stored, other float dtypes become float32.
   */
  floatDtype?: "float32" | "bfloat16" | "float16" | "keep";
  /** Keep U8 tensors as uint8 bytes (packed quantised weights) instead of int32 values. */
  keepBytes?: boolean;
}

/** The engine dtype whose elements have exactly the bits of a stored dtype. */
export const STORED_AS: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  I32: "int32",
  BF16: "bfloat16",
  F16: "float16",
  U8: "uint8",
};

/** The engine dtype a stored tensor of `dtype` is read into. */
export function engineDType(dtype: SafetensorsDType, opts: TensorReadOptions): DType {
  if (DTYPES[dtype].kind !== "float") return dtype === "U8" && opts.keepBytes ? "uint8" : "int32";
  const want = opts.floatDtype ?? "float32";
  if (want !== "keep") return want;
  return dtype === "BF16" ? "bfloat16" : dtype === "F16" ? "float16" : "float32";
}
