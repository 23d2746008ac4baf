/**
 * generate(): the KV-cache path agrees with recomputing the whole sequence at every step (decoder-only and
 * encoder-decoder), left padding does not change a prompt's continuation, seeded sampling is reproducible, and the
 * logits processors give hand-computed values on small fixed score rows.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import {
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  sampleIndex,
  softmax,
} from "../src/generation/index.js";
import { type Tensor, memory, noGrad, tensor, tidy } from "../src/tensor/index.js";
import { modelDir, readInputs } from "./golden.js";

function rows(t: Tensor): number[][] {
  const [b, n] = t.shape as [number, number];
  const v = Array.from(t.dataSync());
  return Array.from({ length: b }, (_, r) => v.slice(r * n, (r + 1) * n));
}

function ids(r: number[][]): Tensor {
  return tensor(Int32Array.from(r.flat()), [r.length, r[0]!.length], "int32");
}

/** argmax over the last position's logits of every row. */
function lastArgmax(logits: Tensor): number[] {
  const [b, t, v] = logits.shape as [number, number, number];
  const data = logits.dataSync();
  return Array.from({ length: b }, (_, r) => {
    const row = Float64Array.from(data.subarray((r * t + t - 1) * v, (r * t + t) * v));
    return argmax(row);
  });
}

/**
 * Greedy decoding of a decoder-only model without a cache: every step runs the model on the whole sequence so far,
 * with transformers' positions for left padding (cumsum(mask) − 1, pads at 1). Rows that emitted eos continue with pad.
 */
function greedyRecomputeCausal(
  model: PreTrainedModel,
  prompt: number[][],
  promptMask: number[][],
  maxNew: number,
  eos: number,
  pad: number,
): number[][] {
  const seqs = prompt.map((r) => [...r]);
  const masks = promptMask.map((r) => [...r]);
  const done = seqs.map(() => false);
  for (let step = 0; step < maxNew; step++) {
    const next = tidy(() => {
      const positions = masks.map((row) => {
        let seen = 0;
        return row.map((m) => (m === 1 ? seen++ : 1));
      });
      const out = noGrad(() =>
        model.forward({ inputIds: ids(seqs), attentionMask: ids(masks), positionIds: ids(positions) }),
      ) as ModelOutput;
      return lastArgmax(out.logits);
    });
    next.forEach((tok, r) => {
      const t = done[r] ? pad : tok;
      seqs[r]!.push(t);
      masks[r]!.push(1);
      if (t === eos) done[r] = true;
    });
  }
  return seqs;
}

/** Greedy decoding of an encoder-decoder model without a cache: encoder and decoder rerun on everything each step. */
function greedyRecomputeSeq2Seq(
  model: PreTrainedModel,
  source: number[][],
  sourceMask: number[][],
  maxNew: number,
  start: number,
  eos: number,
  pad: number,
): number[][] {
  const seqs = source.map(() => [start]);
  const done = seqs.map(() => false);
  for (let step = 0; step < maxNew; step++) {
    const next = tidy(() => {
      const out = noGrad(() =>
        model.forward({ inputIds: ids(source), attentionMask: ids(sourceMask), decoderInputIds: ids(seqs) }),
      ) as ModelOutput;
      return lastArgmax(out.logits);
    });
    next.forEach((tok, r) => {
      const t = done[r] ? pad : tok;
      seqs[r]!.push(t);
      if (t === eos) done[r] = true;
    });
  }
  return seqs;
}

describe("generate: KV cache vs recomputation", () => {
  for (const name of ["gpt2", "llama", "qwen2", "mistral"]) {
    it(`${name}: greedy with the cache equals greedy recomputing the full left-padded batch`, () => {
      const dir = modelDir(name);
      const model = fromPretrained(dir, "causal-lm");
      const inputs = readInputs(dir);
      const prompt = rows(inputs["genInputIds"]!),
        mask = rows(inputs["genAttentionMask"]!);
      const cached = rows(
        model.generate({
          inputIds: inputs["genInputIds"]!,
          attentionMask: inputs["genAttentionMask"]!,
          maxNewTokens: 10,
        }),
      );
      assert.deepEqual(cached, greedyRecomputeCausal(model, prompt, mask, 10, 2, 0));
    });
  }

  for (const name of ["t5", "mt5"]) {
    it(`${name}: greedy with the decoder cache (self + cross keys) equals greedy recomputing encoder and decoder`, () => {
      const dir = modelDir(name);
      const model = fromPretrained(dir, "seq2seq-lm");
      const inputs = readInputs(dir);
      const source = rows(inputs["genInputIds"]!),
        mask = rows(inputs["genAttentionMask"]!);
      const cached = rows(
        model.generate({
          inputIds: inputs["genInputIds"]!,
          attentionMask: inputs["genAttentionMask"]!,
          maxNewTokens: 10,
        }),
      );
      assert.deepEqual(cached, greedyRecomputeSeq2Seq(model, source, mask, 10, 0, 1, 0));
    });
  }
});

