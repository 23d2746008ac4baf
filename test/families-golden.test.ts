/**
 * The newer families (LLaMA 3 rope scaling and head_dim, Qwen2 sliding window, Qwen3, Gemma 1/2/3, Phi-3) against the
 * goldens of scripts/make_family_fixtures.py (transformers 4.44 + peft 0.15.2, with the references that script
 * documents for Qwen3, Gemma 3, the Qwen2 window and LLaMA's head_dim): logits, loss and hidden states within 1e-4,
 * greedy generation exact, LoRA adapters from Python reproduce their outputs, and LoRA adapters made here save what
 * Python saves.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromPretrained, parseConfig } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { asGenerative } from "../src/models/generation/index.js";
import { ConfigError } from "../src/errors.js";
import { decoderTraits, llamaConfig } from "../src/models/llama/config.js";
import { buildAttentionMask } from "../src/models/attention.js";
import { RotaryEmbedding, ropeParameters } from "../src/models/rotary.js";
import { MASK_VALUE, narrow, noGrad, tensor } from "../src/tensor/index.js";
import {
  FAMILIES,
  GoldenSet,
  compareOutputs,
  maxAbsDiff,
  readCase,
  readExpected,
  readInputs,
  taskOfClass,
} from "./golden.js";
import { gradCheck, randTensor } from "./helpers.js";
import { casesOf, checkFreshCase, checkLoadedCase, forwardInputs, saveTsAdapters } from "./peft-cases.js";

const set = new GoldenSet(FAMILIES);

describe("newer model families against transformers goldens", () => {
  for (const [name, info] of Object.entries(set.index.models)) {
    const dir = set.modelDir(name);
    it(`${name} (${info.class}) loads every weight and reproduces logits, loss and hidden states`, () => {
      const model = fromPretrained(dir, taskOfClass(info.class));
      assert.deepEqual(model.loadReport, { missingKeys: [], unexpectedKeys: [] });
      assert.equal(model.architecture, info.class);
      const out = noGrad(() =>
        model.forward({ ...forwardInputs(readInputs(dir), true), outputHiddenStates: true }),
      ) as ModelOutput;
      compareOutputs(out, readExpected(dir), readCase(dir).expected);
    });
    if (info.class.endsWith("ForCausalLM")) {
      it(`${name}: numLogitsToKeep 1 gives transformers' logits of the last position only`, () => {
        const model = fromPretrained(dir, "causal-lm");
        const { labels: _, ...inputs } = forwardInputs(readInputs(dir), true);
        const out = noGrad(() => model.forward({ ...inputs, numLogitsToKeep: 1 })) as ModelOutput;
        const want = readExpected(dir).get("logits")!;
        const [batch, length, vocab] = want.shape as [number, number, number];
        assert.deepEqual(out.logits.shape, [batch, 1, vocab]);
        assert.ok(maxAbsDiff(out.logits, narrow(want, 1, length - 1, 1)) <= 1e-4);
        assert.throws(() => model.forward({ ...forwardInputs(readInputs(dir), true), numLogitsToKeep: 1 }), /labels/);
      });
    }
    if (!("generate_greedy" in readCase(dir).expected)) continue;
    it(`${name} generates exactly the stored greedy tokens (left-padded batch, KV cache)`, () => {
      const model = asGenerative(fromPretrained(dir, taskOfClass(info.class)));
      const inputs = readInputs(dir);
      const got = model.generate({
        inputIds: inputs["genInputIds"]!,
        attentionMask: inputs["genAttentionMask"]!,
        maxNewTokens: 6,
      });
      assert.deepEqual(Array.from(got.dataSync()), Array.from(readExpected(dir).get("generate_greedy")!.dataSync()));
    });
  }
});

describe("newer families: saving and gradients", () => {
  it(
    "savePretrained then fromPretrained gives identical logits, HF's architecture name and no " +
      "extra or missing keys",
    () => {
      for (const [name, info] of Object.entries(set.index.models)) {
        const dir = set.modelDir(name),
          task = taskOfClass(info.class);
        const model = fromPretrained(dir, task);
        const out = mkdtempSync(join(tmpdir(), `peft-ts-${name}-`));
        model.savePretrained(out);
        assert.deepEqual(
          (JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as { architectures: string[] }).architectures,
          [info.class],
          name,
        );
        const again = fromPretrained(out, task);
        assert.deepEqual(again.loadReport, { missingKeys: [], unexpectedKeys: [] }, name);
        const inputs = forwardInputs(readInputs(dir), false);
        const logits = (m: typeof model) => (noGrad(() => m.forward(inputs)) as ModelOutput).logits;
        assert.equal(maxAbsDiff(logits(again), logits(model)), 0, name);
      }
    },
  );

  // Through every special path: soft-capping and sandwich norms, fused projections, ALiBi, partial rotary, q/k norms.
  for (const name of [
    "gemma2",
    "gemma3",
    "phi3-longrope",
    "qwen3",
    "bloom",
    "gpt-neox",
    "opt-350m-style",
    "llama-yarn",
  ]) {
    it(`${name}: gradients with respect to the input embeddings match finite differences`, () => {
      const dir = set.modelDir(name);
      const model = fromPretrained(dir, "causal-lm");
      const width = model.getInputEmbeddings().weight.shape[1]!;
      const attentionMask = tensor(Int32Array.from([1, 1, 1]), [1, 3], "int32");
      gradCheck(
        (embeds) => (model.forward({ inputsEmbeds: embeds, attentionMask }) as ModelOutput).logits,
        [randTensor([1, 3, width], 7, -1, 1)],
      );
    });
  }
});

describe("LoRA with default targets on the newer families against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["LORA"], set)) {
    it(`${name}: Python's adapter reproduces its outputs here (on, disabled, merged, greedy)`, () =>
      checkLoadedCase(name, c, { set }));
    it(`${name}: an adapter made here saves Python's tensor names, shapes and config fields`, () =>
      checkFreshCase(name, c, { set }));
  }

  it(
    "adapters made here reload to the same outputs; they go to $PEFT_TS_ADAPTERS for " +
      "`make_family_fixtures.py --check-ts-adapters`",
    () => {
      // With PEFT_TS_ADAPTERS set, the Python script then loads each folder in peft and compares with logits.safetensors.
      const out = process.env["PEFT_TS_ADAPTERS"] ?? mkdtempSync(join(tmpdir(), "peft-ts-family-adapters-"));
      saveTsAdapters(set, ["LORA"], out, 0.1);
    },
  );
});

describe("decoder traits per model type", () => {
  const base = {
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 32,
  };

  it(
    "sliding layers follow current transformers: Qwen2 from max_window_layers on (only with " +
      "use_sliding_window), Gemma 2 even, Gemma 3 by pattern",
    () => {
      const windows = (raw: Record<string, unknown>) =>
        decoderTraits(llamaConfig({ ...base, ...raw })).layers.map((l) => l.window);
      assert.deepEqual(
        windows({ model_type: "qwen2", use_sliding_window: true, sliding_window: 3, max_window_layers: 2 }),
        [null, null, 3, 3],
      );
      assert.deepEqual(
        windows({ model_type: "qwen2", use_sliding_window: false, sliding_window: 3, max_window_layers: 2 }),
        [null, null, null, null],
      );
      assert.deepEqual(windows({ model_type: "gemma2", sliding_window: 5 }), [5, null, 5, null]);
      assert.deepEqual(windows({ model_type: "gemma3_text", sliding_window: 5, sliding_window_pattern: 3 }), [
        5,
        5,
        null,
        5,
      ]);
      const types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"];
      assert.deepEqual(
        windows({ model_type: "qwen3", use_sliding_window: true, sliding_window: 2, layer_types: types }),
        [null, 2, null, 2],
      );
      const gemma3 = { ...base, model_type: "gemma3_text", num_hidden_layers: 7 };
      assert.deepEqual(
        decoderTraits(llamaConfig(gemma3)).layers.map((l) => l.rope),
        [1, 1, 1, 1, 1, 0, 1],
        "local rope on sliding layers, every 6th global",
      );
    },
  );

  it(
    "a window mask equals the hand-built one: query at position p sees keys p-w+1 … p (prefill " +
      "and one decode step)",
    () => {
      const w = 3;
      const hand = (q: number, k: number) =>
        Array.from({ length: q * k }, (_, n) => {
          const p = Math.floor(n / k) + k - q,
            j = n % k;
          return j > p || j <= p - w ? MASK_VALUE : 0;
        });
      assert.deepEqual(Array.from(buildAttentionMask(undefined, 1, 7, 7, true, w)!.dataSync()), hand(7, 7));
      assert.deepEqual(Array.from(buildAttentionMask(undefined, 1, 1, 9, true, w)!.dataSync()), hand(1, 9));
    },
  );

  it("bad rope_scaling and layer_types are ConfigErrors that name the field", () => {
    const llama = (rope_scaling: Record<string, unknown>) =>
      llamaConfig({ ...base, model_type: "llama", rope_scaling });
    assert.throws(
      () => llama({ rope_type: "ntk-by-parts", factor: 2 }),
      (e) => e instanceof ConfigError && /"ntk-by-parts" is not supported/.test(e.message),
    );
    const llama3 = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 };
    assert.throws(() => llama(llama3), /needs the field "original_max_position_embeddings"/);
    assert.throws(() => llama({ rope_type: "linear", factor: "4" }), /rope_scaling.factor must be a number/);
    const su = { type: "su", short_factor: [1], long_factor: [1] };
    assert.throws(
      () => llamaConfig({ ...base, model_type: "phi3", rope_scaling: su }),
      /short_factor must be a list of 8 numbers/,
    );
    assert.throws(
      () => llamaConfig({ ...base, model_type: "gemma2", layer_types: ["full_attention"] }),
      /layer_types must list .* each of the 4 layers/,
    );
    assert.throws(
      () => parseConfig({ model_type: "opt", layerdrop: 0.1 }),
      (e) => e instanceof ConfigError && /layerdrop 0.1/.test(e.message),
    );
    assert.throws(() => parseConfig({ model_type: "gemma3" }), /model_type "gemma3" is not supported/);
  });

  it(
    "dynamic NTK keeps the base up to max_position_embeddings, then grows it with the sequence " +
      "(hand-computed base)",
    () => {
      const s = {
        dim: 8,
        theta: 10000,
        maxPositions: 16,
        scaling: { rope_type: "dynamic", factor: 2 },
        modelType: "llama",
      };
      assert.deepEqual(ropeParameters(s, 10).invFreq, ropeParameters({ ...s, scaling: null }, 10).invFreq);
      const grown = 10000 * ((2 * 32) / 16 - 1) ** (8 / 6);
      const want = 1 / grown ** (2 / 8);
      assert.ok(
        Math.abs(ropeParameters(s, 32).invFreq[1]! - want) < 1e-6 * want,
        "float32 inverse frequency of the grown base",
      );
      const tables = new RotaryEmbedding(s).tables(tensor(Int32Array.from([0, 31]), [1, 2], "int32"));
      assert.ok(
        Math.abs(tables.cos.dataSync()[8 + 1]! - Math.cos(31 * ropeParameters(s, 32).invFreq[1]!)) < 1e-6,
        "position 31 uses the grown base",
      );
    },
  );
});
