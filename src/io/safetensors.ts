/**
 * The safetensors format, as Hugging Face defines it:
 *
 *   8 bytes   little-endian u64 N, the header length
 *   N bytes   UTF-8 JSON object {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}, …},
 *             padded with spaces to a multiple of 8 so the data section starts 8-byte aligned
 *   rest      tensor bytes, little-endian, row-major; offsets are relative to the data section, and the tensors
 *             must cover it exactly (no gaps, no overlaps, nothing after the last one)
 *
 * Reading validates the whole header before any value is trusted (every problem is a SafetensorsError naming the
 * file, the problem and a hint) and reads each tensor straight into its final buffer, so a large checkpoint is
 * never held twice. Writing lays the file out exactly like the Rust/Python writer (tensors by descending dtype
 * alignment, then name; compact JSON with `__metadata__` first) and replaces the target atomically.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { endianness } from "node:os";
import { isAbsolute, join, normalize, sep } from "node:path";
import type { DType, Storage, StorageData } from "../backend/backend.js";
import { isHalf } from "../backend/backend.js";
import { Tensor, empty } from "../tensor/index.js";
import {
  DTYPES,
  isSafetensorsDType,
  float16BitsToFloat32,
  bfloat16BitsToFloat32,
  float8BitsToFloat32,
  float32ToFloat16Bits,
  float32ToBfloat16Bits,
} from "./dtypes.js";
import type { RawData, SafetensorsDType } from "./dtypes.js";
import { writeFileAtomic } from "./atomic.js";
import { CheckpointError } from "../errors.js";

export type { SafetensorsDType, RawData } from "./dtypes.js";

/** A tensor exactly as stored in a safetensors file: its dtype, shape and values in the dtype's typed array. */
export interface RawTensor {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Values in row-major order (F16/BF16/F8 as raw bits); any ArrayBufferView of the right byte length on write. */
  readonly data: RawData | ArrayBufferView;
}

/** One header entry: where a tensor's bytes lie in the data section. */
export interface TensorInfo {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** [begin, end) byte offsets relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
}

/** A parsed, validated header. */
export interface SafetensorsHeader {
  /** `__metadata__`, or null when the file has none. */
  readonly metadata: Record<string, string> | null;
  /** Tensor entries in file (offset) order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Byte offset of the data section in the file (8 + header length). */
  readonly dataStart: number;
}

/** What the problem with a file was, for programs that react to specific failures. */
export type SafetensorsErrorCode =
  | "FILE_TOO_SMALL"
  | "HEADER_TOO_LARGE"
  | "HEADER_PAST_EOF"
  | "HEADER_NOT_UTF8"
  | "HEADER_NOT_JSON"
  | "HEADER_NOT_OBJECT"
  | "BAD_METADATA"
  | "BAD_ENTRY"
  | "UNKNOWN_DTYPE"
  | "BAD_SHAPE"
  | "BAD_OFFSETS"
  | "LENGTH_MISMATCH"
  | "OVERLAP"
  | "GAP"
  | "TRUNCATED"
  | "TRAILING_BYTES"
  | "MISSING_TENSOR"
  | "VALUE_OUT_OF_RANGE"
  | "BAD_INDEX"
  | "MISSING_SHARD"
  | "INDEX_MISMATCH"
  | "NO_CHECKPOINT"
  | "BAD_ARGUMENT"
  | "UNSUPPORTED_HOST"
  | "CANNOT_OPEN";

/** A malformed or inconsistent safetensors file, checkpoint folder or save request. */
export class SafetensorsError extends Error {
  /** Builds "<file>: <problem>. Hint: <hint>". */
  constructor(
    readonly code: SafetensorsErrorCode,
    readonly file: string,
    problem: string,
    hint: string,
  ) {
    super(`${file}: ${problem}. Hint: ${hint}`);
    this.name = "SafetensorsError";
  }
}

/** Hugging Face's MAX_HEADER_SIZE: a larger header means the file is not safetensors (or is hostile). */
export const MAX_HEADER_SIZE = 100_000_000;

