/** Reading a Hugging Face tokenizer folder into plain objects (no tokenization here). */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { CheckpointError } from "../errors.js";
import { showValue } from "../io/config-fields.js";

/** The contents of a tokenizer folder, parsed. */
export interface TokenizerFiles {
  /** tokenizer.json (the "fast" tokenizer: normalizer, pre-tokenizer, model, post-processor, decoder, added tokens). */
  tokenizerJson: Record<string, unknown>;
  /** tokenizer_config.json ({} when absent). */
  tokenizerConfig?: Record<string, unknown>;
  /** special_tokens_map.json ({} when absent). */
  specialTokensMap?: Record<string, unknown>;
  /** chat_template.jinja (newer transformers save the template there instead of in tokenizer_config.json). */
  chatTemplate?: string;
  /** Where the files came from (for messages and `nameOrPath`). */
  nameOrPath?: string;
}

/** Files that mean "a slow tokenizer is here, but no tokenizer.json". */
const SLOW_TOKENIZER_FILES = [
  "vocab.json",
  "merges.txt",
  "vocab.txt",
  "tokenizer.model",
  "spiece.model",
  "sentencepiece.bpe.model",
];

/** Parses one JSON file, naming it in the error. */
function readJson(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`Cannot read ${path}: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new Error(`${path} does not hold a JSON object`);
  return value as Record<string, unknown>;
}

/** Reads tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja from `dir`. */
export function readTokenizerFolder(dir: string): TokenizerFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`Tokenizer folder not found: ${dir}`);
  const found = readdirSync(dir).sort();
  if (!found.includes("tokenizer.json")) {
    const slow = found.filter((f) => SLOW_TOKENIZER_FILES.includes(f));
    const hint =
      slow.length > 0
        ? ` It has a slow tokenizer (${slow.join(", ")}) only: convert it once in Python with ` +
          `AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json.`
        : "";
    throw new Error(
      `No tokenizer.json in ${dir} (files found: ${found.length > 0 ? found.join(", ") : "none"}).${hint}`,
    );
  }
  const optional = (name: string): Record<string, unknown> => (found.includes(name) ? readJson(join(dir, name)) : {});
  const files: TokenizerFiles = {
    tokenizerJson: readJson(join(dir, "tokenizer.json")),
    tokenizerConfig: optional("tokenizer_config.json"),
    specialTokensMap: optional("special_tokens_map.json"),
    nameOrPath: dir,
  };
  if (found.includes("chat_template.jinja"))
    files.chatTemplate = readFileSync(join(dir, "chat_template.jinja"), "utf8");
  return files;
}

/** A token id as tokenizer.json must hold it: a non-negative safe integer. */
function isTokenId(v: unknown): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Throw a CheckpointError for a corrupt tokenizer.json, naming the entry. */
function corrupt(where: string, problem: string): never {
  throw new CheckpointError(
    `${where}: tokenizer.json ${problem}`,
    "the file is corrupt or hand-edited: re-download it, or re-save it in Python with tokenizer.save_pretrained(dir)",
  );
}

/**
 * Check what tokenizer.json's ids come from before a tokenizer is built on it: the model's vocabulary (non-empty;
 * a token → id object, or Unigram's list of [piece, score]) and the added tokens (each a string with an id).
 * A corrupt file otherwise tokenizes into garbage ids and trains silently.
 */
export function checkTokenizerJson(json: Record<string, unknown>, where: string): void {
  const model = json["model"];
  if (model === null || typeof model !== "object" || Array.isArray(model)) corrupt(where, "has no `model` object");
  const vocab = (model as Record<string, unknown>)["vocab"];
  if (Array.isArray(vocab)) {
    if (vocab.length === 0) corrupt(where, "has an empty model.vocab");
    vocab.forEach((entry, i) => {
      const ok =
        Array.isArray(entry) &&
        entry.length === 2 &&
        typeof entry[0] === "string" &&
        typeof entry[1] === "number" &&
        Number.isFinite(entry[1]);
      if (!ok) corrupt(where, `model.vocab[${i}] is ${showValue(entry)}, not a [piece, score] pair`);
    });
  } else if (vocab !== null && typeof vocab === "object") {
    const entries = Object.entries(vocab);
    if (entries.length === 0) corrupt(where, "has an empty model.vocab");
    for (const [token, id] of entries)
      if (!isTokenId(id))
        corrupt(
          where,
          `model.vocab[${JSON.stringify(token)}] is ${showValue(id)}, not a token id (a non-negative integer)`,
        );
  } else {
    corrupt(where, "has no model.vocab (an object of token → id, or a list of [piece, score])");
  }
  const added = json["added_tokens"] ?? [];
  if (!Array.isArray(added)) corrupt(where, "added_tokens is not a list");
  added.forEach((t: unknown, i) => {
    const entry = t as Record<string, unknown> | null;
    if (entry === null || typeof entry !== "object" || typeof entry["content"] !== "string")
      corrupt(where, `added_tokens[${i}] has no string "content"`);
    if (!isTokenId(entry["id"]))
      corrupt(
        where,
        `added_tokens[${i}] (${JSON.stringify(entry["content"])}) has id ` +
          `${showValue(entry["id"])}, not a token id (a non-negative integer)`,
      );
  });
}
