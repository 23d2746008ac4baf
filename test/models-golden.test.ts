/**
 * Real HF checkpoints: every tiny model in test/fixtures/reference/models (made by Python transformers) loads with no missing/unexpected keys and
 * reproduces Python transformers' logits, loss and per-layer hidden states within 1e-4 absolute (logits are
 * O(1) there, so this is ~1e-4 relative too; Python reloading its own files agrees to 1e-5).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromPretrained, type Task } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { asGenerative } from "../src/models/generation/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { noGrad, tensor } from "../src/tensor/index.js";
import {
  REFERENCE,
  compareOutputs,
  maxAbsDiff,
  modelDir,
  readCase,
  readExpected,
  readInputs,
  taskOfClass,
} from "./golden.js";
import { randTensor } from "./helpers.js";

const index = JSON.parse(readFileSync(join(REFERENCE, "index.json"), "utf8")) as {
  models: Record<string, { class: string }>;
};

/** Reload the model `model` saved to `out` as `task`: no missing or unexpected keys, and logits identical to `model`'s on the inputs of golden folder `dir`. */
function assertReloadsIdentically(model: PreTrainedModel, out: string, task: Task, dir: string, name: string): void {
  const again = fromPretrained(out, task);
  assert.deepEqual(again.loadReport, { missingKeys: [], unexpectedKeys: [] });
  const inputs = readInputs(dir);
  const a = noGrad(() => model.forward(inputs)) as ModelOutput;
  const b = noGrad(() => again.forward(inputs)) as ModelOutput;
  assert.equal(maxAbsDiff(a.logits, b.logits), 0, name);
}

describe("golden models from Python transformers 4.44", () => {
  for (const [name, info] of Object.entries(index.models)) {
    it(`${name} (${info.class}) reproduces logits, loss and hidden states`, () => {
      const dir = modelDir(name);
      const model = fromPretrained(dir, taskOfClass(info.class));
      assert.deepEqual(model.loadReport, { missingKeys: [], unexpectedKeys: [] });
      const inputs = readInputs(dir);
      const expected = readExpected(dir);
      const out = noGrad(() => model.forward({ ...inputs, outputHiddenStates: true })) as ModelOutput;
      compareOutputs(out, expected, readCase(dir).expected);
    });
  }

  it("savePretrained then fromPretrained gives identical outputs (llama, tied qwen2)", () => {
    for (const name of ["llama", "qwen2", "gpt2"]) {
      const dir = modelDir(name);
      const model = fromPretrained(dir, "causal-lm");
      const out = mkdtempSync(join(tmpdir(), "peft-ts-save-"));
      model.savePretrained(out);
      assertReloadsIdentically(model, out, "causal-lm", dir, name);
    }
  });
});

