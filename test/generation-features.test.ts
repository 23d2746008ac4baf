/**
 * Generation features a server needs: log-probabilities (checked against a full forward pass), maxLength, stop token
 * ids and stop strings (against a plain scan of the greedy output), streaming (callback and async iterator give the
 * same tokens as generate), per-row seeds (a row samples as it does alone) and TextStreamer's text pieces.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { TextStreamer, asGenerative, generateStream, type GenerativeModel } from "../src/generation/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { ConfigError } from "../src/errors.js";
import { memory, noGrad, tensor, tidy } from "../src/tensor/index.js";
import { gpt2, llama } from "./tiny-models.js";

const PROMPT = [3, 17, 42, 5, 9];
const ids = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], "int32");
const row0 = (t: { dataSync(): ArrayLike<number> }) => Array.from(t.dataSync());
/** A stand-in tokenizer: token i is the letter 'a' + i mod 26. */
const letters = { decode: (t: number[]) => t.map((i) => String.fromCharCode(97 + (i % 26))).join("") };

function greedy(model: GenerativeModel, n: number): number[] {
  return row0(model.generate({ inputIds: ids([PROMPT]), maxNewTokens: n })).slice(PROMPT.length);
}

describe("generate: log-probabilities", () => {
  for (const [name, make] of [
    ["gpt2", gpt2],
    ["llama", llama],
  ] as const) {
    it(`${name}: each token's logprob is log softmax of the full forward's logits at its position`, () => {
      const model = asGenerative(make());
      const out = model.generateDetailed({
        inputIds: ids([PROMPT]),
        maxNewTokens: 6,
        doSample: true,
        temperature: 0.7,
        seed: 3,
      });
      const seq = row0(out.sequences);
      const expected = tidy(() => {
        const logits = noGrad(() => (model.forward({ inputIds: ids([seq]) }) as ModelOutput).logits).dataSync();
        const vocab = logits.length / seq.length;
        return seq.slice(PROMPT.length).map((tok, i) => {
          const row = Array.from(logits.subarray((PROMPT.length - 1 + i) * vocab, (PROMPT.length + i) * vocab));
          const max = Math.max(...row);
          return row[tok]! - max - Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        });
      });
      assert.equal(out.logprobs[0]!.length, 6);
      out.logprobs[0]!.forEach((lp, i) => {
        assert.ok(Math.abs(lp - expected[i]!) < 1e-4, `token ${i}: ${lp} vs ${expected[i]}`);
      });
      assert.deepEqual(out.finishReasons, ["length"]);
    });
  }
});

describe("generate: length and stop conditions", () => {
  const model = asGenerative(gpt2());
  const ten = greedy(model, 10);

  it("maxLength counts the prompt; maxNewTokens wins over it; a maxLength without room is a ConfigError", () => {
    assert.deepEqual(
      row0(model.generate({ inputIds: ids([PROMPT]), maxLength: PROMPT.length + 4 })).slice(PROMPT.length),
      ten.slice(0, 4),
    );
    assert.equal(
      row0(model.generate({ inputIds: ids([PROMPT]), maxLength: 7, maxNewTokens: 3 })).length,
      PROMPT.length + 3,
    );
    assert.throws(() => model.generate({ inputIds: ids([PROMPT]), maxLength: PROMPT.length }), ConfigError);
  });

  it("a stop token id ends the row after its first occurrence, with reason stop", () => {
    const stop = ten[3]!;
    const end = ten.indexOf(stop) + 1;
    const out = model.generateDetailed({ inputIds: ids([PROMPT]), maxNewTokens: 10, stopTokenIds: [stop] });
    assert.deepEqual(row0(out.sequences).slice(PROMPT.length), ten.slice(0, end));
    assert.deepEqual(out.finishReasons, ["stop"]);
    assert.equal(out.logprobs[0]!.length, end);
  });

  it("a stop string spanning two tokens ends the row at the token that completes it", () => {
    const text = letters.decode(ten);
    const stop = text.slice(4, 6);
    const end = text.indexOf(stop) + stop.length; // one letter per token
    const out = model.generateDetailed({
      inputIds: ids([PROMPT]),
      maxNewTokens: 10,
      stopStrings: [stop, "zzzz"],
      tokenizer: letters,
    });
    assert.deepEqual(row0(out.sequences).slice(PROMPT.length), ten.slice(0, end));
    assert.deepEqual(out.finishReasons, ["stop"]);
    assert.throws(() => model.generate({ inputIds: ids([PROMPT]), stopStrings: ["x"] }), ConfigError);
  });

  it("rows of a batch stop independently; a stopped row is padded", () => {
    const other = [8, 1, 30, 2, 6];
    const alone = greedy(model, 10);
    const stop = alone[2]!;
    const out = model.generateDetailed({
      inputIds: ids([PROMPT, other]),
      maxNewTokens: 10,
      stopTokenIds: [stop],
      padTokenId: 0,
    });
    const rows = row0(out.sequences);
    const first = rows.slice(PROMPT.length, PROMPT.length + 10);
    const end = alone.indexOf(stop) + 1;
    assert.deepEqual(first.slice(0, end), alone.slice(0, end));
    assert.ok(first.slice(end).every((t) => t === 0));
    assert.equal(out.finishReasons[0], "stop");
  });
});

