/** The safetensors format's shared types, its error type and the host check. */
import { endianness } from "node:os";
import type { RawData, SafetensorsDType } from "../dtypes.js";

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
export function checkHost(file: string): void {
  if (endianness() !== "LE") {
    throw new SafetensorsError(
      "UNSUPPORTED_HOST",
      file,
      "this host is big-endian; peft-ts reads and writes safetensors only on little-endian hosts",
      "run on x86-64 or ARM64 (little-endian)",
    );
  }
}
