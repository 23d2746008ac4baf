/** Validation: headers read from files (for the file and in-memory readers) and raw tensors given to the writer. */
import { DTYPES, isSafetensorsDType } from "../dtypes.js";
import type { SafetensorsDType } from "../dtypes.js";
import {
  MAX_HEADER_SIZE,
  type RawTensor,
  SafetensorsError,
  type SafetensorsHeader,
  type TensorInfo,
} from "./format.js";

export const REDOWNLOAD =
  "the file is damaged or was not written completely (an interrupted download, copy or " +
  "save?); download or save it again";

/** The header length from the first 8 bytes, after checking it against the file size and the cap. */
export function headerLength(file: string, fileSize: number, prefix: Uint8Array): number {
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

export const utf8 = new TextDecoder("utf-8", { fatal: true });

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Parse and fully validate the JSON header against the file size. */
export function parseHeader(file: string, fileSize: number, headerLen: number, bytes: Uint8Array): SafetensorsHeader {
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
        "the header is corrupt or lists a tensor twice under one name; safetensors requires the " +
          "tensors to cover the data section without gaps",
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
      `file is truncated: the header describes ${pos} bytes of tensor data but only ${dataSize} ` +
        `follow it (tensor ${q(last.name)} has data_offsets [${last.info.dataOffsets.join(", ")}]; ` +
        `file size ${fileSize}, expected ${8 + headerLen + pos})`,
      REDOWNLOAD,
    );
  }
  if (pos < dataSize) {
    throw new SafetensorsError(
      "TRAILING_BYTES",
      file,
      `${dataSize - pos} bytes after the last tensor belong to no tensor (the header describes ` +
        `${pos} bytes of data, the file has ${dataSize})`,
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
    "the header is corrupt; every tensor entry needs dtype (string), shape (list of integers ≥ " +
    "0) and data_offsets ([begin, end])";
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
      "the file was written by a newer safetensors version with a dtype peft-ts does not know, " +
        "or the header is corrupt",
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
        `tensor ${q(name)}: shape [${shape.map((x) => JSON.stringify(x)).join(", ")}] has ` +
          `dimension ${JSON.stringify(d)}, not an integer ≥ 0`,
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
      `tensor ${q(name)}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape ` +
        `[${shape.join(", ")}] × ${dtype} (${DTYPES[dtype].size} bytes) needs ${expected}`,
      "the header is corrupt (its shape, dtype and offsets disagree)",
    );
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [begin, end] };
}

/** numel × element size, or NaN when it would not be an exact JS integer (then it matches no offsets). */
export function byteLength(shape: readonly number[], dtype: SafetensorsDType): number {
  let n = DTYPES[dtype].size;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : NaN;
}

export function q(name: string): string {
  return JSON.stringify(name);
}

export function unknownNames(file: string, wanted: Iterable<string>, have: ReadonlyMap<string, unknown>): void {
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

export function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function checkRaw(file: string, name: string, raw: RawTensor): { dtype: SafetensorsDType; shape: number[] } {
  const bad = (problem: string) =>
    new SafetensorsError(
      "BAD_ARGUMENT",
      file,
      `tensor ${q(name)}: ${problem}`,
      "a RawTensor is {dtype: a safetensors dtype, shape: integers ≥ 0, data: a typed array of " +
        "numel × dtype-size bytes}",
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
