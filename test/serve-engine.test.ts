/**
 * The continuous-batching engine: requests that join and leave a running batch, each with its own adapter (or none),
 * produce exactly the greedy tokens of generate() run on each request alone; seeded sampling does not depend on the
 * batch; a cancelled request frees its cache at once; stop conditions and counters.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { fromPretrained } from "../src/models/auto.js";
import { PeftModel } from "../src/peft/index.js";
import { memory, tensor } from "../src/tensor/index.js";
import { DecodeEngine, type EngineModel, type Sequence, type SequenceRequest } from "../src/serve/engine.js";
import { ServedModel } from "../src/serve/model.js";

const ROOT = fileURLToPath(new URL("../../test/fixtures/mixed-batch/", import.meta.url));

function served(name: string): ServedModel {
  const m = new ServedModel(fromPretrained(join(ROOT, name, "model"), "causal-lm"));
  for (const a of ["left", "right"]) m.loadAdapter(a, join(ROOT, name, "adapters", a));
  return m;
}

/** generate() on one request alone, with its adapter active (an independent path: no engine, no mixed batch). */
function alone(name: string, prompt: number[], adapter: string, n: number): number[] {
  const base = fromPretrained(join(ROOT, name, "model"), "causal-lm");
  const ids = tensor(Int32Array.from(prompt), [1, prompt.length], "int32");
  if (adapter === "__base__")
    return Array.from(base.generate({ inputIds: ids, maxNewTokens: n, eosTokenId: -1 }).dataSync()).slice(
      prompt.length,
    );
  const peft = PeftModel.fromPretrained(base, join(ROOT, name, "adapters", adapter), { adapterName: adapter });
  return Array.from(peft.generate({ inputIds: ids, maxNewTokens: n, eosTokenId: -1 }).dataSync()).slice(prompt.length);
}

const REQUESTS: [number[], string, number][] = [
  [[3, 17, 42, 5], "left", 12],
  [[9, 1], "__base__", 7],
  [[60, 2, 33, 8, 21, 4, 4], "right", 10],
  [[11, 12, 13], "left", 5],
  [[40], "right", 9],
  [[7, 7, 7, 7, 7], "__base__", 11],
];

for (const name of ["gpt2", "llama"]) {
  describe(`decode engine: ${name}`, () => {
    it("requests joining and leaving a mixed-adapter batch get exactly their greedy tokens alone", async () => {
      // Every arrival joins at the next step (no waiting for company), so that requests join mid-batch.
      const engine = new DecodeEngine(served(name), { waitingServedRatio: 0 });
      const request = ([promptIds, adapter, maxNewTokens]: [number[], string, number]): SequenceRequest => ({
        promptIds,
        adapter,
        maxNewTokens,
        ignoreEos: true,
      });
      // The first three start together; each of the others joins when the previous one has produced 2 tokens.
      const results: Promise<number[]>[] = [];
      const submit = (i: number): void => {
        let produced = 0;
        results[i] = engine
          .submit({
            ...request(REQUESTS[i]!),
            onToken: () => {
              if (++produced === 2 && i >= 2 && i + 1 < REQUESTS.length) submit(i + 1);
            },
          })
          .done.then((r) => r.tokens);
      };
      submit(0);
      submit(1);
      submit(2);
      await Promise.all([results[0], results[1], results[2]]);
      const got = await Promise.all(results);
      assert.equal(got.length, REQUESTS.length);
      REQUESTS.forEach(([prompt, adapter, n], i) => {
        assert.deepEqual(got[i], alone(name, prompt, adapter, n), `request ${i} (${adapter})`);
      });
    });
  });
}

