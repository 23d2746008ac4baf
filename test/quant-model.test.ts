/**
 * quantization_config (BitsAndBytesConfig fields) in fromConfig and fromPretrained: which modules are converted
 * (transformers' rules), errors for bad fields, a quantised fromConfig equal to quantising the float model built
 * from the same seed, and a loaded model's logits equal to the float model's with the dequantised weights.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import { parseQuantizationConfig, quantizeModel } from "../src/models/quantization.js";
import { Linear, Linear4bit, Linear8bitLt, QuantizedLinear } from "../src/nn/index.js";
import { ConfigError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { assertClose } from "./helpers.js";
import { modelDir } from "./golden.js";
import { LLAMA, GPT2, logits } from "./tiny-models.js";

const NF4_DQ = { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true } as const;

/** Module paths of each kind. */
function kinds(m: PreTrainedModel): { q4: string[]; q8: string[]; float: string[] } {
  const out = { q4: [] as string[], q8: [] as string[], float: [] as string[] };
  for (const [path, mod] of m.namedModules()) {
    if (mod instanceof Linear4bit) out.q4.push(path);
    else if (mod instanceof Linear8bitLt) out.q8.push(path);
    else if (mod instanceof Linear) out.float.push(path);
  }
  return out;
}

/** A copy of `quantized`'s float twin: every quantised layer's weight replaced by its dequantised values. */
function dequantizedTwin(quantized: PreTrainedModel, float: PreTrainedModel): PreTrainedModel {
  T.noGrad(() => {
    for (const [path, m] of quantized.namedModules()) {
      if (m instanceof QuantizedLinear) (float.getSubmodule(path) as Linear).weight.copy_(m.dequantizeWeight());
    }
  });
  return float;
}

describe("quantization_config: fields", () => {
  it("unknown fields are an error naming them", () => {
    assert.throws(
      () => parseQuantizationConfig({ load_in_4bit: true, bnb_4bit_quant_typ: "nf4" }),
      (e: Error) => e instanceof ConfigError && /bnb_4bit_quant_typ/.test(e.message),
    );
  });
  it("exactly one of load_in_4bit / load_in_8bit; bad values name the field", () => {
    assert.throws(() => parseQuantizationConfig({}), /exactly one of load_in_4bit and load_in_8bit/);
    assert.throws(() => parseQuantizationConfig({ load_in_4bit: true, load_in_8bit: true }), /exactly one/);
    assert.throws(
      () => parseQuantizationConfig({ load_in_4bit: true, bnb_4bit_quant_type: "int4" }),
      /bnb_4bit_quant_type must be "nf4" or "fp4"/,
    );
  });
  it("transformers' defaults (fp4, no double quant, threshold 6) and its to_dict form", () => {
    const s = parseQuantizationConfig({ load_in_4bit: true });
    assert.equal(s.quantType, "fp4");
    assert.equal(s.doubleQuant, false);
    assert.equal(s.threshold, 6);
    assert.equal(s.dict["quant_method"], "bitsandbytes");
    assert.equal(s.dict["_load_in_4bit"], true);
    assert.deepEqual(parseQuantizationConfig(s.dict).dict, s.dict); // config.json's form reads back
  });
  it("bnb_4bit_compute_dtype: float32 (default), bfloat16 and float16 are kept; other names are an error", () => {
    assert.equal(parseQuantizationConfig({ load_in_4bit: true }).computeDtype, "float32");
    for (const dtype of ["bfloat16", "float16"]) {
      const s = parseQuantizationConfig({ load_in_4bit: true, bnb_4bit_compute_dtype: dtype });
      assert.equal(s.computeDtype, dtype);
      assert.equal(s.dict["bnb_4bit_compute_dtype"], dtype);
    }
    assert.throws(
      () => parseQuantizationConfig({ load_in_4bit: true, bnb_4bit_compute_dtype: "float64" }),
      (e: Error) => e instanceof ConfigError && /bnb_4bit_compute_dtype "float64"/.test(e.message),
    );
  });
});

