/** The writer: files laid out exactly like the Rust/Python writer's, replaced atomically. */
import type { DType, StorageData } from "../../backend/backend.js";
import { Tensor } from "../../tensor/index.js";
import { DTYPES, float32ToFloat16Bits, float32ToBfloat16Bits } from "../dtypes.js";
import type { SafetensorsDType } from "../dtypes.js";
import { writeFileAtomic } from "../atomic.js";
import { CHUNK_BYTES, STORED_AS } from "./file.js";
import { type RawTensor, SafetensorsError, checkHost } from "./format.js";
import { bytesOf, checkRaw, q } from "./validate.js";

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

export function plan(file: string, tensors: TensorsToWrite, opts: WriteOptions): PlannedTensor[] {
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
