/** File formats: safetensors (read/write, sharded checkpoints), exact half-precision conversions, atomic saves. */
export * from "./safetensors.js";
export {
  DTYPES,
  isSafetensorsDType,
  float16BitsToFloat32,
  bfloat16BitsToFloat32,
  float8BitsToFloat32,
  float32ToFloat16Bits,
  float32ToBfloat16Bits,
  f32BitsToF16Bits,
  f32BitsToBf16Bits,
  toFloat16Bits,
  fromFloat16Bits,
  toBfloat16Bits,
  fromBfloat16Bits,
} from "./dtypes.js";
export type { DTypeInfo, RawDataOf } from "./dtypes.js";
export { writeFileAtomic, writeFolderAtomic, recoverInterruptedSaves } from "./atomic.js";
export type { AtomicData, AtomicWriteOptions, FolderWriteOptions } from "./atomic.js";
export { snapshotDownload, hfHubDownload, hubCacheDir, resolvePretrained, repoInfo, PRETRAINED_FILES } from "./hub.js";
export type { HubOptions, SnapshotOptions, PretrainedKind } from "./hub.js";
export { resolvePretrainedSync } from "./hub-sync.js";
export { createRepo, createCommit, uploadFolder } from "./hub-upload.js";
export type { PushOptions, CommitInfo, CommitFile } from "./hub-upload.js";
