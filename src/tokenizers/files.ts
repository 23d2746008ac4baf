/** Reading a Hugging Face tokenizer folder into plain objects (no tokenization here). */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

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
const SLOW_TOKENIZER_FILES = ["vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model"];

/** Parses one JSON file, naming it in the error. */
function readJson(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`Cannot read ${path}: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error(`${path} does not hold a JSON object`);
  return value as Record<string, unknown>;
}

/** Reads tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja from `dir`. */
export function readTokenizerFolder(dir: string): TokenizerFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`Tokenizer folder not found: ${dir}`);
  const found = readdirSync(dir).sort();
  if (!found.includes("tokenizer.json")) {
    const slow = found.filter((f) => SLOW_TOKENIZER_FILES.includes(f));
    const hint = slow.length > 0
      ? ` It has a slow tokenizer (${slow.join(", ")}) only: convert it once in Python with ` +
        `AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json.`
      : "";
    throw new Error(`No tokenizer.json in ${dir} (files found: ${found.length > 0 ? found.join(", ") : "none"}).${hint}`);
  }
  const optional = (name: string): Record<string, unknown> => (found.includes(name) ? readJson(join(dir, name)) : {});
  const files: TokenizerFiles = {
    tokenizerJson: readJson(join(dir, "tokenizer.json")),
    tokenizerConfig: optional("tokenizer_config.json"),
    specialTokensMap: optional("special_tokens_map.json"),
    nameOrPath: dir,
  };
  if (found.includes("chat_template.jinja")) files.chatTemplate = readFileSync(join(dir, "chat_template.jinja"), "utf8");
  return files;
}