describe("decode engine: behaviour", () => {
  const model = served("gpt2");

  it("seeded sampling gives the same tokens alone and in a batch", async () => {
    const engine = new DecodeEngine(model);
    const req: SequenceRequest = {
      promptIds: [5, 6, 7],
      adapter: "right",
      maxNewTokens: 8,
      doSample: true,
      temperature: 1.3,
      seed: 99,
      ignoreEos: true,
    };
    const single = (await engine.submit(req).done).tokens;
    const others = [1, 2, 3].map((seed) => engine.submit({ ...req, seed, adapter: "left" }).done);
    const batched = (await engine.submit(req).done).tokens;
    await Promise.all(others);
    assert.deepEqual(batched, single);
  });

  it("cancel frees the sequence's cache at once and resolves with abort; the others go on", async () => {
    // An engine's cache outlives its last batch by maxQueueDelayMs (30 ms), for the clients that come back: the
    // earlier tests' engines have freed theirs after 60 ms, and so has this one at the end.
    const idle = () => sleep(60);
    await idle();
    const engine = new DecodeEngine(model);
    const before = memory().liveBytes;
    const keep = engine.submit({ promptIds: [1, 2, 3], maxNewTokens: 6, ignoreEos: true });
    let cancelledAt = -1;
    const victim = engine.submit({
      promptIds: [4, 5, 6],
      adapter: "left",
      maxNewTokens: 100,
      ignoreEos: true,
      onToken: () => {
        if (victim && victim.tokens.length === 3)
          setImmediate(() => {
            victim.cancel();
            cancelledAt = engine.stats().running;
          });
      },
    });
    const result = await victim.done;
    assert.equal(result.finishReason, "abort");
    assert.ok(result.tokens.length < 10);
    assert.equal(cancelledAt, 1, "only the other sequence is still running right after the cancel");
    assert.equal((await keep.done).tokens.length, 6);
    await idle();
    assert.equal(memory().liveBytes, before, "every cache is freed");
  });

  it("the event loop gets a turn between the prefill's first tokens and the next decode step", async () => {
    const engine = new DecodeEngine(model);
    /** The sequence's token count when a callback queued at its first token ran (a socket write's turn). */
    let tokensAtTurn = 0;
    const seq: Sequence = engine.submit({
      promptIds: [1, 2, 3],
      maxNewTokens: 4,
      ignoreEos: true,
      onToken: () => {
        if (seq.tokens.length === 1) setImmediate(() => (tokensAtTurn = seq.tokens.length));
      },
    });
    await seq.done;
    assert.equal(tokensAtTurn, 1, "the first token went out before the second was computed");
  });

  it("stop token ids and stop strings end a request with reason stop; counters count tokens", async () => {
    const engine = new DecodeEngine(model);
    const free = (await engine.submit({ promptIds: [8, 9], maxNewTokens: 8, ignoreEos: true }).done).tokens;
    const stopId = free[4]!;
    const byId = await engine.submit({ promptIds: [8, 9], maxNewTokens: 8, ignoreEos: true, stopTokenIds: [stopId] })
      .done;
    assert.deepEqual(byId.tokens, free.slice(0, free.indexOf(stopId) + 1));
    assert.equal(byId.finishReason, "stop");
    const letters = { decode: (t: number[]) => t.map((i) => String.fromCharCode(97 + (i % 26))).join("") };
    const stop = letters.decode(free.slice(1, 3));
    const byText = await engine.submit({
      promptIds: [8, 9],
      maxNewTokens: 8,
      ignoreEos: true,
      stopStrings: [stop],
      tokenizer: letters,
    }).done;
    assert.deepEqual(byText.tokens, free.slice(0, letters.decode(free).indexOf(stop) + 2));
    assert.equal(engine.stats().generatedTokens, free.length + byId.tokens.length + byText.tokens.length);
    assert.deepEqual([engine.stats().running, engine.stats().waiting], [0, 0]);
  });
});

