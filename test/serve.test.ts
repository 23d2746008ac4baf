/**
 * `peft serve` end to end on 127.0.0.1: every endpoint, the official openai client unchanged (chat and completions,
 * streaming, stop strings), completions equal generate() run alone with the same adapter, adapters loaded and
 * unloaded at run time, OpenAI-style errors with the right status for bad input, the API key, and a client that
 * disconnects mid-stream freeing its slot at once.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn, spawnSync } from "node:child_process";
import OpenAI from "openai";
import { fromPretrained } from "../src/models/auto.js";
import type { BitsAndBytesConfig } from "../src/models/quantization.js";
import { PeftModel } from "../src/peft/index.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../src/tokenizers/index.js";
import { copyInto, noGrad, tensor } from "../src/tensor/index.js";
import { roundToHalfInPlace } from "../src/backend/half.js";
import { PeftServer } from "../src/serve/server.js";
import { ServedModel } from "../src/serve/model.js";
import { bpeTokenizerJson, qwenConfig, writeFolder } from "./tokenizer-fixtures.js";
import { gpt2 } from "./tiny-models.js";

const ROOT = fileURLToPath(new URL("../../test/fixtures/mixed-batch/gpt2/", import.meta.url));
/** A short chat template: the tiny models have 32 positions, too few for Qwen2's default system prompt. */
const TEMPLATE =
  "{% for m in messages %}{{ m['role'][0] + ':' + m['content'] + '\n' }}{% endfor %}{% if " +
  "add_generation_prompt %}{{ 'a:' }}{% endif %}";
const tokenizer = (): PreTrainedTokenizer =>
  AutoTokenizer.fromPretrainedSync(
    writeFolder({
      "tokenizer.json": bpeTokenizerJson("qwen2"),
      "tokenizer_config.json": { ...qwenConfig(), chat_template: TEMPLATE },
    }),
  );

function fixtureModel(): ServedModel {
  const m = new ServedModel(fromPretrained(join(ROOT, "model"), "causal-lm"));
  for (const a of ["left", "right"]) m.loadAdapter(a, join(ROOT, "adapters", a));
  return m;
}

/**
 * Greedy continuation of ids by generate() alone, with each token's log-probability: the base model, or it with one
 * adapter (independent of the server). With `roundedTo`, the base weights are rounded to that half format but kept
 * (and computed) in float32; with `quantizationConfig`, the base model is quantised on load.
 */
function greedyAloneDetailed(
  ids: number[],
  adapter: string | null,
  n: number,
  opts: { roundedTo?: "bfloat16" | "float16"; quantizationConfig?: BitsAndBytesConfig } = {},
): { tokens: number[]; logprobs: number[] } {
  const { roundedTo, quantizationConfig } = opts;
  const base = fromPretrained(join(ROOT, "model"), "causal-lm", quantizationConfig ? { quantizationConfig } : {});
  if (roundedTo)
    for (const p of base.parameters()) {
      const values = p.dataSync() as Float32Array;
      roundToHalfInPlace(values, roundedTo);
      noGrad(() => copyInto(p, tensor(values, p.shape)));
    }
  const model = adapter
    ? PeftModel.fromPretrained(base, join(ROOT, "adapters", adapter), { adapterName: adapter })
    : base;
  const out = model.generateDetailed({
    inputIds: tensor(Int32Array.from(ids), [1, ids.length], "int32"),
    maxNewTokens: n,
    eosTokenId: -1,
  });
  return { tokens: Array.from(out.sequences.dataSync()).slice(ids.length), logprobs: out.logprobs[0]! };
}

