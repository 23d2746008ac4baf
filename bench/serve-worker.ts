/**
 * The server side of `npm run bench -- --only serve`, in its own process: a random GPT-2-small- or
 * Qwen2-0.5B-shaped model (or a tiny one for the memory run) with N random LoRA adapters, a word-level tokenizer
 * covering its whole vocabulary (so that every token is a visible piece of text), served on a free 127.0.0.1 port.
 *
 *   node dist/bench/serve-worker.js --model gpt2|qwen2|tiny --adapters 16 [--dtype float32|bfloat16|float16]
 * Prints the URL on stdout, then serves until killed.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ParameterDType } from "../src/nn/index.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { PeftServer } from "../src/serve/server.js";
import { CONFIGS } from "./models.js";
import { randomServedModel } from "./serve-model.js";

const TINY = { model_type: "gpt2", vocab_size: 256, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 64 };

/** A word-level tokenizer: token i is the word "t<i>". */
function wordTokenizer(vocabSize: number): string {
  const dir = mkdtempSync(join(tmpdir(), "peft-serve-bench-"));
  const vocab = Object.fromEntries(Array.from({ length: vocabSize }, (_, i) => [`t${i}`, i]));
  writeFileSync(
    join(dir, "tokenizer.json"),
    JSON.stringify({
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: null,
      decoder: null,
      model: { type: "WordLevel", vocab, unk_token: "t0" },
    }),
  );
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ tokenizer_class: "PreTrainedTokenizerFast", eos_token: null }),
  );
  return dir;
}

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const name = opt("model", "gpt2");
const adapters = Number(opt("adapters", "16"));
const config = name === "tiny" ? TINY : CONFIGS[name as "gpt2" | "qwen2"];
const tokenizer = AutoTokenizer.fromPretrainedSync(wordTokenizer(config.vocab_size as number));
const dtype = opt("dtype", "float32") as ParameterDType;
const server = new PeftServer(randomServedModel(config, adapters, dtype), tokenizer, {
  modelName: "base",
  maxModelLen: 1024,
  maxQueue: 4096,
});
console.log(await server.listen(0));