describe("quantization_config: building and loading", () => {
  it("fromConfig: every Linear but lm_head is Linear4bit, with the values the float model would have had", () => {
    T.manualSeed(5);
    const q = AutoModelForCausalLM.fromConfig(LLAMA, { quantizationConfig: NF4_DQ });
    T.manualSeed(5);
    const float = AutoModelForCausalLM.fromConfig(LLAMA);
    const k = kinds(q);
    assert.deepEqual(k.float, ["lm_head"]);
    assert.equal(k.q4.length, 14);
    const expected = AutoModelForCausalLM.fromConfig(LLAMA); // structure only; overwritten below
    T.noGrad(() => expected.loadStateDict(float.stateDict()));
    quantizeModel(expected, parseQuantizationConfig(NF4_DQ));
    for (const path of k.q4) {
      assert.deepEqual(
        Array.from((q.getSubmodule(path) as Linear4bit).quantized.packed),
        Array.from((expected.getSubmodule(path) as Linear4bit).quantized.packed),
        path,
      );
    }
    assertClose(logits(q.eval()), logits(dequantizedTwin(q, float).eval()), 1e-4, 1e-4, "logits");
    assert.equal((q.config["quantization_config"] as Record<string, unknown>)["bnb_4bit_quant_type"], "nf4");
  });

  it("GPT-2's Conv1D layers are quantised as [out, in]; its tied lm_head stays float", () => {
    T.manualSeed(6);
    const q = AutoModelForCausalLM.fromConfig(GPT2, {
      quantizationConfig: { load_in_4bit: true, bnb_4bit_quant_type: "fp4" },
    });
    T.manualSeed(6);
    const float = AutoModelForCausalLM.fromConfig(GPT2);
    assert.deepEqual(kinds(q).float, ["lm_head"]);
    T.noGrad(() => {
      for (const [path, m] of q.namedModules()) {
        if (m instanceof QuantizedLinear)
          float.getSubmodule(path).getTensor("weight").copy_(T.transpose(m.dequantizeWeight()));
      }
    });
    assertClose(logits(q.eval()), logits(float.eval()), 1e-4, 1e-4, "logits");
  });

  it(
    "fromPretrained(dir, { quantizationConfig }): 8-bit with llm_int8_skip_modules keeps the " + "named modules float",
    () => {
      const dir = modelDir("llama");
      const q = AutoModelForCausalLM.fromPretrained(dir, {
        quantizationConfig: { load_in_8bit: true, llm_int8_skip_modules: ["mlp"], llm_int8_threshold: 0 },
      });
      const k = kinds(q);
      assert.ok(k.float.length === 6 && k.float.every((p) => p.includes("mlp")), k.float.join());
      assert.ok(k.q8.includes("lm_head")); // the skip list replaces the default (lm_head), as in transformers
      // threshold 0: no outlier columns, so the int8 product's error is bounded by both sides' 8-bit rounding
      const float = AutoModelForCausalLM.fromPretrained(dir);
      const ref = logits(float),
        got = logits(q);
      const scale = Math.max(...ref.map(Math.abs));
      assertClose(got, ref, 0.05 * scale, 0, "logits");
    },
  );

  it("fromPretrained(dir, { quantizationConfig }): NF4 logits equal the float model with dequantised weights", () => {
    const dir = modelDir("llama");
    const q = AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: NF4_DQ });
    assertClose(logits(q), logits(dequantizedTwin(q, AutoModelForCausalLM.fromPretrained(dir))), 1e-4, 1e-4, "logits");
  });

  it("bnb_4bit_compute_dtype bfloat16: layers round to it, config.json records it, a reload keeps it", () => {
    const dir = modelDir("llama");
    const cfg = { ...NF4_DQ, bnb_4bit_compute_dtype: "bfloat16" };
    const q = AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: cfg });
    const layers = [...q.namedModules()].flatMap(([, m]) => (m instanceof Linear4bit ? [m] : []));
    assert.ok(layers.length > 0 && layers.every((m) => m.computeDtype === "bfloat16"));
    // The same weights in float32 compute give other logits: the rounding reaches the model's products.
    const f32 = AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: NF4_DQ });
    const a = logits(q),
      b = logits(f32);
    assert.ok(
      a.some((v, i) => v !== b[i]),
      "bf16 compute changes the logits",
    );
    assertClose(a, b, 0.05, 0.05, "bf16-compute logits stay near float32's");
    const out = mkdtempSync(join(tmpdir(), "peft-ts-compute-"));
    try {
      q.savePretrained(out);
      const saved = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<
        string,
        Record<string, unknown>
      >;
      assert.equal(saved["quantization_config"]!["bnb_4bit_compute_dtype"], "bfloat16");
      const back = AutoModelForCausalLM.fromPretrained(out);
      assert.ok([...back.namedModules()].every(([, m]) => !(m instanceof Linear4bit) || m.computeDtype === "bfloat16"));
      assert.deepEqual(logits(back), a);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it(
    "fromConfig with dtype bfloat16: the other modules are bf16, the quantised codes those of " + "the bf16 weights",
    () => {
      T.manualSeed(7);
      const q = AutoModelForCausalLM.fromConfig(LLAMA, { dtype: "bfloat16", quantizationConfig: NF4_DQ });
      T.manualSeed(7);
      const half = AutoModelForCausalLM.fromConfig(LLAMA, { dtype: "bfloat16" });
      const floats = q
        .namedParameters()
        .filter(([, p]) => p.dtype !== "bfloat16")
        .map(([k]) => k);
      assert.deepEqual(floats, [], "every parameter left outside the quantised layers is bfloat16");
      const expected = AutoModelForCausalLM.fromConfig(LLAMA, { dtype: "bfloat16" }); // structure only; overwritten below
      T.noGrad(() => expected.loadStateDict(half.stateDict()));
      quantizeModel(expected, parseQuantizationConfig(NF4_DQ));
      for (const path of kinds(q).q4) {
        assert.deepEqual(
          Array.from((q.getSubmodule(path) as Linear4bit).quantized.packed),
          Array.from((expected.getSubmodule(path) as Linear4bit).quantized.packed),
          path,
        );
      }
      assertClose(logits(q.eval()), logits(expected.eval()), 0, 0, "logits");
    },
  );

  it(
    "fromPretrained(bf16 checkpoint, { dtype: bfloat16, quantizationConfig }): logits equal " +
      "the float32 load's, in less memory",
    () => {
      const dir = modelDir("llama-bf16"); // bf16 values: float32 holds them exactly, so both loads quantise the same numbers
      const q16 = AutoModelForCausalLM.fromPretrained(dir, { dtype: "bfloat16", quantizationConfig: NF4_DQ });
      const q32 = AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: NF4_DQ });
      assertClose(logits(q16), logits(q32), 1e-6, 1e-6, "logits");
      const bytes = (m: PreTrainedModel) =>
        m.parameters().reduce((n, p) => n + p.size * (p.dtype === "float32" ? 4 : 2), 0);
      assert.equal(bytes(q16) * 2, bytes(q32));
    },
  );

  it("quantisation on load reads one Linear weight at a time: the float weights of the layers never coexist", () => {
    const dir = modelDir("llama");
    const float = AutoModelForCausalLM.fromPretrained(dir);
    const linearBytes = kinds(float)
      .float.filter((p) => p !== "lm_head")
      .map((p) => (float.getSubmodule(p) as Linear).weight.size * 4);
    const otherBytes = float.parameters().reduce((n, p) => n + p.size * 4, 0) - linearBytes.reduce((a, b) => a + b, 0);
    T.resetPeakBytes();
    const before = T.memory().liveBytes;
    AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: NF4_DQ });
    // the model's float modules and their checkpoint copies, plus the largest Linear and its quantiser's scratch
    const bound = 2 * otherBytes + 2 * Math.max(...linearBytes);
    assert.ok(T.memory().peakBytes - before <= bound, `peak ${T.memory().peakBytes - before} B > ${bound} B`);
    assert.ok(
      bound < otherBytes + linearBytes.reduce((a, b) => a + b, 0) * 2,
      "the bound is below what a whole float load takes",
    );
  });
});
