/**
 * Bad models and tokenizers (issue 11 item 8): config.json fields are checked before anything is allocated, the
 * memory a model or adapter needs is estimated from its config, a weights path that is a directory, a corrupt
 * tokenizer.json and NaN logits in generation are clear typed errors.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { CheckpointError, ConfigError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { modelFromConfig, fromPretrained } from "../src/models/auto.js";
import { estimateParameterCount } from "../src/models/config.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { Linear } from "../src/nn/index.js";
import { LoraConfig, getPeftModel } from "../src/peft/index.js";
import { asGenerative } from "../src/models/generation/index.js";
import { GPT2, LLAMA, llama } from "./tiny-models.js";
import { bpeTokenizerJson, bertConfig, bertTokenizerJson, writeFolder } from "./tokenizer-fixtures.js";
import { cliWorkspace } from "./cli-workspace.js";

function throwsTyped(
  fn: () => unknown,
  type: typeof ConfigError | typeof CheckpointError,
  ...patterns: RegExp[]
): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof type, `expected a ${type.name}, got ${String(err)}`);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

describe("model configs are checked before allocating", () => {
  it("the issue's configs give a ConfigError naming the field", () => {
    throwsTyped(
      () =>
        modelFromConfig({ ...LLAMA, hidden_size: 191, num_attention_heads: 4, num_key_value_heads: 4 }, "causal-lm"),
      ConfigError,
      /`hidden_size` 191 is not a multiple of `num_attention_heads` 4/,
    );
    throwsTyped(
      () => modelFromConfig({ ...LLAMA, hidden_size: "192" }, "causal-lm"),
      ConfigError,
      /`hidden_size` must be an integer ≥ 1, got "192" \(a string\)/,
    );
    throwsTyped(
      () => modelFromConfig({ ...LLAMA, rms_norm_eps: -1 }, "causal-lm"),
      ConfigError,
      /`rms_norm_eps` must be a number > 0, got -1/,
    );
    throwsTyped(
      () => modelFromConfig({ ...GPT2, n_embd: 30 }, "causal-lm"),
      ConfigError,
      /`n_embd` 30 is not a multiple of `n_head` 4/,
    );
    throwsTyped(
      () => modelFromConfig({ ...LLAMA, num_key_value_heads: 3 }, "causal-lm"),
      ConfigError,
      /`num_attention_heads` 4 is not a multiple of `num_key_value_heads` 3/,
    );
    throwsTyped(
      () => modelFromConfig({ ...GPT2, attn_pdrop: 1.5 }, "causal-lm"),
      ConfigError,
      /`attn_pdrop` must be a number in \[0, 1\], got 1\.5/,
    );
    throwsTyped(
      () => modelFromConfig({ ...GPT2, eos_token_id: "2" }, "causal-lm"),
      ConfigError,
      /`eos_token_id` must be/,
    );
  });

  it("num_hidden_layers 100000 is refused before any layer is built (fast, no out-of-memory abort)", () => {
    throwsTyped(
      () =>
        modelFromConfig(
          { ...LLAMA, hidden_size: 192, num_attention_heads: 4, num_key_value_heads: 4, num_hidden_layers: 100000 },
          "causal-lm",
        ),
      ConfigError,
      /100000/,
      /free/,
    );
    throwsTyped(
      () => modelFromConfig({ ...GPT2, vocab_size: 4e12 }, "causal-lm"),
      ConfigError,
      /vocab_size 4000000000000/,
      /even at 4 bits each/,
    );
  });

  it("the parameter estimate is a lower bound within a factor 2 of the real count, for every family", () => {
    const configs: [Record<string, unknown>, "causal-lm" | "base" | "seq2seq-lm"][] = [
      [GPT2, "causal-lm"],
      [LLAMA, "causal-lm"],
      [{ ...LLAMA, model_type: "qwen2", tie_word_embeddings: true }, "causal-lm"],
      [{ ...LLAMA, model_type: "bert", num_key_value_heads: undefined }, "base"],
      [
        {
          model_type: "distilbert",
          vocab_size: 64,
          dim: 32,
          n_layers: 2,
          n_heads: 4,
          hidden_dim: 64,
          max_position_embeddings: 32,
        },
        "base",
      ],
      [
        {
          model_type: "t5",
          vocab_size: 64,
          d_model: 32,
          d_kv: 8,
          d_ff: 64,
          num_layers: 2,
          num_heads: 4,
          is_encoder_decoder: true,
        },
        "seq2seq-lm",
      ],
    ];
    for (const [config, task] of configs) {
      const model = modelFromConfig(config, task);
      const actual = model.parameters().reduce((n, p) => n + p.size, 0);
      const estimate = estimateParameterCount(model.config);
      assert.ok(
        estimate <= actual && estimate >= actual / 2,
        `${String(config["model_type"])}: estimate ${estimate}, actual ${actual}`,
      );
    }
  });

  it("an adapter whose rank would not fit in memory is refused before its factors are allocated", () => {
    const model = llama();
    // LoRA on q_proj and v_proj holds r · (in + out) values per layer: pick r so that it needs twice the machine's memory.
    const targets = model.namedModules().filter(([n, m]) => /\.(q_proj|v_proj)$/.test(n) && m instanceof Linear);
    const fans = targets.map(([, m]) => (m as Linear).inFeatures + (m as Linear).outFeatures);
    const r = Math.ceil((2 * totalmem()) / (4 * fans.reduce((a, b) => a + b, 0)));
    throwsTyped(
      () => getPeftModel(model, LoraConfig({ r, target_modules: ["q_proj", "v_proj"] })),
      ConfigError,
      new RegExp(`r ${r} on these target modules needs at least`),
    );
    assert.equal(
      getPeftModel(llama(), LoraConfig({ r: 4, target_modules: ["q_proj", "v_proj"] })).getNbTrainableParameters()[0],
      4 * fans.reduce((a, b) => a + b, 0),
    );
  });
});

describe("bad weights and tokenizer files", () => {
  it("a weights path that is a directory is a CheckpointError naming the path", () => {
    const dir = mkdtempSync(join(tmpdir(), "peft-ts-dirweights-"));
    try {
      const weights = join(dir, "model.safetensors");
      mkdirSync(weights);
      throwsTyped(
        () => loadSafetensors(weights),
        CheckpointError,
        new RegExp(`${weights.replace(/[.]/g, "\\.")} is a directory, not a safetensors file`),
      );
      writeFileSync(join(dir, "config.json"), JSON.stringify(GPT2));
      throwsTyped(() => fromPretrained(dir, "causal-lm"), CheckpointError, /model\.safetensors is a directory/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a corrupt tokenizer.json is a CheckpointError at load time, naming the entry", () => {
    // biome-ignore lint/suspicious/noExplicitAny: the cases corrupt an untyped tokenizer.json at any depth
    const cases: [string, (json: Record<string, any>) => void, RegExp][] = [
      [
        "a non-integer id",
        (j) => {
          j.model.vocab["a"] = 1.5;
        },
        /model\.vocab\["a"\] is 1\.5, not a token id/,
      ],
      [
        "a string id",
        (j) => {
          j.model.vocab["a"] = "3";
        },
        /model\.vocab\["a"\] is "3" \(a string\), not a token id/,
      ],
      [
        "an empty vocabulary",
        (j) => {
          j.model.vocab = {};
        },
        /has an empty model\.vocab/,
      ],
      [
        "an added token without an id (NaN in Python's JSON)",
        (j) => {
          j.added_tokens[0].id = null;
        },
        /added_tokens\[0\] \("<\|endoftext\|>"\) has id null, not a token id/,
      ],
    ];
    for (const [what, corrupt, pattern] of cases) {
      // biome-ignore lint/suspicious/noExplicitAny: as above
      const json = structuredClone(bpeTokenizerJson("qwen2")) as Record<string, any>;
      corrupt(json);
      const dir = writeFolder({ "tokenizer.json": json });
      try {
        throwsTyped(() => AutoTokenizer.fromPretrainedSync(dir), CheckpointError, pattern);
      } catch (err) {
        throw new Error(`${what}: ${(err as Error).message}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const unigram = {
      ...bertTokenizerJson(),
      model: {
        type: "Unigram",
        unk_id: 0,
        vocab: [
          ["<unk>", 0],
          ["a", "x"],
        ],
      },
    };
    const dir = writeFolder({ "tokenizer.json": unigram, "tokenizer_config.json": bertConfig() });
    try {
      throwsTyped(
        () => AutoTokenizer.fromPretrainedSync(dir),
        CheckpointError,
        /model\.vocab\[1\] is \["a","x"\] \(a list\), not a \[piece, score\] pair/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("NaN logits in generation", () => {
  it("generate raises a CheckpointError naming likely causes instead of decoding garbage", () => {
    const model = asGenerative(llama());
    const norm = model.namedParameters().find(([n]) => n.endsWith("layers.0.input_layernorm.weight"))![1];
    T.noGrad(() => norm.copy_(T.full(norm.shape, Number.NaN)));
    throwsTyped(
      () => model.generate({ inputIds: T.tensor(Int32Array.from([1, 2, 3]), [1, 3]), maxNewTokens: 2 }),
      CheckpointError,
      /logits are NaN at step 1 \(batch row 0\)/,
    );
    assert.throws(
      () => model.generate({ inputIds: T.tensor(Int32Array.from([1, 2, 3]), [1, 3]), maxNewTokens: 2 }),
      (e: CheckpointError) => /rms_norm_eps/.test(e.hint ?? ""),
    );
  });

  it("peft generate exits non-zero on a model with NaN weights", () => {
    const ws = cliWorkspace("peft-ts-nan-", LLAMA);
    try {
      const model = fromPretrained(join(ws.root, "model"), "causal-lm");
      const head = model.namedParameters().find(([n]) => n.endsWith("embed_tokens.weight"))![1];
      T.noGrad(() => head.copy_(T.full(head.shape, Number.NaN)));
      model.savePretrained(join(ws.root, "model"));
      const r = ws.run("generate", "--model", "model", "--prompt", "hello", "--max-new-tokens", "2");
      assert.notEqual(r.status, 0, r.stdout);
      assert.match(r.stderr, /logits are NaN/);
    } finally {
      rmSync(ws.root, { recursive: true, force: true });
    }
  });
});