describe("generate: batches", () => {
  for (const name of ["gpt2", "llama"]) {
    it(`${name}: each row of a left-padded batch continues as its prompt alone`, () => {
      const dir = modelDir(name);
      const model = fromPretrained(dir, "causal-lm");
      const inputs = readInputs(dir);
      const prompt = rows(inputs["genInputIds"]!),
        mask = rows(inputs["genAttentionMask"]!);
      assert.ok(mask[1]!.includes(0), "row 1 of the golden generation batch is left-padded");
      const batch = rows(
        model.generate({
          inputIds: inputs["genInputIds"]!,
          attentionMask: inputs["genAttentionMask"]!,
          maxNewTokens: 6,
        }),
      );
      prompt.forEach((row, r) => {
        const alone = row.filter((_, j) => mask[r]![j] === 1);
        const single = rows(model.generate({ inputIds: ids([alone]), maxNewTokens: 6 }))[0]!;
        assert.deepEqual(single.slice(0, alone.length), alone, "the prompt is returned first");
        assert.deepEqual(batch[r]!.slice(row.length), single.slice(alone.length), `row ${r}: new tokens`);
      });
    });
  }
});

describe("generate: memory", () => {
  for (const [name, task] of [
    ["gpt2", "causal-lm"],
    ["t5", "seq2seq-lm"],
  ] as const) {
    it(`${name}: frees its cache and encoder output, leaves the caller's tensors alone`, () => {
      const dir = modelDir(name);
      const model = fromPretrained(dir, task);
      const inputs = readInputs(dir);
      const opts = { inputIds: inputs["genInputIds"]!, attentionMask: inputs["genAttentionMask"]!, maxNewTokens: 6 };
      model.generate(opts).dispose();
      const before = memory().liveBytes;
      for (let i = 0; i < 3; i++) {
        model.generate(opts).dispose();
        model.generate({ ...opts, attentionMask: undefined, doSample: true }).dispose();
      }
      assert.equal(memory().liveBytes, before);
      assert.ok(!opts.inputIds.isDisposed && !opts.attentionMask.isDisposed);
    });
  }
});

describe("generate: sampling", () => {
  it("is reproducible with a seed, differs with another seed, and top-k 1 sampling is greedy (gpt2)", () => {
    const dir = modelDir("gpt2");
    const model = fromPretrained(dir, "causal-lm");
    const inputs = readInputs(dir);
    const base = { inputIds: inputs["genInputIds"]!, attentionMask: inputs["genAttentionMask"]!, maxNewTokens: 12 };
    const a = rows(model.generate({ ...base, doSample: true, seed: 1234 }));
    const b = rows(model.generate({ ...base, doSample: true, seed: 1234 }));
    const c = rows(model.generate({ ...base, doSample: true, seed: 4321 }));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const prompt = rows(inputs["genInputIds"]!);
    for (const [r, row] of a.entries()) {
      assert.deepEqual(row.slice(0, 6), prompt[r], "prompt kept");
      assert.ok(
        row.every((t) => Number.isInteger(t) && t >= 0 && t < 256),
        "ids inside the vocabulary",
      );
    }
    const greedy = rows(model.generate(base));
    assert.deepEqual(rows(model.generate({ ...base, doSample: true, topK: 1, seed: 99 })), greedy);
    // With a tiny temperature the distribution collapses onto the argmax as well (over the 6 golden steps, whose
    // top-2 logit gaps are ≥ 2e-3, i.e. ≥ 200 after dividing by 1e-5).
    const six = { ...base, maxNewTokens: 6 };
    assert.deepEqual(
      rows(model.generate({ ...six, doSample: true, temperature: 1e-5, seed: 7 })),
      rows(model.generate(six)),
    );
  });

  it("is reproducible for an encoder-decoder model (t5)", () => {
    const dir = modelDir("t5");
    const model = fromPretrained(dir, "seq2seq-lm");
    const inputs = readInputs(dir);
    const base = {
      inputIds: inputs["genInputIds"]!,
      attentionMask: inputs["genAttentionMask"]!,
      maxNewTokens: 8,
      doSample: true,
      topP: 0.9,
    };
    assert.deepEqual(rows(model.generate({ ...base, seed: 5 })), rows(model.generate({ ...base, seed: 5 })));
  });
});

