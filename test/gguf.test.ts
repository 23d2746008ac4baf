/**
 * GGUF export: the file format against hand-computed bytes, Q8_0 and the query/key permutation against hand
 * values, and exported models and LoRA adapters run in the real llama.cpp (node-llama-cpp's prebuilt binaries,
 * installed by `scripts/setup.sh --with-test-tools`) with the same greedy tokens and next-token probabilities as
 * peft-ts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as T from "../src/tensor/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { LoraConfig, PeftModel, getPeftModel } from "../src/peft/index.js";
import { dequantizeQ8_0, parseGguf, quantizeQ8_0, serializeGguf, type GgufValue } from "../src/io/gguf.js";
import { fromFloat16Bits } from "../src/io/dtypes.js";
import type { GenerativeModel } from "../src/models/generation/index.js";
import type { ModelOutput } from "../src/models/outputs.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(root, "dist", "src", "cli", "main.js");
const TINY_BARD = join(root, "assets", "tiny-bard");
const LLAMA_CPP = join(root, ".llama-cpp", "node_modules", "node-llama-cpp", "dist", "index.js");

describe("GGUF format", () => {
  it("header, metadata and tensor records are laid out as ggml's gguf.md says (hand-computed bytes)", () => {
    const bytes = serializeGguf(new Map<string, GgufValue>([["a.b", { type: "uint32", value: 7 }]]), [
      { name: "t", shape: [2, 3], type: "F32", data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    ]);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "GGUF");
    assert.deepEqual(
      [v.getUint32(4, true), Number(v.getBigUint64(8, true)), Number(v.getBigUint64(16, true))],
      [3, 1, 1],
    );
    // key: u64 length 3, "a.b", type UINT32 (4), value 7
    assert.deepEqual(
      [
        Number(v.getBigUint64(24, true)),
        new TextDecoder().decode(bytes.subarray(32, 35)),
        v.getUint32(35, true),
        v.getUint32(39, true),
      ],
      [3, "a.b", 4, 7],
    );
    // tensor info: name "t", 2 dims stored innermost first (3, 2), type F32 (0), offset 0
    assert.deepEqual([Number(v.getBigUint64(43, true)), bytes[51], v.getUint32(52, true)], [1, "t".charCodeAt(0), 2]);
    assert.deepEqual(
      [
        Number(v.getBigUint64(56, true)),
        Number(v.getBigUint64(64, true)),
        v.getUint32(72, true),
        Number(v.getBigUint64(76, true)),
      ],
      [3, 2, 0, 0],
    );
    // the data starts at the next multiple of 32 after the 84 header bytes
    assert.deepEqual(
      Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + 96, bytes.byteOffset + 120))),
      [1, 2, 3, 4, 5, 6],
    );
    const back = parseGguf(bytes);
    assert.equal(back.metadata.get("a.b"), 7);
    assert.deepEqual(back.tensors.get("t")!.shape, [2, 3]);
  });

  it("Q8_0: d = max|x|/127 as float16, q = round half away from zero (ggml's reference quantiser)", () => {
    const x = Float32Array.from({ length: 32 }, (_, i) => (i - 10) * 0.25); // max |x| = 21·0.25 = 5.25
    const q = quantizeQ8_0(x);
    const d = fromFloat16Bits(new DataView(q.buffer).getUint16(0, true));
    // 5.25/127 = 0.0413386; the nearest float16 is 2^-5 + 331·2^-15 = 0.041351318359375
    assert.equal(d, 0.041351318359375);
    const ints = Array.from(new Int8Array(q.buffer, 2, 32));
    const expected = Array.from(x, (v) => {
      const r = Math.fround(v * Math.fround(1 / Math.fround(5.25 / 127)));
      return Math.sign(r) * Math.round(Math.abs(r));
    });
    assert.deepEqual(ints, expected);
    assert.equal(ints[31], 127);
    assert.equal(ints[0], -60); // -2.5·127/5.25 = -60.476…
    const back = dequantizeQ8_0(q);
    for (let i = 0; i < 32; i++) assert.ok(Math.abs(back[i]! - x[i]!) <= d / 2 + 1e-6, `value ${i}`);
    assert.throws(() => quantizeQ8_0(new Float32Array(33)), /multiple of 32/);
  });
});

/** Greedy tokens and the first step's top-5 probabilities from peft-ts. */
function ours(
  model: GenerativeModel | PeftModel,
  ids: number[],
  steps: number,
): { tokens: number[]; top: [number, number][] } {
  const input = T.tensor(Int32Array.from(ids), [1, ids.length], "int32");
  const out = Array.from(model.generate({ inputIds: input, maxNewTokens: steps }).dataSync()).slice(ids.length);
  const logits = (model.forward({ inputIds: input }) as ModelOutput).logits;
  const vocab = logits.shape[2]!;
  const last = Array.from(logits.dataSync().subarray((ids.length - 1) * vocab, ids.length * vocab));
  const max = Math.max(...last);
  const exp = last.map((v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  const top = exp
    .map((e, i) => [i, e / sum] as [number, number])
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5);
  return { tokens: out, top };
}

const PROMPT = [1457, 882, 198, 15, 40, 300, 1458, 198, 1457, 64, 198];
const STEPS = 10;
const EOS = 1458;

describe("exported GGUF files in llama.cpp", {
  skip: existsSync(LLAMA_CPP) ? false : "node-llama-cpp is not installed (bash scripts/setup.sh --with-test-tools)",
}, () => {
  let dir: string;
  // biome-ignore lint/suspicious/noExplicitAny: node-llama-cpp is an optional test tool, imported untyped
  let llama: any;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "peft-ts-gguf-"));
    const { getLlama } = (await import(pathToFileURL(LLAMA_CPP).href)) as { getLlama: (o: object) => Promise<unknown> };
    llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: "error" });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Greedy tokens and first-step probabilities of a GGUF model (+ adapter) in llama.cpp. */
  async function theirs(model: string, adapter?: string): Promise<{ tokens: number[]; top: Map<number, number> }> {
    const m = await llama.loadModel({ modelPath: model });
    const ctx = await m.createContext({
      contextSize: 128,
      sequences: 1,
      ...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
    });
    try {
      const tokens: number[] = [];
      let top: Map<number, number> | null = null;
      for await (const r of ctx
        .getSequence()
        .evaluateWithMetadata(PROMPT, { probabilities: true }, { temperature: 0 })) {
        top ??= r.probabilities as Map<number, number>;
        if (r.token === EOS) break; // llama.cpp stops at end of generation; peft-ts reports the token
        tokens.push(r.token);
        if (tokens.length >= STEPS) break;
      }
      return { tokens, top: top! };
    } finally {
      await ctx.dispose();
      await m.dispose();
    }
  }

  function assertSameRun(
    mine: { tokens: number[]; top: [number, number][] },
    other: { tokens: number[]; top: Map<number, number> },
    what: string,
  ): void {
    const cut = mine.tokens.indexOf(EOS);
    assert.deepEqual(other.tokens, cut < 0 ? mine.tokens : mine.tokens.slice(0, cut), `${what}: greedy tokens`);
    for (const [id, p] of mine.top)
      assert.ok(Math.abs(other.top.get(id)! - p) < 1e-3, `${what}: P(${id}) ${other.top.get(id)} vs ${p}`);
  }

  /** A random tiny model of `config` with the shipped tokenizer, saved to dir/name. */
  function tinyModel(name: string, config: Record<string, unknown>): string {
    const out = join(dir, name);
    T.manualSeed(5);
    AutoModelForCausalLM.fromConfig({ vocab_size: 1459, initializer_range: 0.2, ...config }).savePretrained(out);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(TINY_BARD, f), join(out, f));
    return out;
  }

  const cases: [string, () => string, Record<string, unknown>][] = [
    [
      "qwen2 (tiny-bard)",
      () => TINY_BARD,
      { use_rslora: true, rank_pattern: { q_proj: 2 }, alpha_pattern: { down_proj: 3 } },
    ],
    [
      "llama (query/key rows permuted)",
      () =>
        tinyModel("llama", {
          model_type: "llama",
          hidden_size: 64,
          intermediate_size: 128,
          num_hidden_layers: 2,
          num_attention_heads: 4,
          num_key_value_heads: 2,
          max_position_embeddings: 128,
          rms_norm_eps: 1e-5,
          tie_word_embeddings: false,
        }),
      {},
    ],
    [
      "gpt2 (Conv1D weights transposed)",
      () =>
        tinyModel("gpt2", {
          model_type: "gpt2",
          n_embd: 64,
          n_layer: 2,
          n_head: 4,
          n_positions: 128,
          layer_norm_epsilon: 1e-5,
        }),
      {},
    ],
  ];
  for (const [what, modelDir, loraExtra] of cases) {
    it(`${what}: the model and a LoRA adapter give peft-ts' greedy tokens and probabilities`, async () => {
      const src = modelDir();
      const name = what.split(" ")[0]!;
      const modelFile = join(dir, `${name}.gguf`);
      const run = (args: string[]) => {
        const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
      };
      run(["export", "gguf", "--model", src, "--outtype", "f32", "--out", modelFile]);
      assertSameRun(
        ours(AutoModelForCausalLM.fromPretrained(src), PROMPT, STEPS),
        await theirs(modelFile),
        `${what} model`,
      );

      const adapterDir = join(dir, `${name}-lora`);
      T.manualSeed(9);
      getPeftModel(
        AutoModelForCausalLM.fromPretrained(src),
        LoraConfig({
          task_type: "CAUSAL_LM",
          r: 4,
          lora_alpha: 8,
          target_modules: "all-linear",
          init_lora_weights: false,
          fan_in_fan_out: name === "gpt2",
          ...loraExtra,
        }),
      ).savePretrained(adapterDir);
      const adapterFile = join(dir, `${name}-lora.gguf`);
      run(["export", "gguf", "--adapter", adapterDir, "--model", src, "--out", adapterFile]);
      const adapted = PeftModel.fromPretrained(AutoModelForCausalLM.fromPretrained(src), adapterDir);
      assertSameRun(ours(adapted, PROMPT, STEPS), await theirs(modelFile, adapterFile), `${what} + LoRA`);

      const header = parseGguf(readFileSync(adapterFile));
      assert.equal(header.metadata.get("general.type"), "adapter");
      assert.equal(header.metadata.get("adapter.type"), "lora");
      assert.equal(header.metadata.get("adapter.lora.alpha"), 8);
      assert.ok(
        [...header.tensors.keys()].every((k) => /^blk\.\d+\.\w+\.weight\.lora_[ab]$/.test(k)),
        [...header.tensors.keys()].join(", "),
      );
    });
  }

  it("a Q8_0 model (a quarter of the float32 size) runs and picks the same first token", async () => {
    const file = join(dir, "q8.gguf");
    const r = spawnSync(
      process.execPath,
      [CLI, "export", "gguf", "--model", TINY_BARD, "--outtype", "q8_0", "--out", file],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const parsed = parseGguf(readFileSync(file));
    assert.equal(parsed.tensors.get("blk.0.attn_q.weight")!.type, 8);
    assert.equal(parsed.tensors.get("blk.0.attn_norm.weight")!.type, 0);
    const mine = ours(AutoModelForCausalLM.fromPretrained(TINY_BARD), PROMPT, 1);
    assert.equal((await theirs(file)).tokens[0], mine.tokens[0]);
  });
});

