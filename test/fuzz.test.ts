/**
 * A bounded fuzz test (fixed seed, a few seconds) of the file parsers users feed peft-ts: safetensors, an adapter's
 * adapter_config.json, a model's config.json, tokenizer.json and the JSON/JSONL dataset loaders. Valid files are
 * mutated at random (bytes flipped, inserted, deleted, duplicated, truncated; JSON numbers and tokens replaced);
 * each input must either load or throw a typed or clear Error — never crash, hang, or throw a non-Error or a
 * TypeError/RangeError from deep inside the code.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { SafetensorsError, parseSafetensors, rawToTensor, serializeSafetensors } from "../src/io/safetensors.js";
import { readJsonObject } from "../src/io/json.js";
import { modelFromConfig, parseConfig } from "../src/models/auto.js";
import { estimateParameterCount } from "../src/models/config.js";
import { LoraConfig, readAdapterConfig } from "../src/peft/index.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { loadDataset } from "../src/train/index.js";
import { LLAMA } from "./tiny-models.js";
import { bpeTokenizerJson } from "./tokenizer-fixtures.js";
import { rng } from "./helpers.js";

const SEED = 20261204;
const JSON_TOKENS = [
  "-1",
  "0",
  "1e400",
  "-1e400",
  "1.5",
  "NaN",
  "null",
  "true",
  '"x"',
  "[]",
  "{}",
  "[[]]",
  '""',
  "9007199254740993",
  "1e6",
  ",",
  ":",
  "{",
  "}",
  "[",
  "]",
  '"',
];

/** One random mutation of `bytes`. */
function mutate(bytes: Uint8Array, next: () => number): Uint8Array {
  const n = bytes.length;
  const at = Math.floor(next() * (n + 1));
  const out = Array.from(bytes);
  switch (Math.floor(next() * 7)) {
    case 0: // flip one byte
      if (n > 0) out[Math.min(at, n - 1)] = Math.floor(next() * 256);
      break;
    case 1: // insert random bytes
      out.splice(at, 0, ...Array.from({ length: 1 + Math.floor(next() * 8) }, () => Math.floor(next() * 256)));
      break;
    case 2: // delete a range
      out.splice(at, 1 + Math.floor(next() * 16));
      break;
    case 3: // duplicate a range
      out.splice(at, 0, ...out.slice(at, at + 1 + Math.floor(next() * 32)));
      break;
    case 4: // truncate
      out.length = at;
      break;
    case 5: {
      // replace a number with a JSON token (or insert one)
      const text = new TextDecoder().decode(bytes);
      const numbers = [...text.matchAll(/-?\d+(\.\d+)?(e-?\d+)?/g)];
      const token = JSON_TOKENS[Math.floor(next() * JSON_TOKENS.length)]!;
      const m = numbers[Math.floor(next() * numbers.length)];
      const changed = m
        ? text.slice(0, m.index) + token + text.slice(m.index! + m[0].length)
        : text.slice(0, at) + token + text.slice(at);
      return new TextEncoder().encode(changed);
    }
    default: {
      // replace a JSON value after a colon with a token
      const text = new TextDecoder().decode(bytes);
      const colons = [...text.matchAll(/:\s*/g)];
      const c = colons[Math.floor(next() * colons.length)];
      if (!c) break;
      const start = c.index! + c[0].length;
      const end = text.slice(start).search(/[,}\]\n]/);
      const token = JSON_TOKENS[Math.floor(next() * JSON_TOKENS.length)]!;
      return new TextEncoder().encode(text.slice(0, start) + token + (end < 0 ? "" : text.slice(start + end)));
    }
  }
  return Uint8Array.from(out);
}

/** 1–3 mutations of `valid`. */
function mutant(valid: Uint8Array, next: () => number): Uint8Array {
  let bytes = valid;
  for (let k = 1 + Math.floor(next() * 3); k > 0; k--) bytes = mutate(bytes, next);
  return bytes;
}

/** What a parser may throw: a typed error, or an Error whose message names the file — never a crash-like error. */
function assertClearError(err: unknown, file: string, what: string): void {
  assert.ok(err instanceof Error, `${what}: threw a non-Error ${String(err)}`);
  for (const crash of [TypeError, RangeError, ReferenceError]) {
    assert.ok(!(err instanceof crash), `${what}: crashed with ${err.name}: ${err.message}\n${err.stack}`);
  }
  const typed = err instanceof PeftError || err instanceof SafetensorsError;
  assert.ok(
    typed || err.message.includes(file),
    `${what}: an untyped error that does not name the file: ${err.message}`,
  );
}

