/** Reading and writing the JSON files of model and adapter folders, with errors that name the file. */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "./atomic.js";

/** Parse a JSON object file; errors say which file is missing or malformed. */
export function readJsonObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new Error(`${path} does not exist`);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error(`${path} must hold a JSON object`);
  return value as Record<string, unknown>;
}

/** JSON text like Python's json.dumps(value, indent=2, sort_keys=True) (what HF writes for configs). */
export function pythonJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), pythonFloats, 2);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
  }
  return value;
}

// JSON.stringify writes 1e-05 as 0.00001 and Infinity as null; only the second loses information, so refuse it.
function pythonFloats(_key: string, v: unknown): unknown {
  if (typeof v === "number" && !Number.isFinite(v)) throw new Error(`cannot write the non-finite number ${v} to JSON`);
  return v;
}

/** Write a JSON object atomically (temp file + rename) in HF's layout, with a trailing newline when asked. */
export function writeJsonAtomic(path: string, value: unknown, trailingNewline = true): void {
  writeFileAtomic(path, pythonJson(value) + (trailingNewline ? "\n" : ""));
}
