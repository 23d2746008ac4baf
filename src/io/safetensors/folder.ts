/** Sharded checkpoints: model folders with `model.safetensors.index.json` and their shards. */
import { existsSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, normalize, sep } from "node:path";
import type { Tensor } from "../../tensor/index.js";
import { SafetensorsFile } from "./file.js";
import { type RawTensor, SafetensorsError } from "./format.js";
import { type ReadOptions, loadFrom } from "./read.js";
import { REDOWNLOAD, q, unknownNames } from "./validate.js";

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
        ? "pass a Hugging Face model folder saved with safe_serialization (PyTorch .bin checkpoints " +
            "must be converted to safetensors first)"
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
              `holds tensor ${q(name)} but the index ` +
                `${listed === undefined ? "does not list it" : `assigns it to ${listed}`}`,
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