/** Run `load` on `count` mutants of `valid` written to `file`; count the ones that loaded. */
function fuzz(valid: Uint8Array, count: number, seed: number, file: string, load: (bytes: Uint8Array) => void): number {
  const next = rng(seed);
  let loaded = 0;
  for (let i = 0; i < count; i++) {
    const bytes = mutant(valid, next);
    writeFileSync(file, bytes);
    try {
      T.tidy(() => load(bytes));
      loaded++;
    } catch (err) {
      assertClearError(err, file, `mutant ${i} of ${file}`);
    }
  }
  return loaded;
}

/** Run fn with process warnings (newer fields, unknown fields) silenced. */
function quietly<R>(fn: () => R): R {
  const original = process.emitWarning;
  process.emitWarning = (() => {}) as typeof process.emitWarning;
  try {
    return fn();
  } finally {
    process.emitWarning = original;
  }
}

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value, null, 2));

describe("fuzzed files load or fail with a clear error", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-fuzz-"));

  it("safetensors", () => {
    const valid = serializeSafetensors(
      new Map<string, T.Tensor | { dtype: "I64" | "F16" | "BF16" | "U8"; shape: number[]; data: ArrayBufferView }>([
        ["a", T.tensor([1, 2, 3, 4, 5, 6], [2, 3])],
        ["b", { dtype: "I64", shape: [3], data: BigInt64Array.from([1n, -2n, 3n]) }],
        ["c", { dtype: "F16", shape: [2], data: Uint16Array.from([0x3c00, 0xc000]) }],
        ["d", { dtype: "BF16", shape: [1, 2], data: Uint16Array.from([0x3f80, 0x4000]) }],
        ["e", { dtype: "U8", shape: [4], data: Uint8Array.from([1, 2, 3, 4]) }],
      ]),
      { format: "pt" },
    );
    const loaded = fuzz(valid, 600, SEED, join(dir, "model.safetensors"), (bytes) => {
      const { tensors } = parseSafetensors(bytes, { file: join(dir, "model.safetensors") });
      for (const [name, raw] of tensors) rawToTensor(raw, name).dispose();
    });
    assert.ok(loaded > 0 && loaded < 600, `some mutants load, most do not (${loaded} loaded)`);
  });

  it("adapter_config.json", () => {
    const adapter = join(dir, "adapter");
    const file = join(adapter, "adapter_config.json");
    mkdirSync(adapter);
    const config = LoraConfig({
      r: 4,
      target_modules: ["q_proj", "v_proj"],
      rank_pattern: { q_proj: 2 },
      alpha_pattern: { v_proj: 16 },
      layers_to_transform: [0, 1],
      layers_pattern: "layers",
    });
    const valid = encode({ ...config, base_model_name_or_path: "m" });
    const loaded = quietly(() => fuzz(valid, 400, SEED + 1, file, () => void readAdapterConfig(adapter, true)));
    assert.ok(loaded > 0, "some mutants load");
  });

  it("config.json (parsed, and the model built when it is small)", () => {
    const file = join(dir, "config.json");
    const valid = encode({
      ...LLAMA,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      bos_token_id: 1,
      eos_token_id: 2,
      tie_word_embeddings: false,
    });
    const loaded = quietly(() =>
      fuzz(valid, 400, SEED + 2, file, () => {
        const config = parseConfig(readJsonObject(file));
        // Build what is small enough to build in a test; bigger configs were checked by the memory estimate.
        if (estimateParameterCount(config) < 200_000) modelFromConfig(config, "causal-lm");
      }),
    );
    assert.ok(loaded > 0, "some mutants load");
  });

  it("tokenizer.json", () => {
    const tok = join(dir, "tok");
    mkdirSync(tok);
    const file = join(tok, "tokenizer.json");
    const valid = encode(bpeTokenizerJson("qwen2"));
    const loaded = quietly(() =>
      fuzz(valid, 200, SEED + 3, file, () => {
        const t = AutoTokenizer.fromPretrainedSync(tok);
        t.decode(t.encode("hello world!"));
      }),
    );
    assert.ok(loaded > 0, "some mutants load");
  });

  it("datasets: JSON arrays and JSONL", () => {
    const records = [
      { instruction: "say hello", output: "hello world!" },
      { instruction: "whisper", input: "x", output: "hello", system: "be brief" },
      { text: "plain" },
    ];
    const array = join(dir, "train.json");
    const lines = join(dir, "train.jsonl");
    const loadedArray = fuzz(encode(records), 300, SEED + 4, array, () => void loadDataset(array));
    const jsonl = new TextEncoder().encode(`${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const loadedLines = fuzz(jsonl, 300, SEED + 5, lines, () => void loadDataset(lines));
    assert.ok(loadedArray > 0 && loadedLines > 0, "some mutants load");
    rmSync(dir, { recursive: true, force: true });
  });
});