describe("peft export", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "peft-ts-export-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("ollama: model.gguf, adapter.gguf and a Modelfile with FROM, ADAPTER, the ChatML template and stops", () => {
    const adapterDir = join(dir, "lora");
    getPeftModel(
      AutoModelForCausalLM.fromPretrained(TINY_BARD),
      LoraConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: ["q_proj"] }),
    ).savePretrained(adapterDir);
    const r = spawnSync(
      process.execPath,
      [CLI, "export", "ollama", "--model", TINY_BARD, "--adapter", adapterDir, "--out", join(dir, "ollama")],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const text = readFileSync(join(dir, "ollama", "Modelfile"), "utf8");
    assert.match(text, /^FROM \.\/model\.gguf$/m);
    assert.match(text, /^ADAPTER \.\/adapter\.gguf$/m);
    assert.match(text, /TEMPLATE """[\s\S]*<\|im_start\|>\{\{ \.Role \}\}\n\{\{ \.Content \}\}<\|im_end\|>[\s\S]*"""/);
    assert.match(text, /^PARAMETER stop "<\|im_end\|>"$/m);
    assert.equal(
      parseGguf(readFileSync(join(dir, "ollama", "adapter.gguf"))).metadata.get("general.architecture"),
      "qwen2",
    );
  });

  it("refuses what llama.cpp adapters cannot hold, naming the field", () => {
    const adapterDir = join(dir, "dora");
    getPeftModel(
      AutoModelForCausalLM.fromPretrained(TINY_BARD),
      LoraConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: ["q_proj"], use_dora: true }),
    ).savePretrained(adapterDir);
    const r = spawnSync(
      process.execPath,
      [CLI, "export", "gguf", "--adapter", adapterDir, "--model", TINY_BARD, "--out", join(dir, "x.gguf")],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot hold "use_dora"/);
    assert.ok(!existsSync(join(dir, "x.gguf")));
  });
});