describe("logits processors (hand-computed)", () => {
  const row = (...v: number[]) => Float64Array.from(v);
  const NEG = -Infinity;

  it("repetition penalty divides positive and multiplies negative scores of seen tokens, once per token", () => {
    const s = row(2, -1, 0.5, 3);
    applyRepetitionPenalty(s, [0, 1, 1], 2);
    assert.deepEqual(Array.from(s), [1, -2, 0.5, 3]);
    const same = row(2, -1);
    applyRepetitionPenalty(same, [0, 1], 1);
    assert.deepEqual(Array.from(same), [2, -1]);
    assert.throws(() => applyRepetitionPenalty(row(1), [0], 0), /strictly positive/);
  });

  it("temperature divides every score", () => {
    const s = row(2, -1, 0.5, 3);
    applyTemperature(s, 0.5);
    assert.deepEqual(Array.from(s), [4, -2, 1, 6]);
    const t = row(3, -6);
    applyTemperature(t, 3);
    assert.deepEqual(Array.from(t), [1, -2]);
    assert.throws(() => applyTemperature(row(1), 0), /strictly positive/);
  });

  it("top-k keeps the k best scores and ties with the k-th", () => {
    const s = row(1, 4, 2, 4, 3);
    applyTopK(s, 2);
    assert.deepEqual(Array.from(s), [NEG, 4, NEG, 4, NEG]);
    const t = row(1, 4, 2, 4, 3);
    applyTopK(t, 3);
    assert.deepEqual(Array.from(t), [NEG, 4, NEG, 4, 3]);
    const ties = row(5, 2, 2, 2, 1);
    applyTopK(ties, 2);
    assert.deepEqual(Array.from(ties), [5, 2, 2, 2, NEG]);
    const all = row(1, 2, 3);
    applyTopK(all, 3);
    assert.deepEqual(Array.from(all), [1, 2, 3]);
    applyTopK(all, 0);
    assert.deepEqual(Array.from(all), [1, 2, 3]);
  });

  it("top-p keeps the smallest most-likely set whose mass reaches p", () => {
    // Probabilities 1/8, 1/8, 1/4, 1/2 (token order 2, 0, 3, 1 below).
    const scores = () => row(Math.log(0.125), Math.log(0.5), Math.log(0.125), Math.log(0.25));
    const a = scores();
    applyTopP(a, 0.6); // ascending cumulative 1/8, 1/4, 1/2, 1: the two 1/8 tokens lie below 1 − p = 0.4
    assert.deepEqual(Array.from(a).map(Number.isFinite), [false, true, false, true]);
    const b = scores();
    applyTopP(b, 0.3); // 1 − p = 0.7: only the 1/2 token stays
    assert.deepEqual(Array.from(b).map(Number.isFinite), [false, true, false, false]);
    const c = scores();
    applyTopP(c, 0.9); // 1 − p = 0.1 < 1/8: nothing is removed
    assert.deepEqual(Array.from(c).map(Number.isFinite), [true, true, true, true]);
    const d = scores();
    applyTopP(d, 1);
    assert.deepEqual(Array.from(d), Array.from(scores()));
    const e = row(0, 10, 0);
    applyTopP(e, 1e-9); // at least the most likely token is always kept
    assert.deepEqual(Array.from(e).map(Number.isFinite), [false, true, false]);
  });

  it("softmax, argmax and sampling by a uniform number", () => {
    const p = softmax(row(Math.log(1), Math.log(3), NEG));
    assert.ok(Math.abs(p[0]! - 0.25) < 1e-15 && Math.abs(p[1]! - 0.75) < 1e-15 && p[2] === 0);
    assert.equal(argmax(row(1, 3, 3, 2)), 1, "first index on ties");
    const probs = row(0.25, 0, 0.5, 0.25);
    assert.equal(sampleIndex(probs, 0), 0);
    assert.equal(sampleIndex(probs, 0.2499), 0);
    assert.equal(sampleIndex(probs, 0.25), 2, "zero-probability tokens are never drawn");
    assert.equal(sampleIndex(probs, 0.74), 2);
    assert.equal(sampleIndex(probs, 0.76), 3);
    assert.equal(sampleIndex(probs, 0.999999), 3);
  });

  it("processors compose in transformers' order: penalty, temperature, top-k, top-p", () => {
    // Scores 2, 1, 0, -1 with token 0 already generated: penalty 2 → 1, 1, 0, -1; temperature 0.5 → 2, 2, 0, -2;
    // top-k 3 → 2, 2, 0, -inf; top-p 0.8 on probabilities e²/(2e² + 1) ≈ 0.468, 0.468, 0.063: the 0.063 token lies below
    // 1 − p = 0.2 and is removed.
    const s = row(2, 1, 0, -1);
    applyRepetitionPenalty(s, [0], 2);
    applyTemperature(s, 0.5);
    applyTopK(s, 3);
    assert.deepEqual(Array.from(s), [2, 2, 0, NEG]);
    applyTopP(s, 0.8);
    assert.deepEqual(Array.from(s), [2, 2, NEG, NEG]);
    const probs = softmax(s);
    assert.deepEqual(Array.from(probs), [0.5, 0.5, 0, 0]);
  });
});
