/** The public readers: whole files, selected tensors and in-memory bytes, into raw or engine tensors. */
import { type Tensor, empty } from "../../tensor/index.js";
import { SafetensorsFile, type TensorReadOptions, decodeInto, engineDType, typed } from "./file.js";
import { type RawTensor, type SafetensorsHeader, checkHost } from "./format.js";
import { checkRaw, headerLength, parseHeader, unknownNames } from "./validate.js";

/** Options of the readers. */
export interface ReadOptions extends TensorReadOptions {
  /** Read only these tensors (an unknown name is an error); default: all. */
  names?: Iterable<string>;
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

export function loadFrom(f: SafetensorsFile, names: string[], opts: TensorReadOptions): Map<string, Tensor> {
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