describe("generate: streaming", () => {
  const model = asGenerative(gpt2());

  it("a streamer gets each step's tokens, then end(); generateStream yields the same steps", async () => {
    const put: number[][] = [];
    let ended = 0;
    const out = model.generateDetailed({
      inputIds: ids([PROMPT]),
      maxNewTokens: 5,
      streamer: { put: (t) => put.push(t), end: () => ended++ },
    });
    assert.deepEqual(
      put.map((t) => t[0]),
      row0(out.sequences).slice(PROMPT.length),
    );
    assert.equal(ended, 1);
    const streamed: number[] = [];
    const logprobs: number[] = [];
    for await (const step of model.generateStream({ inputIds: ids([PROMPT]), maxNewTokens: 5 })) {
      streamed.push(step.tokens[0]!);
      logprobs.push(step.logprobs[0]!);
    }
    assert.deepEqual(
      streamed,
      put.map((t) => t[0]),
    );
    assert.deepEqual(logprobs, out.logprobs[0]);
  });

  it("breaking out of generateStream frees the cache at once", async () => {
    const inputIds = ids([PROMPT]);
    const before = memory().liveBytes;
    let n = 0;
    for await (const _ of generateStream(model, { inputIds, maxNewTokens: 50 })) if (++n === 3) break;
    assert.equal(n, 3);
    assert.equal(memory().liveBytes, before);
  });

  it("TextStreamer emits whole characters only, and its pieces join to the decoded text", () => {
    // Token 7 decodes to half a character until token 8 follows (as byte-level BPE does for multi-byte characters).
    const tok = {
      decode: (t: number[]) =>
        t
          .map((i, j) => (i === 7 ? (t[j + 1] === 8 ? "é" : "\uFFFD") : i === 8 && t[j - 1] === 7 ? "" : `<${i}>`))
          .join(""),
    };
    const pieces: string[] = [];
    const streamer = new TextStreamer(tok, { onText: (text) => pieces.push(text) });
    for (const t of [1, 7, 8, 2]) streamer.put([t]);
    streamer.end();
    assert.deepEqual(pieces, ["<1>", "é", "<2>", ""]);
    assert.throws(() => streamer.put([1, 2]), /one sequence/);
  });
});

describe("generate: seeds per row", () => {
  it("with one seed per row, each row samples exactly as it does alone", () => {
    const model = asGenerative(llama());
    const opts = { maxNewTokens: 8, doSample: true, temperature: 1.5 };
    const alone = [11, 12].map((seed) =>
      row0(model.generate({ ...opts, inputIds: ids([PROMPT]), seed })).slice(PROMPT.length),
    );
    assert.notDeepEqual(alone[0], alone[1]);
    const both = row0(model.generate({ ...opts, inputIds: ids([PROMPT, PROMPT]), seed: [11, 12] }));
    const n = both.length / 2;
    // A row that ends early (eos) is shorter alone; in the batch it is padded after that.
    alone.forEach((seq, r) => {
      assert.deepEqual(both.slice(r * n + PROMPT.length, r * n + PROMPT.length + seq.length), seq);
    });
    assert.throws(() => model.generate({ ...opts, inputIds: ids([PROMPT]), seed: [1, 2] }), ConfigError);
  });
});