describe("encoder and encoder-decoder families", () => {
  it(
    "savePretrained then fromPretrained round-trips BERT, DistilBERT, T5 (tied head not " + "stored) and mT5 (untied)",
    () => {
      for (const name of ["bert-seqcls", "bert-qa", "distilbert-seqcls", "t5", "mt5"]) {
        const dir = modelDir(name);
        const cls = readCase(dir).class!;
        const model = fromPretrained(dir, taskOfClass(cls));
        const out = mkdtempSync(join(tmpdir(), "peft-ts-save-"));
        model.savePretrained(out);
        const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as { architectures: string[] };
        assert.deepEqual(config.architectures, [cls], name);
        const keys = [...loadSafetensors(join(out, "model.safetensors")).keys()];
        assert.ok(!keys.some((k) => k.includes("embed_tokens")), `${name}: the stacks' embed_tokens are shared.weight`);
        if (name === "t5") assert.ok(!keys.includes("lm_head.weight"), "t5: the tied lm_head is not written");
        if (name === "mt5") assert.ok(keys.includes("lm_head.weight"), "mt5: the untied lm_head is written");
        assertReloadsIdentically(model, out, taskOfClass(cls), dir, name);
      }
    },
  );

  it("BERT: a prefix in pastKeyValues is attended to and shifts positions (masked out, it only shifts them)", () => {
    const dir = modelDir("bert-seqcls");
    const model = fromPretrained(dir, "sequence-classification");
    const { inputIds, attentionMask } = readInputs(dir);
    const [batch, length] = inputIds!.shape as [number, number];
    const P = 5;
    const past = [0, 1].map((l) => ({
      key: randTensor([batch, 4, P, 16], 10 + l),
      value: randTensor([batch, 4, P, 16], 20 + l),
    }));
    const mask = Array.from(attentionMask!.dataSync());
    const withPrefix = (prefixMask: number) =>
      tensor(
        Int32Array.from({ length: batch * (P + length) }, (_, i) =>
          i % (P + length) < P ? prefixMask : mask[Math.floor(i / (P + length)) * length + (i % (P + length)) - P]!,
        ),
        [batch, P + length],
        "int32",
      );
    const positions = tensor(
      Int32Array.from({ length: batch * length }, (_, i) => P + (i % length)),
      [batch, length],
      "int32",
    );
    noGrad(() => {
      const hidden = model.forward({
        inputIds: inputIds!,
        attentionMask: withPrefix(0),
        pastKeyValues: past,
      }) as ModelOutput;
      const shifted = model.forward({
        inputIds: inputIds!,
        attentionMask: attentionMask!,
        positionIds: positions,
      }) as ModelOutput;
      assert.ok(maxAbsDiff(hidden.logits, shifted.logits) < 1e-5, "a fully masked prefix only offsets the positions");
      const attended = model.forward({
        inputIds: inputIds!,
        attentionMask: withPrefix(1),
        pastKeyValues: past,
      }) as ModelOutput;
      assert.ok(maxAbsDiff(attended.logits, shifted.logits) > 1e-3, "an attended prefix changes the output");
      assert.throws(
        () => model.forward({ inputIds: inputIds!, attentionMask: attentionMask!, pastKeyValues: past }),
        /past \+ current/,
      );
    });
  });

  it(
    "T5: decoder prefix keys/values; a cross-attention pair is used only when it spans the " +
      "encoder length (transformers 4.44)",
    () => {
      const dir = modelDir("t5");
      const model = fromPretrained(dir, "seq2seq-lm");
      const { inputIds, attentionMask, decoderInputIds } = readInputs(dir);
      const batch = inputIds!.shape[0]!,
        source = inputIds!.shape[1]!;
      const P = 5;
      const self = [0, 1].map((l) => ({
        key: randTensor([batch, 4, P, 16], 30 + l),
        value: randTensor([batch, 4, P, 16], 40 + l),
      }));
      const cross = (len: number) =>
        self.map((kv, l) => ({
          ...kv,
          crossKey: randTensor([batch, 4, len, 16], 50 + l),
          crossValue: randTensor([batch, 4, len, 16], 60 + l),
        }));
      noGrad(() => {
        const run = (pastKeyValues: typeof self) =>
          model.forward({
            inputIds: inputIds!,
            attentionMask: attentionMask!,
            decoderInputIds: decoderInputIds!,
            pastKeyValues,
            useCache: true,
          }) as ModelOutput;
        const plain = model.forward({
          inputIds: inputIds!,
          attentionMask: attentionMask!,
          decoderInputIds: decoderInputIds!,
        }) as ModelOutput;
        const prefixed = run(self);
        assert.deepEqual(prefixed.logits.shape, plain.logits.shape);
        assert.ok(maxAbsDiff(prefixed.logits, plain.logits) > 1e-3, "the prefix changes the decoder");
        assert.equal(maxAbsDiff(run(cross(P)).logits, prefixed.logits), 0, "a cross pair of another length is ignored");
        assert.ok(
          maxAbsDiff(run(cross(source)).logits, prefixed.logits) > 1e-3,
          "a cross pair of the encoder length is used",
        );
        const present = prefixed.pastKeyValues![0]!;
        assert.deepEqual(
          present.key.shape,
          [batch, 4, P + decoderInputIds!.shape[1]!, 16],
          "self-attention cache = prefix + tokens",
        );
        assert.deepEqual(present.crossKey!.shape, [batch, 4, source, 16], "cross-attention cache = encoder length");
      });
    },
  );
});

describe("greedy generation goldens (transformers' generate, max_new_tokens 6, left-padded batch)", () => {
  for (const [name, info] of Object.entries(index.models)) {
    const dir = modelDir(name);
    if (!("generate_greedy" in readCase(dir).expected)) continue;
    it(`${name} (${info.class}) generates exactly the stored tokens`, () => {
      const model = asGenerative(fromPretrained(dir, taskOfClass(info.class)));
      const inputs = readInputs(dir);
      const want = readExpected(dir).get("generate_greedy")!;
      const got = model.generate({
        inputIds: inputs["genInputIds"]!,
        attentionMask: inputs["genAttentionMask"]!,
        maxNewTokens: 6,
      });
      assert.deepEqual(got.shape, want.shape, "decoder-only: prompt + 6 new tokens; seq2seq: decoder start + 6");
      assert.deepEqual(Array.from(got.dataSync()), Array.from(want.dataSync()));
    });
  }
});
