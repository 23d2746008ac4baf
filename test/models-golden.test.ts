/**
 * Real HF checkpoints: every tiny model in ../shared/reference/models loads with no missing/unexpected keys and
 * reproduces Python transformers' logits, loss and per-layer hidden states within 1e-4 absolute (logits are
 * O(1) there, so this is ~1e-4 relative too; Python reloading its own files agrees to 1e-5).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromPretrained } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { noGrad } from "../src/tensor/index.js";
import { REFERENCE, maxAbsDiff, modelDir, readCase, readExpected, readInputs, taskOfClass } from "./golden.js";

const TOLERANCE = 1e-4;

const index = JSON.parse(readFileSync(join(REFERENCE, "index.json"), "utf8")) as { models: Record<string, { class: string }> };

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
      const again = fromPretrained(out, "causal-lm");
      assert.deepEqual(again.loadReport, { missingKeys: [], unexpectedKeys: [] });
      const inputs = readInputs(dir);
      const a = noGrad(() => model.forward(inputs)) as ModelOutput;
      const b = noGrad(() => again.forward(inputs)) as ModelOutput;
      assert.equal(maxAbsDiff(a.logits, b.logits), 0, name);
    }
  });
});

function compareOutputs(out: ModelOutput, expected: Map<string, import("../src/tensor/index.js").Tensor>, names: Record<string, unknown>): void {
  for (const key of Object.keys(names)) {
    if (key.startsWith("generate")) continue;
    const want = expected.get(key)!;
    const got = pick(out, key);
    assert.ok(got, `model output has nothing for ${key}`);
    const diff = maxAbsDiff(got.rank === 0 ? reshape1(got) : got, want);
    assert.ok(diff <= TOLERANCE, `${key}: max |diff| ${diff} > ${TOLERANCE}`);
  }
}

function reshape1(t: import("../src/tensor/index.js").Tensor) {
  return t.view_([1], [1], t.offset);
}

function pick(out: ModelOutput, key: string) {
  const layer = /^(encoder_|decoder_)?hidden_states_(\d+)$/.exec(key);
  if (layer) {
    const list = layer[1] === "encoder_" ? out.encoderHiddenStates : layer[1] === "decoder_" ? out.decoderHiddenStates : out.hiddenStates;
    return list?.[Number(layer[2])];
  }
  const map: Record<string, keyof ModelOutput> = { logits: "logits", loss: "loss", start_logits: "startLogits", end_logits: "endLogits" };
  return out[map[key]!] as import("../src/tensor/index.js").Tensor | undefined;
}
