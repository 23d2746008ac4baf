/**
 * Checkpoints in bitsandbytes' layout (io/bnb.ts): the tiny Llama folders scripts/make_quant_fixtures.py writes as
 * transformers + bitsandbytes save them load with the values bitsandbytes dequantises, and save back byte for byte.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { Linear, Linear4bit, Linear8bitLt, QuantizedLinear } from "../src/nn/index.js";
import { pythonFloat } from "../src/io/bnb.js";
import { readSafetensors } from "../src/io/safetensors.js";
import * as T from "../src/tensor/index.js";
import { assertClose } from "./helpers.js";
import { QUANT_FIXTURES } from "./quant-fixtures.js";
import { LLAMA, logits } from "./tiny-models.js";

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "peft-ts-bnb-"));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("bitsandbytes checkpoints", () => {
  for (const [label, cls] of [
    ["nf4", Linear4bit],
    ["int8", Linear8bitLt],
  ] as const) {
    const dir = join(QUANT_FIXTURES, `bnb-${label}-llama`);

    it(`${label}: loads quantised (lm_head stays float) with bitsandbytes' dequantised values`, () => {
      const model = AutoModelForCausalLM.fromPretrained(dir);
      assert.deepEqual(model.loadReport, { missingKeys: [], unexpectedKeys: [] });
      const kinds = model.namedModules().filter(([, m]) => m instanceof Linear || m instanceof QuantizedLinear);
      assert.deepEqual(
        kinds.filter(([, m]) => !(m instanceof cls)).map(([p]) => p),
        ["lm_head"],
      );
      const expected = readSafetensors(join(dir, "dequantized.safetensors")).tensors;
      for (const [key, raw] of expected) {
        const layer = model.getSubmodule(key.replace(/\.weight$/, "")) as QuantizedLinear;
        assert.deepEqual(Array.from(layer.dequantizeWeight().dataSync()), Array.from(raw.data as Float32Array), key);
      }
      // the float model with every quantised weight replaced by its dequantised values computes the same logits
      const float = AutoModelForCausalLM.fromConfig({ ...LLAMA, hidden_size: 64, intermediate_size: 128 });
      T.noGrad(() => {
        for (const [k, t] of model.stateDict()) float.getTensor(k).copy_(t);
        for (const [p, m] of model.namedModules())
          if (m instanceof QuantizedLinear) (float.getSubmodule(p) as Linear).weight.copy_(m.dequantizeWeight());
      });
      const scale = label === "int8" ? 0.05 : 1e-4; // LLM.int8 also quantises the activations
      const ref = logits(float.eval());
      assertClose(logits(model), ref, scale * Math.max(...ref.map(Math.abs)), 1e-4, "logits");
    });

    it(`${label}: load → savePretrained writes model.safetensors byte for byte`, async () => {
      const out = join(tmp, label);
      AutoModelForCausalLM.fromPretrained(dir).savePretrained(out);
      assert.ok(
        (await readFile(join(out, "model.safetensors"))).equals(await readFile(join(dir, "model.safetensors"))),
      );
      const config = JSON.parse(await readFile(join(out, "config.json"), "utf8")) as Record<string, unknown>;
      const original = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual(config["quantization_config"], original["quantization_config"]);
    });
  }

  it(
    "nf4 with dtype bfloat16: the float modules load in bf16, with the logits of the float32 " +
      "load rounded to bf16 there",
    () => {
      const dir = join(QUANT_FIXTURES, "bnb-nf4-llama");
      const half = AutoModelForCausalLM.fromPretrained(dir, { dtype: "bfloat16" });
      assert.deepEqual(
        half
          .namedParameters()
          .filter(([, p]) => p.dtype !== "bfloat16")
          .map(([k]) => k),
        [],
      );
      const rounded = AutoModelForCausalLM.fromPretrained(dir);
      T.noGrad(() => {
        for (const p of rounded.parameters()) p.copy_(T.toDtype(T.toDtype(p, "bfloat16"), "float32"));
      });
      assertClose(logits(half), logits(rounded), 1e-6, 1e-6, "logits");
    },
  );

  it("a model quantised here saves and loads back with the same outputs", () => {
    T.manualSeed(3);
    const model = AutoModelForCausalLM.fromConfig(LLAMA, {
      quantizationConfig: { load_in_4bit: true, bnb_4bit_quant_type: "fp4" },
    });
    const out = join(tmp, "fp4");
    model.savePretrained(out);
    const back = AutoModelForCausalLM.fromPretrained(out);
    assert.ok(back.getSubmodule("model.layers.1.mlp.up_proj") instanceof Linear4bit);
    assert.deepEqual(logits(back), logits(model.eval()));
  });

  it("quant_state JSON numbers are written as Python's json.dumps writes floats", () => {
    assert.deepEqual([1e-5, 0.25109434127807617, 1, 1.5e16, 123.25, -0.0001, 0].map(pythonFloat), [
      "1e-05",
      "0.25109434127807617",
      "1.0",
      "1.5e+16",
      "123.25",
      "-0.0001",
      "0.0",
    ]);
  });
});