describe("decode engine: scheduling", () => {
  /** The served model, recording the rows of every prefill (a forward pass over more than one position). */
  function recording(): { model: EngineModel; prefills: number[] } {
    const inner = served("gpt2");
    const prefills: number[] = [];
    const model: EngineModel = {
      config: inner.config,
      forward: (inputs, rows) => {
        if (inputs.inputIds!.shape[1]! > 1) prefills.push(inputs.inputIds!.shape[0]!);
        return inner.forward(inputs, rows);
      },
    };
    return { model, prefills };
  }
  const request = (maxNewTokens: number, onToken?: () => void): SequenceRequest => ({
    promptIds: [4, 8, 15],
    maxNewTokens,
    ignoreEos: true,
    ...(onToken ? { onToken } : {}),
  });

  it("while a batch decodes, a lone arrival waits maxWaitingTokens steps; enough arrivals join at the next step", async () => {
    const { model, prefills } = recording();
    const engine = new DecodeEngine(model, { maxWaitingTokens: 4, maxQueueDelayMs: 0 });
    /** The lead's token count when `seq` got its first token. */
    const leadAtFirst = new Map<string, number>();
    const tracked = (name: string, n: number): SequenceRequest =>
      request(n, () => {
        if (!leadAtFirst.has(name)) leadAtFirst.set(name, lead.tokens.length);
      });
    const others: Sequence[] = [];
    // At the lead's first token, one arrival (1 < 1.2 × 3 running): it waits 4 decode steps. At its 8th (the lone
    // one has ended), five arrivals against three running (5 ≥ 3.6): they join before the next decode step.
    const lead: Sequence = engine.submit(
      request(30, () => {
        if (lead.tokens.length === 1) others.push(engine.submit(tracked("lone", 3)));
        if (lead.tokens.length === 8) for (let i = 0; i < 5; i++) others.push(engine.submit(tracked(`five${i}`, 2)));
      }),
    );
    const first = [lead, engine.submit(request(30)), engine.submit(request(30))];
    await Promise.all(first.map((s) => s.done));
    await Promise.all(others.map((s) => s.done));
    assert.equal(leadAtFirst.get("lone"), 1 + 4, "the lone arrival joined after 4 decode steps");
    for (let i = 0; i < 5; i++) assert.equal(leadAtFirst.get(`five${i}`), 8, "the five joined at once");
    assert.deepEqual(prefills, [3, 1, 5]);
  });

  it("after the batch drains, arrivals within maxQueueDelayMs are prefilled together", async () => {
    for (const [delay, expected] of [
      [500, [3, 3]],
      [0, [3, 1, 2]],
    ] as const) {
      const { model, prefills } = recording();
      const engine = new DecodeEngine(model, { maxQueueDelayMs: delay });
      await Promise.all([0, 1, 2].map(() => engine.submit(request(3)).done));
      // One client comes back at once, the other two 30 ms later (the batch held 3).
      const again = [engine.submit(request(2)).done];
      await sleep(30);
      again.push(engine.submit(request(2)).done, engine.submit(request(2)).done);
      await Promise.all(again);
      assert.deepEqual(prefills, expected, `maxQueueDelayMs ${delay}`);
    }
  });

  it("while every running request ends within drainWaitSteps, arrivals start with the next batch", async () => {
    for (const [drainWaitSteps, expected] of [
      [8, [1, 4]],
      [0, [1, 3, 1]],
    ] as const) {
      const { model, prefills } = recording();
      const engine = new DecodeEngine(model, { drainWaitSteps, maxWaitingTokens: 4, maxQueueDelayMs: 500 });
      /** The lead's token count when each arrival got its first token. */
      const leadAtFirst: number[] = [];
      const arrivals: Promise<unknown>[] = [];
      // At the lead's 2nd token (4 steps left), three arrivals: 3 ≥ 1.2 × 1 would prefill them at once.
      const lead: Sequence = engine.submit(
        request(6, () => {
          if (lead.tokens.length === 2)
            for (let i = 0; i < 3; i++)
              arrivals.push(engine.submit(request(6, () => void leadAtFirst.push(lead.tokens.length))).done);
        }),
      );
      await lead.done;
      // The lead's client comes back 20 ms after its request ended.
      await sleep(20);
      arrivals.push(engine.submit(request(2)).done);
      await Promise.all(arrivals);
      const waited = drainWaitSteps > 0;
      assert.equal(leadAtFirst.length, 3 * 6);
      assert.equal(leadAtFirst[0], waited ? 6 : 2, `drainWaitSteps ${drainWaitSteps}: when the arrivals started`);
      assert.deepEqual(prefills, expected, `drainWaitSteps ${drainWaitSteps}`);
    }
  });

  it("refuses negative scheduling options", () => {
    assert.throws(() => new DecodeEngine(served("gpt2"), { waitingServedRatio: -1 }), /waitingServedRatio must be/);
    assert.throws(() => new DecodeEngine(served("gpt2"), { maxQueueDelayMs: Number.NaN }), /maxQueueDelayMs must be/);
    assert.throws(() => new DecodeEngine(served("gpt2"), { drainWaitSteps: -1 }), /drainWaitSteps must be/);
  });
});