/** The tokens of greedyAloneDetailed. */
function greedyAlone(ids: number[], adapter: string | null, n: number): number[] {
  return greedyAloneDetailed(ids, adapter, n).tokens;
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The JSON events of a server-sent event stream, and whether it ended with [DONE]. */
// biome-ignore lint/suspicious/noExplicitAny: the tests read OpenAI chunks of several shapes
function events(text: string): { chunks: any[]; done: boolean } {
  const data = text
    .split("\n\n")
    .filter((e) => e.startsWith("data: "))
    .map((e) => e.slice(6));
  return {
    chunks: data.filter((d) => d !== "[DONE]").map((d) => JSON.parse(d)),
    done: data[data.length - 1] === "[DONE]",
  };
}

describe("peft serve", () => {
  const tok = tokenizer();
  const server = new PeftServer(fixtureModel(), tok, { modelName: "tiny", maxTokens: 20 });
  let url = "";
  let client: OpenAI;
  before(async () => {
    url = await server.listen(0);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => server.close());

  it("/health, /v1/models and the page at /", async () => {
    assert.equal((await fetch(`${url}/health`)).status, 200);
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(
      models.data.map((m: { id: string }) => m.id),
      ["tiny", "left", "right"],
    );
    assert.equal(models.data[1].parent, "tiny");
    const page = await fetch(`${url}/`);
    assert.match(page.headers.get("content-type")!, /text\/html/);
    assert.match(await page.text(), /\/v1\/chat\/completions/);
  });

  it("a completion equals generate() alone with the same adapter (greedy), with usage and logprobs", async () => {
    const prompt = "hello world";
    const ids = tok.encode(prompt);
    for (const model of ["tiny", "left", "right"]) {
      const res = await post(`${url}/v1/completions`, {
        model,
        prompt,
        max_tokens: 8,
        temperature: 0,
        logprobs: 1,
        ignore_eos: true,
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      const expected = greedyAlone(ids, model === "tiny" ? null : model, 8);
      assert.equal(body.choices[0].text, tok.decode(expected, { skipSpecialTokens: true }), model);
      assert.deepEqual(body.usage, { prompt_tokens: ids.length, completion_tokens: 8, total_tokens: ids.length + 8 });
      assert.equal(body.choices[0].logprobs.token_logprobs.length, 8);
      assert.ok(body.choices[0].logprobs.token_logprobs.every((lp: number) => lp <= 0));
      assert.equal(body.choices[0].finish_reason, "length");
    }
  });

  it("stream: true sends OpenAI chunks whose text joins to the non-streamed text, then [DONE]", async () => {
    const body = { model: "left", prompt: "hello", max_tokens: 10, temperature: 0, ignore_eos: true };
    const whole = (await (await post(`${url}/v1/completions`, body)).json()).choices[0].text;
    const res = await post(`${url}/v1/completions`, { ...body, stream: true, stream_options: { include_usage: true } });
    assert.match(res.headers.get("content-type")!, /text\/event-stream/);
    const { chunks, done } = events(await res.text());
    assert.ok(done);
    assert.equal(
      chunks
        .filter((c) => c.choices.length)
        .map((c) => c.choices[0].text)
        .join(""),
      whole,
    );
    assert.equal(chunks.at(-2).choices[0].finish_reason, "length");
    assert.equal(chunks.at(-1).usage.completion_tokens, 10);
    assert.ok(chunks.every((c) => c.object === "text_completion"));
  });

  it("the openai client works unchanged: chat, chat streaming with a stop string, completions, models", async () => {
    const messages = [{ role: "user" as const, content: "hello" }];
    const chat = await client.chat.completions.create({ model: "right", messages, max_tokens: 12, temperature: 0 });
    const ids = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    const expected = tok.decode(greedyAlone(ids, "right", 12), { skipSpecialTokens: true });
    assert.equal(chat.choices[0]!.message.content, expected);
    assert.equal(chat.choices[0]!.message.role, "assistant");
    assert.equal(chat.usage!.prompt_tokens, ids.length);

    const stop = expected.slice(3, 5);
    const cut = expected.slice(0, expected.indexOf(stop));
    const stream = await client.chat.completions.create({
      model: "right",
      messages,
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stop: [stop],
    });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, cut);
    assert.equal(finish, "stop");
    const stopped = await client.completions.create({
      model: "tiny",
      prompt: "hello",
      max_tokens: 8,
      temperature: 0,
      stop: "zz",
    });
    assert.equal(typeof stopped.choices[0]!.text, "string");
    assert.deepEqual(
      (await client.models.list()).data.map((m) => m.id),
      ["tiny", "left", "right"],
    );
  });

  it("seeded sampling is reproducible per request", async () => {
    const body = { model: "left", prompt: "hello", max_tokens: 10, temperature: 1.2, seed: 7, ignore_eos: true };
    const [a, b] = await Promise.all([post(`${url}/v1/completions`, body), post(`${url}/v1/completions`, body)]);
    assert.equal((await a.json()).choices[0].text, (await b.json()).choices[0].text);
  });

  it("adapters load and unload at run time (vLLM's endpoints)", async () => {
    let res = await post(`${url}/v1/load_lora_adapter`, {
      lora_name: "again",
      lora_path: join(ROOT, "adapters", "right"),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(await res.text(), /Success/);
    const viaNew = await (
      await post(`${url}/v1/completions`, { model: "again", prompt: "hello", max_tokens: 6, temperature: 0 })
    ).json();
    const viaOld = await (
      await post(`${url}/v1/completions`, { model: "right", prompt: "hello", max_tokens: 6, temperature: 0 })
    ).json();
    assert.equal(viaNew.choices[0].text, viaOld.choices[0].text);
    assert.equal(
      (await post(`${url}/v1/load_lora_adapter`, { lora_name: "again", lora_path: join(ROOT, "adapters", "right") }))
        .status,
      400,
    );
    assert.equal(
      (await post(`${url}/v1/load_lora_adapter`, { lora_name: "bad", lora_path: "/nonexistent/adapter" })).status,
      400,
    );
    res = await post(`${url}/v1/unload_lora_adapter`, { lora_name: "again" });
    assert.equal(res.status, 200);
    assert.equal((await post(`${url}/v1/completions`, { model: "again", prompt: "hello" })).status, 404);
    assert.equal((await post(`${url}/v1/unload_lora_adapter`, { lora_name: "again" })).status, 404);
  });

  it("bad input gets the right 4xx and an OpenAI error body, and the server keeps serving", async () => {
    const cases: [string, unknown, number, string | null, string][] = [
      ["/v1/completions", "{not json", 400, null, "invalid_json"],
      ["/v1/completions", [1, 2], 400, null, "invalid_body"],
      ["/v1/completions", { model: "tiny", prompt: "hi", bogus: 1 }, 400, "bogus", "unknown_field"],
      ["/v1/completions", { model: "tiny", prompt: 42 }, 400, "prompt", "invalid_type"],
      ["/v1/completions", { model: "tiny", prompt: "hi", max_tokens: "8" }, 400, "max_tokens", "invalid_type"],
      ["/v1/completions", { model: "tiny", prompt: "hi", temperature: 5 }, 400, "temperature", "invalid_value"],
      ["/v1/completions", { model: "tiny", prompt: "hi", n: 2 }, 400, "n", "unsupported_value"],
      ["/v1/completions", { model: "tiny" }, 400, "prompt", "missing_field"],
      ["/v1/completions", { model: "nope", prompt: "hi" }, 404, "model", "model_not_found"],
      ["/v1/completions", { model: "tiny", prompt: "hello ".repeat(40) }, 400, "prompt", "context_length_exceeded"],
      ["/v1/completions", { model: "tiny", prompt: "hi", max_tokens: 21 }, 400, "max_tokens", "invalid_value"],
      [
        "/v1/chat/completions",
        { model: "tiny", messages: [{ role: "user", content: "hello ".repeat(40) }] },
        400,
        "messages",
        "context_length_exceeded",
      ],
      ["/v1/chat/completions", { model: "tiny", messages: [{ role: "user" }] }, 400, "messages", "invalid_type"],
      ["/v1/chat/completions", { model: "tiny", messages: "hi" }, 400, "messages", "invalid_type"],
      ["/v1/load_lora_adapter", { lora_name: "x" }, 400, "lora_path", "missing_field"],
    ];
    for (const [path, body, status, param, code] of cases) {
      const res = await post(`${url}${path}`, body);
      const json = await res.json();
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${JSON.stringify(json)}`);
      assert.deepEqual(
        [json.error.param, json.error.code, typeof json.error.message, typeof json.error.type],
        [param, code, "string", "string"],
        JSON.stringify(body),
      );
    }
    assert.equal((await fetch(`${url}/v1/completions`)).status, 405);
    assert.equal((await fetch(`${url}/v1/nothing`)).status, 404);
    assert.equal((await post(`${url}/v1/completions`, { model: "tiny", prompt: "hi", max_tokens: 2 })).status, 200);
  });

  it("/metrics reports queue length, tokens/s, loaded and active adapters", async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const name of [
      "peft_queue_length 0",
      "peft_running_sequences 0",
      "peft_loaded_adapters 2",
      "peft_tokens_per_second ",
      "peft_generated_tokens_total ",
    ])
      assert.ok(text.includes(name), name);
    assert.match(text, /peft_requests_total\{path="\/v1\/completions",status="200"\} \d+/);
  });
});

describe("peft serve: API key, a model without adapters, disconnects", () => {
  const server = new PeftServer(new ServedModel(gpt2(11, { n_positions: 4096 })), tokenizer(), {
    modelName: "base",
    apiKey: "sekret",
    maxTokens: 4000,
  });
  let url = "";
  const auth = { authorization: "Bearer sekret" };
  before(async () => (url = await server.listen(0)));
  after(() => server.close());

  it("/v1/ needs the Bearer key; /health does not", async () => {
    assert.equal((await fetch(`${url}/v1/models`)).status, 401);
    assert.equal((await fetch(`${url}/v1/models`, { headers: { authorization: "Bearer wrong" } })).status, 401);
    assert.equal((await fetch(`${url}/v1/models`, { headers: auth })).status, 200);
    assert.equal((await fetch(`${url}/health`)).status, 200);
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sekret", maxRetries: 0 });
    assert.deepEqual(
      (await openai.models.list()).data.map((m) => m.id),
      ["base"],
    );
  });

  it("an adapter loads into a model served without one", async () => {
    assert.equal(
      (
        await post(
          `${url}/v1/load_lora_adapter`,
          { lora_name: "left", lora_path: join(ROOT, "adapters", "left") },
          auth,
        )
      ).status,
      200,
    );
    const res = await post(
      `${url}/v1/completions`,
      { model: "left", prompt: "hello", max_tokens: 4, temperature: 0 },
      auth,
    );
    assert.equal(res.status, 200);
    assert.equal((await post(`${url}/v1/unload_lora_adapter`, { lora_name: "left" }, auth)).status, 200);
  });

  it("a client that disconnects mid-stream frees its slot at once", async () => {
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      signal: abort.signal,
      body: JSON.stringify({
        model: "base",
        prompt: "hello",
        max_tokens: 4000,
        temperature: 0,
        ignore_eos: true,
        stream: true,
      }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    assert.equal(server.engine.stats().running, 1);
    abort.abort();
    const started = Date.now();
    while (server.engine.stats().running > 0 && Date.now() - started < 2000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(server.engine.stats().running, 0, "the sequence left the batch");
    assert.ok(server.engine.stats().generatedTokens < 4000, "it stopped long before max_tokens");
    const ok = await post(
      `${url}/v1/completions`,
      { model: "base", prompt: "hello", max_tokens: 3, temperature: 0 },
      auth,
    );
    assert.equal(ok.status, 200);
  });
});

describe("peft serve: the command", () => {
  const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

  /**
   * Run `peft serve` on a free port with the "left" adapter and `extra` options; returns its greedy completion of
   * "hello" by "left" (6 tokens with log-probabilities) after checking /v1/models and that SIGTERM stops it cleanly.
   */
  async function serveCompletion(
    extra: string[],
  ): Promise<{ text: string; logprobs: number[]; ids: number[]; tok: PreTrainedTokenizer }> {
    const tokenizerDir = writeFolder({
      "tokenizer.json": bpeTokenizerJson("qwen2"),
      "tokenizer_config.json": qwenConfig(),
    });
    const args = ["serve", "--model", join(ROOT, "model"), "--tokenizer", tokenizerDir];
    const child = spawn(
      process.execPath,
      [
        cli,
        ...args,
        "--adapter",
        `left=${join(ROOT, "adapters", "left")}`,
        "--port",
        "0",
        "--served-model-name",
        "tiny",
        ...extra,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = "";
        child.stderr!.on("data", (d: Buffer) => {
          err += d.toString();
          const m = /listening on (http:\/\/\S+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        child.once("exit", (code) => reject(new Error(`peft serve exited with ${code}: ${err}`)));
      });
      const models = await (await fetch(`${url}/v1/models`)).json();
      assert.deepEqual(
        models.data.map((m: { id: string }) => m.id),
        ["tiny", "left"],
      );
      const res = await post(`${url}/v1/completions`, {
        model: "left",
        prompt: "hello",
        max_tokens: 6,
        temperature: 0,
        ignore_eos: true,
        logprobs: 1,
      });
      assert.equal(res.status, 200);
      const choice = (await res.json()).choices[0];
      const tok = AutoTokenizer.fromPretrainedSync(tokenizerDir);
      return { text: choice.text, logprobs: choice.logprobs.token_logprobs, ids: tok.encode("hello"), tok };
    } finally {
      child.kill("SIGTERM");
      assert.equal(await new Promise((resolve) => child.once("exit", resolve)), 0);
    }
  }

  /** The served completion has the tokens of `expected`, and its log-probabilities within 1e-4. */
  function assertSame(
    served: { text: string; logprobs: number[]; tok: PreTrainedTokenizer },
    expected: { tokens: number[]; logprobs: number[] },
  ) {
    assert.equal(served.text, served.tok.decode(expected.tokens, { skipSpecialTokens: true }));
    for (const [i, lp] of served.logprobs.entries())
      assert.ok(Math.abs(lp - expected.logprobs[i]!) < 1e-4, `token ${i}: ${lp} against ${expected.logprobs[i]}`);
  }

  it("starts on a free port with NAME=DIR adapters and --dtype bfloat16, serves, and stops on SIGTERM", async () => {
    const served = await serveCompletion(["--dtype", "bfloat16"]);
    // The base weights are bfloat16: float32 arithmetic on the rounded weights gives the same tokens, and the same
    // log-probabilities up to summation order (unrounded weights move them by ~1e-3).
    assertSame(served, greedyAloneDetailed(served.ids, "left", 6, { roundedTo: "bfloat16" }));
  });

  it("--quantization bitsandbytes serves the base model in 4-bit NF4", async () => {
    const served = await serveCompletion(["--quantization", "bitsandbytes"]);
    const quantizationConfig: BitsAndBytesConfig = {
      load_in_4bit: true,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_use_double_quant: true,
    };
    assertSame(served, greedyAloneDetailed(served.ids, "left", 6, { quantizationConfig }));
  });

  it("refuses an --adapter without NAME=", () => {
    const r = spawnSync(
      process.execPath,
      [cli, "serve", "--model", join(ROOT, "model"), "--adapter", join(ROOT, "adapters", "left")],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /expected NAME=DIR/);
  });

  it("refuses an unknown --quantization", () => {
    const r = spawnSync(process.execPath, [cli, "serve", "--model", join(ROOT, "model"), "--quantization", "nf4"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--quantization must be bitsandbytes, got "nf4"/);
  });

  it("refuses an unknown --dtype", () => {
    const r = spawnSync(process.execPath, [cli, "serve", "--model", join(ROOT, "model"), "--dtype", "bf16"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--dtype must be one of auto, float32, bfloat16, float16, got "bf16"/);
  });

  it("refuses a negative scheduling option by name", () => {
    for (const flag of ["--waiting-served-ratio", "--drain-wait-steps"]) {
      const r = spawnSync(process.execPath, [cli, "serve", "--model", join(ROOT, "model"), `${flag}=-1`], {
        encoding: "utf8",
      });
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`${flag} must be .*≥ 0, got -1`));
    }
  });
});
