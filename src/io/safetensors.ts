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
 *
 * The parts live in ./safetensors/: format (types, errors), validate (headers and raw tensors), file (an open file),
 * read (the readers), folder (sharded checkpoints) and write (the writer). This module is their public face.
 */

export type { RawData, SafetensorsDType } from "./dtypes.js";
export { SafetensorsFile, type TensorReadOptions } from "./safetensors/file.js";
export {
  type CheckpointFiles,
  type FolderOptions,
  loadModelWeights,
  loadSafetensorsSharded,
  readSafetensorsFolder,
  resolveCheckpointFiles,
} from "./safetensors/folder.js";
export {
  MAX_HEADER_SIZE,
  type RawTensor,
  SafetensorsError,
  type SafetensorsErrorCode,
  type SafetensorsHeader,
  type TensorInfo,
} from "./safetensors/format.js";
export {
  loadSafetensors,
  openSafetensors,
  parseSafetensors,
  rawToTensor,
  type ReadOptions,
  readSafetensors,
  readSafetensorsHeader,
} from "./safetensors/read.js";
export { serializeSafetensors, type TensorsToWrite, type WriteOptions, writeSafetensors } from "./safetensors/write.js";