// Values are read and written in host byte order; the format is little-endian, as is every host Node runs on in
// practice. Refuse clearly rather than produce byte-swapped tensors on a big-endian machine.
function checkHost(file: string): void {
  if (endianness() !== "LE") {
    throw new SafetensorsError(
      "UNSUPPORTED_HOST",
      file,
      "this host is big-endian; peft-ts reads and writes safetensors only on little-endian hosts",
      "run on x86-64 or ARM64 (little-endian)",
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Header parsing and validation (shared by the file and in-memory readers).

const REDOWNLOAD =
  "the file is damaged or was not written completely (an interrupted download, copy or save?); download or save it again";

/** The header length from the first 8 bytes, after checking it against the file size and the cap. */
function headerLength(file: string, fileSize: number, prefix: Uint8Array): number {
  if (fileSize < 8) {
    throw new SafetensorsError(
      "FILE_TOO_SMALL",
      file,
      `file is ${fileSize} bytes long, shorter than the 8-byte header length that starts every safetensors file`,
      REDOWNLOAD,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError(
      "HEADER_TOO_LARGE",
      file,
      `header length ${n} is above the ${MAX_HEADER_SIZE}-byte limit (Hugging Face's MAX_HEADER_SIZE)`,
      notSafetensorsHint(prefix),
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsError(
      "HEADER_PAST_EOF",
      file,
      `header length ${len} is larger than the ${fileSize - 8} bytes that follow it`,
      `${REDOWNLOAD}; or it is not a safetensors file`,
    );
  }
  return len;
}

/** Recognise the usual non-safetensors files someone points a loader at. */
function notSafetensorsHint(prefix: Uint8Array): string {
  const text = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.length).toString("latin1");
  if (text.startsWith("version "))
    return "this looks like a Git LFS pointer file, not the weights: run `git lfs pull` in the model repository";
  if (text.startsWith("PK\x03\x04"))
    return "this looks like a zip archive (a PyTorch .bin/.pt checkpoint?): convert it to safetensors in Python first";
  if (prefix[0] === 0x80)
    return "this looks like a pickle (a PyTorch .bin checkpoint?): convert it to safetensors in Python first";
  return "the file is not in safetensors format, or its first 8 bytes are damaged";
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Parse and fully validate the JSON header against the file size. */
function parseHeader(file: string, fileSize: number, headerLen: number, bytes: Uint8Array): SafetensorsHeader {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new SafetensorsError("HEADER_NOT_UTF8", file, "header is not valid UTF-8", REDOWNLOAD);
  }
  // Like the Rust reader, require '{' first: this rejects random binary files early with a specific message.
  if (!text.startsWith("{")) {
    throw new SafetensorsError(
      "HEADER_NOT_OBJECT",
      file,
      `header does not start with '{' (it starts with ${JSON.stringify(text.slice(0, 20))})`,
      `${REDOWNLOAD}; or it is not a safetensors file`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(
      "HEADER_NOT_JSON",
      file,
      `header is not valid JSON (${(err as Error).message})`,
      REDOWNLOAD,
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SafetensorsError("HEADER_NOT_OBJECT", file, "header JSON is not an object", REDOWNLOAD);
  }
  let metadata: Record<string, string> | null = null;
  const entries: { name: string; info: TensorInfo }[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = checkMetadata(file, value);
      continue;
    }
    entries.push({ name, info: checkEntry(file, name, value) });
  }

  // HF requires the tensors, in offset order, to tile the data section exactly: anything else is either a
  // damaged header or bytes no tensor accounts for.
  entries.sort(
    (a, b) => a.info.dataOffsets[0] - b.info.dataOffsets[0] || a.info.dataOffsets[1] - b.info.dataOffsets[1],
  );
  const dataSize = fileSize - 8 - headerLen;
  let pos = 0;
  let prev = "";
  for (const { name, info } of entries) {
    const [begin, end] = info.dataOffsets;
    if (begin < pos) {
      throw new SafetensorsError(
        "OVERLAP",
        file,
        `tensor ${q(name)} (data_offsets [${begin}, ${end}]) overlaps tensor ${q(prev)} which ends at byte ${pos}`,
        "the header is corrupt: each byte of the data section belongs to exactly one tensor",
      );
    }
    if (begin > pos) {
      throw new SafetensorsError(
        "GAP",
        file,
        `bytes [${pos}, ${begin}) of the data section belong to no tensor (gap before ${q(name)})`,
        "the header is corrupt or lists a tensor twice under one name; safetensors requires the tensors to cover the data section without gaps",
      );
    }
    pos = end;
    prev = name;
  }
  if (pos > dataSize) {
    const last = entries[entries.length - 1]!;
    throw new SafetensorsError(
      "TRUNCATED",
      file,
      `file is truncated: the header describes ${pos} bytes of tensor data but only ${dataSize} follow it (tensor ${q(last.name)} has data_offsets [${last.info.dataOffsets.join(", ")}]; file size ${fileSize}, expected ${8 + headerLen + pos})`,
      REDOWNLOAD,
    );
  }
  if (pos < dataSize) {
    throw new SafetensorsError(
      "TRAILING_BYTES",
      file,
      `${dataSize - pos} bytes after the last tensor belong to no tensor (the header describes ${pos} bytes of data, the file has ${dataSize})`,
      "the file was modified or the header is corrupt",
    );
  }
  return {
    metadata,
    tensors: new Map(entries.map((e) => [e.name, e.info])),
    dataStart: 8 + headerLen,
  };
}

function checkMetadata(file: string, value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SafetensorsError(
      "BAD_METADATA",
      file,
      "__metadata__ is not an object",
      "safetensors metadata must map strings to strings",
    );
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        "BAD_METADATA",
        file,
        `__metadata__[${q(k)}] is ${JSON.stringify(v)}, not a string`,
        "safetensors metadata must map strings to strings",
      );
    }
    out[k] = v;
  }
  return out;
}

function checkEntry(file: string, name: string, value: unknown): TensorInfo {
  const fix =
    "the header is corrupt; every tensor entry needs dtype (string), shape (list of integers ≥ 0) and data_offsets ([begin, end])";
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SafetensorsError("BAD_ENTRY", file, `header entry ${q(name)} is not an object`, fix);
  }
  const v = value as Record<string, unknown>;
  for (const field of ["dtype", "shape", "data_offsets"]) {
    if (!(field in v)) throw new SafetensorsError("BAD_ENTRY", file, `tensor ${q(name)} has no "${field}"`, fix);
  }
  const dtype = v["dtype"];
  if (typeof dtype !== "string")
    throw new SafetensorsError(
      "BAD_ENTRY",
      file,
      `tensor ${q(name)}: dtype is ${JSON.stringify(dtype)}, not a string`,
      fix,
    );
  if (!isSafetensorsDType(dtype)) {
    throw new SafetensorsError(
      "UNKNOWN_DTYPE",
      file,
      `tensor ${q(name)} has unknown dtype ${q(dtype)} (known: ${Object.keys(DTYPES).join(", ")})`,
      "the file was written by a newer safetensors version with a dtype peft-ts does not know, or the header is corrupt",
    );
  }
  const shape = v["shape"];
  if (!Array.isArray(shape))
    throw new SafetensorsError(
      "BAD_ENTRY",
      file,
      `tensor ${q(name)}: shape is ${JSON.stringify(shape)}, not a list`,
      fix,
    );
  for (const d of shape) {
    if (!isSafeNonNegInt(d))
      throw new SafetensorsError(
        "BAD_SHAPE",
        file,
        `tensor ${q(name)}: shape [${shape.map((x) => JSON.stringify(x)).join(", ")}] has dimension ${JSON.stringify(d)}, not an integer ≥ 0`,
        fix,
      );
  }
  const offsets = v["data_offsets"];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeNonNegInt)) {
    throw new SafetensorsError(
      "BAD_OFFSETS",
      file,
      `tensor ${q(name)}: data_offsets ${JSON.stringify(offsets)} is not a pair of integers ≥ 0`,
      fix,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin)
    throw new SafetensorsError(
      "BAD_OFFSETS",
      file,
      `tensor ${q(name)}: data_offsets [${begin}, ${end}] end before they begin`,
      fix,
    );
  const expected = byteLength(shape as number[], dtype);
  if (expected !== end - begin) {
    throw new SafetensorsError(
      "LENGTH_MISMATCH",
      file,
      `tensor ${q(name)}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape.join(", ")}] × ${dtype} (${DTYPES[dtype].size} bytes) needs ${expected}`,
      "the header is corrupt (its shape, dtype and offsets disagree)",
    );
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [begin, end] };
}

/** numel × element size, or NaN when it would not be an exact JS integer (then it matches no offsets). */
function byteLength(shape: readonly number[], dtype: SafetensorsDType): number {
  let n = DTYPES[dtype].size;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : NaN;
}

function q(name: string): string {
  return JSON.stringify(name);
}

function unknownNames(file: string, wanted: Iterable<string>, have: ReadonlyMap<string, unknown>): void {
  for (const name of wanted) {
    if (!have.has(name)) {
      const some = [...have.keys()].slice(0, 8).join(", ");
      throw new SafetensorsError(
        "MISSING_TENSOR",
        file,
        `has no tensor ${q(name)} (it has ${have.size}: ${some}${have.size > 8 ? ", …" : ""})`,
        "check the tensor name (Hugging Face names, e.g. transformer.h.0.attn.c_attn.weight)",
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// File access.

// Conversions (F16 → float32 and the like) stream through a scratch buffer this big, so converting never
// needs the whole raw tensor in memory next to its float32 copy.
const CHUNK_BYTES = 4 << 20;

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
function typed(dtype: SafetensorsDType, bytes: Uint8Array): RawData {
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
function decodeInto(
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

// ---------------------------------------------------------------------------------------------------------------
// Public readers.

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

/** Options of the readers. */
export interface ReadOptions extends TensorReadOptions {
  /** Read only these tensors (an unknown name is an error); default: all. */
  names?: Iterable<string>;
}

/** The engine dtype whose elements have exactly the bits of a stored dtype. */
const STORED_AS: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  I32: "int32",
  BF16: "bfloat16",
  F16: "float16",
  U8: "uint8",
};

/** The engine dtype a stored tensor of `dtype` is read into. */
function engineDType(dtype: SafetensorsDType, opts: TensorReadOptions): DType {
  if (DTYPES[dtype].kind !== "float") return dtype === "U8" && opts.keepBytes ? "uint8" : "int32";
  const want = opts.floatDtype ?? "float32";
  if (want !== "keep") return want;
  return dtype === "BF16" ? "bfloat16" : dtype === "F16" ? "float16" : "float32";
}

/** Read and validate only the header of a file. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const f = SafetensorsFile.open(path);
  f.close();
  return f.header;
}

/** Open a file for reading tensors one at a time (remember to close() it). */
export function openSafetensors(path: string): SafetensorsFile {
  return SafetensorsFile.open(path);
}

/** Read a file's metadata and tensors as stored (raw dtype and values), optionally only some of them. */
export function readSafetensors(
  path: string,
  opts: ReadOptions = {},
): { metadata: Record<string, string> | null; tensors: Map<string, RawTensor> } {
  const f = SafetensorsFile.open(path);
  try {
    const names = selectNames(f, opts.names);
    const tensors = new Map<string, RawTensor>();
    for (const name of names) tensors.set(name, f.readRaw(name));
    return { metadata: f.metadata, tensors };
  } finally {
    f.close();
  }
}

/** Read a file into engine tensors (floats → float32, integers/BOOL → int32), optionally only some of them. */
export function loadSafetensors(path: string, opts: ReadOptions = {}): Map<string, Tensor> {
  const f = SafetensorsFile.open(path);
  try {
    return loadFrom(f, selectNames(f, opts.names), opts);
  } finally {
    f.close();
  }
}

function selectNames(f: SafetensorsFile, names: Iterable<string> | undefined): string[] {
  if (names === undefined) return f.keys();
  const wanted = [...names];
  unknownNames(f.path, wanted, f.header.tensors);
  // File order: sequential reads are the fastest way through the file.
  const set = new Set(wanted);
  return f.keys().filter((k) => set.has(k));
}

function loadFrom(f: SafetensorsFile, names: string[], opts: TensorReadOptions): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  try {
    for (const name of names) out.set(name, f.readTensor(name, opts));
    return out;
  } catch (err) {
    // Give back what was loaded so a failed load does not hold the memory of a half model.
    for (const t of out.values()) t.dispose();
    throw err;
  }
}

/** Parse an in-memory file; raw tensors are zero-copy views into `bytes` where alignment allows. */
export function parseSafetensors(
  bytes: Uint8Array,
  opts: ReadOptions & { file?: string } = {},
): { metadata: Record<string, string> | null; tensors: Map<string, RawTensor> } {
  const file = opts.file ?? "<buffer>";
  checkHost(file);
  const len = headerLength(file, bytes.length, bytes.subarray(0, 8));
  const header = parseHeader(file, bytes.length, len, bytes.subarray(8, 8 + len));
  const names = opts.names === undefined ? [...header.tensors.keys()] : [...opts.names];
  unknownNames(file, names, header.tensors);
  const tensors = new Map<string, RawTensor>();
  for (const name of names) {
    const info = header.tensors.get(name)!;
    const span = bytes.subarray(header.dataStart + info.dataOffsets[0], header.dataStart + info.dataOffsets[1]);
    tensors.set(name, { dtype: info.dtype, shape: info.shape, data: typed(info.dtype, span) });
  }
  return { metadata: header.metadata, tensors };
}

/**
 * Convert a raw tensor to an engine tensor: floats → float32 (F16/BF16 exact, F64 rounded) or opts.floatDtype,
 * integers/BOOL → int32 (U8 → uint8 with opts.keepBytes).
 */
export function rawToTensor(raw: RawTensor, name = "<tensor>", opts: TensorReadOptions = {}): Tensor {
  const { dtype, shape } = checkRaw("<memory>", name, raw);
  const t = empty(shape, engineDType(dtype, opts));
  try {
    const d = raw.data;
    decodeInto("<memory>", name, dtype, new Uint8Array(d.buffer, d.byteOffset, d.byteLength), t.storage, 0);
    return t;
  } catch (err) {
    t.dispose();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sharded checkpoints / model folders.

/** Options of the folder readers. */
export interface FolderOptions extends ReadOptions {
  /** The single-file name; the index is `<fileName>.index.json` (default "model.safetensors"). */
  fileName?: string;
}

/** What a model folder holds: a single file, or shards listed by an index. */
export interface CheckpointFiles {
  /** Absolute or dir-relative paths of every safetensors file to read, in order. */
  files: string[];
  /** name → shard path when the checkpoint is sharded; null for a single file. */
  weightMap: Map<string, string> | null;
  /** The index's "metadata" object (e.g. total_size), or null. */
  indexMetadata: Record<string, unknown> | null;
}

/** Find the checkpoint files of a folder: `model.safetensors`, else the index and every shard it lists. */
export function resolveCheckpointFiles(dir: string, fileName = "model.safetensors"): CheckpointFiles {
  const single = join(dir, fileName);
  // Hugging Face prefers the single file when both exist.
  if (existsSync(single)) return { files: [single], weightMap: null, indexMetadata: null };
  const indexPath = `${single}.index.json`;
  if (!existsSync(indexPath)) {
    const isDir = existsSync(dir) && statSync(dir).isDirectory();
    throw new SafetensorsError(
      "NO_CHECKPOINT",
      dir,
      isDir ? `has neither ${fileName} nor ${fileName}.index.json` : "is not a directory",
      isDir
        ? "pass a Hugging Face model folder saved with safe_serialization (PyTorch .bin checkpoints must be converted to safetensors first)"
        : "pass the path of a Hugging Face model folder",
    );
  }
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (err) {
    throw new SafetensorsError("BAD_INDEX", indexPath, `is not valid JSON (${(err as Error).message})`, REDOWNLOAD);
  }
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof index !== "object" || index === null || typeof wm !== "object" || wm === null || Array.isArray(wm)) {
    throw new SafetensorsError(
      "BAD_INDEX",
      indexPath,
      'has no "weight_map" object',
      'a sharded checkpoint index maps each tensor name to its shard file under "weight_map"',
    );
  }
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard === "" || isAbsolute(shard) || normalize(shard).split(sep).includes("..")) {
      throw new SafetensorsError(
        "BAD_INDEX",
        indexPath,
        `weight_map[${q(name)}] is ${JSON.stringify(shard)}, not a file name inside the folder`,
        "shard names must be relative file names such as model-00001-of-00003.safetensors",
      );
    }
    const path = join(dir, shard);
    if (!files.includes(path)) files.push(path);
    weightMap.set(name, path);
  }
  for (const path of files) {
    if (!existsSync(path)) {
      throw new SafetensorsError(
        "MISSING_SHARD",
        indexPath,
        `lists shard ${path} which does not exist`,
        "the download is incomplete: fetch every model-XXXXX-of-YYYYY.safetensors file of the checkpoint",
      );
    }
  }
  const meta = (index as { metadata?: unknown }).metadata;
  return {
    files,
    weightMap,
    indexMetadata: typeof meta === "object" && meta !== null ? (meta as Record<string, unknown>) : null,
  };
}

/** Open every file of a checkpoint folder and check the index against the shards' headers. */
function openCheckpoint(
  dir: string,
  opts: FolderOptions,
): { files: SafetensorsFile[]; plan: Map<SafetensorsFile, string[]> } {
  const { files: paths, weightMap } = resolveCheckpointFiles(dir, opts.fileName);
  const files: SafetensorsFile[] = [];
  try {
    for (const p of paths) files.push(SafetensorsFile.open(p));
    const owner = new Map<string, SafetensorsFile>();
    for (const f of files) {
      for (const name of f.keys()) {
        if (weightMap) {
          const listed = weightMap.get(name);
          if (listed !== f.path) {
            throw new SafetensorsError(
              "INDEX_MISMATCH",
              f.path,
              `holds tensor ${q(name)} but the index ${listed === undefined ? "does not list it" : `assigns it to ${listed}`}`,
              "the index and the shards come from different saves; download the checkpoint again",
            );
          }
        }
        owner.set(name, f);
      }
    }
    if (weightMap) {
      for (const [name, path] of weightMap) {
        if (!owner.has(name)) {
          throw new SafetensorsError(
            "INDEX_MISMATCH",
            path,
            `has no tensor ${q(name)} although the index lists it there`,
            "the index and the shards come from different saves; download the checkpoint again",
          );
        }
      }
    }
    let names: string[];
    if (opts.names === undefined) names = [...owner.keys()];
    else {
      names = [...opts.names];
      unknownNames(dir, names, owner);
    }
    const plan = new Map<SafetensorsFile, string[]>(files.map((f) => [f, []]));
    const wanted = new Set(names);
    for (const f of files)
      plan.set(
        f,
        f.keys().filter((k) => wanted.has(k)),
      );
    return { files, plan };
  } catch (err) {
    for (const f of files) f.close();
    throw err;
  }
}

/** Read a model folder's tensors as stored, from `model.safetensors` or from every shard of its index. */
export function readSafetensorsFolder(
  dir: string,
  opts: FolderOptions = {},
): { metadata: Record<string, string> | null; tensors: Map<string, RawTensor>; files: string[] } {
  const { files, plan } = openCheckpoint(dir, opts);
  try {
    const tensors = new Map<string, RawTensor>();
    for (const [f, names] of plan) for (const name of names) tensors.set(name, f.readRaw(name));
    return { metadata: files[0]?.metadata ?? null, tensors, files: files.map((f) => f.path) };
  } finally {
    for (const f of files) f.close();
  }
}

/** Load a model folder into engine tensors: `model.safetensors`, or the index and all of its shards. */
export function loadSafetensorsSharded(dir: string, opts: FolderOptions = {}): Map<string, Tensor> {
  const { files, plan } = openCheckpoint(dir, opts);
  const out = new Map<string, Tensor>();
  try {
    for (const [f, names] of plan) for (const [k, t] of loadFrom(f, names, opts)) out.set(k, t);
    return out;
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  } finally {
    for (const f of files) f.close();
  }
}

/** A model folder's weights as engine tensors (alias of loadSafetensorsSharded, the name model loaders use). */
export const loadModelWeights: (dir: string, opts?: FolderOptions) => Map<string, Tensor> = loadSafetensorsSharded;

// ---------------------------------------------------------------------------------------------------------------
// Writing.

/** Options of the writers. */
export interface WriteOptions {
  /** On-disk dtype of float32 engine tensors (default F32); raw, bfloat16, float16 and uint8 tensors keep their own dtype. */
  dtype?: "F32" | "F16" | "BF16";
  /** On-disk dtype of int32 engine tensors (default I32; I64 is what PyTorch uses for ids). */
  intDtype?: "I32" | "I64";
}

/** What writeSafetensors accepts: a Map, or any iterable of [name, tensor] pairs (names must be unique). */
export type TensorsToWrite = ReadonlyMap<string, Tensor | RawTensor> | Iterable<readonly [string, Tensor | RawTensor]>;

interface PlannedTensor {
  name: string;
  nameBytes: Buffer;
  dtype: SafetensorsDType;
  shape: readonly number[];
  nbytes: number;
  chunks: () => Iterable<Uint8Array>;
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function checkRaw(file: string, name: string, raw: RawTensor): { dtype: SafetensorsDType; shape: number[] } {
  const bad = (problem: string) =>
    new SafetensorsError(
      "BAD_ARGUMENT",
      file,
      `tensor ${q(name)}: ${problem}`,
      "a RawTensor is {dtype: a safetensors dtype, shape: integers ≥ 0, data: a typed array of numel × dtype-size bytes}",
    );
  if (!isSafetensorsDType(raw.dtype)) throw bad(`unknown dtype ${JSON.stringify(raw.dtype)}`);
  if (!Array.isArray(raw.shape) || !raw.shape.every(isSafeNonNegInt))
    throw bad(`shape ${JSON.stringify(raw.shape)} is not a list of integers ≥ 0`);
  if (!ArrayBuffer.isView(raw.data)) throw bad("data is not a typed array");
  const n = byteLength(raw.shape, raw.dtype);
  if (raw.data.byteLength !== n)
    throw bad(`data has ${raw.data.byteLength} bytes but shape [${raw.shape.join(", ")}] × ${raw.dtype} needs ${n}`);
  if (raw.dtype === "BOOL") {
    const b = bytesOf(raw.data);
    const i = b.findIndex((x) => x > 1);
    if (i >= 0) throw bad(`BOOL byte ${b[i]} at index ${i}; BOOL values must be 0 or 1`);
  }
  return { dtype: raw.dtype, shape: [...raw.shape] };
}

/** The host elements of an engine tensor in row-major order, without a copy when it is already contiguous. */
function hostValues(t: Tensor): StorageData {
  if (t.isContiguous()) return t.storage.data.subarray(t.offset, t.offset + t.size);
  return t.rawSync();
}

/** The file dtype of a tensor stored as is (bfloat16, float16 and uint8 tensors are written in their own dtype). */
const FILE_DTYPE: Partial<Record<DType, SafetensorsDType>> = { bfloat16: "BF16", float16: "F16", uint8: "U8" };

function* convertedChunks(values: StorageData, dtype: SafetensorsDType): Iterable<Uint8Array> {
  const size = DTYPES[dtype].size;
  const per = Math.max(1, Math.floor(CHUNK_BYTES / size));
  // One scratch buffer reused for every chunk: the writer consumes each chunk before asking for the next.
  const scratch = new DTYPES[dtype].array(Math.min(values.length, per));
  for (let i = 0; i < values.length; i += per) {
    const src = values.subarray(i, Math.min(values.length, i + per));
    const dst = scratch.subarray(0, src.length);
    if (dtype === "F16") float32ToFloat16Bits(src as Float32Array, dst as Uint16Array);
    else if (dtype === "BF16") float32ToBfloat16Bits(src as Float32Array, dst as Uint16Array);
    else if (dtype === "I64") {
      const d = dst as BigInt64Array;
      for (let j = 0; j < src.length; j++) d[j] = BigInt(src[j]!);
    } else throw new Error(`internal: no conversion to ${dtype}`);
    yield bytesOf(dst);
  }
}

function plan(file: string, tensors: TensorsToWrite, opts: WriteOptions): PlannedTensor[] {
  const floatDtype = opts.dtype ?? "F32";
  const intDtype = opts.intDtype ?? "I32";
  if (!["F32", "F16", "BF16"].includes(floatDtype))
    throw new SafetensorsError(
      "BAD_ARGUMENT",
      file,
      `dtype option ${JSON.stringify(floatDtype)} is not F32, F16 or BF16`,
      "float32 tensors can be saved as F32, F16 or BF16",
    );
  if (!["I32", "I64"].includes(intDtype))
    throw new SafetensorsError(
      "BAD_ARGUMENT",
      file,
      `intDtype option ${JSON.stringify(intDtype)} is not I32 or I64`,
      "int32 tensors can be saved as I32 or I64",
    );
  const out: PlannedTensor[] = [];
  const seen = new Set<string>();
  for (const [name, value] of tensors) {
    if (typeof name !== "string")
      throw new SafetensorsError(
        "BAD_ARGUMENT",
        file,
        `tensor name ${String(name)} is not a string`,
        "name tensors with strings",
      );
    if (name === "__metadata__")
      throw new SafetensorsError(
        "BAD_ARGUMENT",
        file,
        '"__metadata__" is reserved and cannot name a tensor',
        "rename the tensor",
      );
    if (seen.has(name))
      throw new SafetensorsError("BAD_ARGUMENT", file, `tensor ${q(name)} is given twice`, "names must be unique");
    seen.add(name);
    const nameBytes = Buffer.from(name, "utf8");
    if (value instanceof Tensor) {
      if (value.isDisposed)
        throw new SafetensorsError(
          "BAD_ARGUMENT",
          file,
          `tensor ${q(name)} was disposed`,
          "keep() tensors you want to save, or save them inside the scope that made them",
        );
      const dtype: SafetensorsDType = FILE_DTYPE[value.dtype] ?? (value.dtype === "float32" ? floatDtype : intDtype);
      const native = STORED_AS[dtype] === value.dtype;
      out.push({
        name,
        nameBytes,
        dtype,
        shape: [...value.shape],
        nbytes: value.size * DTYPES[dtype].size,
        chunks: () => (native ? [bytesOf(hostValues(value))] : convertedChunks(hostValues(value), dtype)),
      });
    } else {
      const { dtype, shape } = checkRaw(file, name, value);
      out.push({ name, nameBytes, dtype, shape, nbytes: value.data.byteLength, chunks: () => [bytesOf(value.data)] });
    }
  }
  // The Rust writer's order: descending dtype rank (so larger elements come first and every tensor is aligned
  // to its element size), then by name. Rust compares names as UTF-8 bytes (= Python's code-point order),
  // which JS's UTF-16 `<` does not match for astral characters, hence Buffer.compare.
  out.sort((a, b) => DTYPES[b.dtype].rank - DTYPES[a.dtype].rank || Buffer.compare(a.nameBytes, b.nameBytes));
  return out;
}

/** The 8-byte length + header JSON exactly as the Rust/Python writer produces it (compact, space-padded). */
function headerBytes(
  file: string,
  planned: PlannedTensor[],
  metadata: Record<string, string> | null | undefined,
): Buffer {
  const parts: string[] = [];
  if (metadata !== undefined && metadata !== null) {
    const m: string[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string")
        throw new SafetensorsError(
          "BAD_ARGUMENT",
          file,
          `metadata[${q(k)}] is ${JSON.stringify(v)}, not a string`,
          "safetensors metadata maps strings to strings; JSON.stringify other values",
        );
      m.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${m.join(",")}}`);
  }
  let offset = 0;
  for (const t of planned) {
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + t.nbytes}]}`,
    );
    offset += t.nbytes;
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

/** Validate everything and build the header; no byte is produced before every argument has been checked. */
function prepareWrite(
  file: string,
  tensors: TensorsToWrite,
  metadata: Record<string, string> | null | undefined,
  opts: WriteOptions,
): { head: Buffer; planned: PlannedTensor[] } {
  const planned = plan(file, tensors, opts);
  return { head: headerBytes(file, planned, metadata), planned };
}

function* chunksOf(prep: { head: Buffer; planned: PlannedTensor[] }): Generator<Uint8Array> {
  yield prep.head;
  for (const t of prep.planned) yield* t.chunks();
}

/** Serialize tensors to the bytes of a safetensors file, laid out exactly like the Python writer's. */
export function serializeSafetensors(
  tensors: TensorsToWrite,
  metadata?: Record<string, string> | null,
  opts: WriteOptions = {},
): Uint8Array {
  checkHost("<buffer>");
  const prep = prepareWrite("<buffer>", tensors, metadata, opts);
  const out = new Uint8Array(prep.head.length + prep.planned.reduce((s, t) => s + t.nbytes, 0));
  let at = 0;
  // Copy each chunk as it comes: conversion chunks reuse one scratch buffer.
  for (const c of chunksOf(prep)) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Save tensors atomically (temp file + fsync + rename): float32 tensors as F32 (or opts.dtype F16/BF16,
 * rounded to nearest even), int32 as I32 (or opts.intDtype), raw tensors in their own dtype.
 * Values are streamed from the tensors into the file chunk by chunk, so no second copy of the model is made.
 */
export function writeSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Record<string, string> | null,
  opts: WriteOptions = {},
): void {
  checkHost(path);
  // Argument errors throw here, before a temporary file exists.
  const prep = prepareWrite(path, tensors, metadata, opts);
  writeFileAtomic(path, chunksOf(prep));
}
