/**
 * X-LoRA against the goldens of scripts/make_method_fixtures_xlora.py (peft 0.15.2's XLoraModel, saved by peft, run
 * through the script's hand-written hook driver because pyref's torch 1.13 lacks forward pre-hooks with kwargs):
 * logits, the classifier's scalings and the loss for dense, top-k, layerwise and deep classifiers; the saved file's
 * names; top-k and its softmax checked by hand; training of the gating with the experts frozen; peft's refusals.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CheckpointError, ConfigError } from "../src/errors.js";
import { fromPretrained } from "../src/models/auto.js";
import { loadSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import {
  LoraConfig,
  PeftModel,
  XLoraConfig,
  type XLoraModel,
  configFromJson,
  getPeftModel,
} from "../src/peft/index.js";
import { layerScalings } from "../src/peft/tuners/xlora/layer.js";
import * as T from "../src/tensor/index.js";
import { GoldenSet, maxAbsDiff, readExpected, readInputs } from "./golden.js";
import { close } from "./peft-cases.js";
import { LLAMA, trainToy } from "./tiny-models.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";

const set = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-xlora/", import.meta.url)));
const CASES = set.index.cases as unknown as string[];
const EXPERTS = [0, 1, 2].map((i) => join(set.root, "experts", String(i)));
const base = () => fromPretrained(set.modelDir("llama"), "causal-lm");
const inputs = () => {
  const { inputIds, attentionMask } = readInputs(set.modelDir("llama"));
  return { inputIds: inputIds!, attentionMask: attentionMask! };
};

/** The case's saved config with the experts' folders made absolute (peft's from_pretrained takes them as `adapters`). */
function caseConfig(name: string): XLoraConfig {
  const fields = JSON.parse(readFileSync(join(set.peftDir(name), "adapter", "adapter_config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  return configFromJson({
    ...fields,
    adapters: Object.fromEntries(EXPERTS.map((p, i) => [String(i), p])),
  }) as XLoraConfig;
}

/** Python's X-LoRA adapter of a case, loaded here. */
function loadCase(name: string): PeftModel {
  const peft = getPeftModel(base(), caseConfig(name));
  peft.loadAdapterWeights(join(set.peftDir(name), "adapter"), "default");
  return peft.eval();
}

const host = (peft: PeftModel) => peft.baseModel as XLoraModel;

describe("X-LoRA against Python peft 0.15.2 (through the script's hand-written hook driver)", () => {
  for (const name of CASES) {
    it(`${name}: Python's adapter gives its logits, scalings and loss here`, () => {
      const peft = loadCase(name);
      const want = readExpected(set.peftDir(name));
      const out = T.noGrad(() => peft.forward(inputs()));
      close(out.logits, want.get("logits"), `${name} logits`);
      close(host(peft).latestScalings()!, want.get("scalings"), `${name} scalings`);
      const { inputIds, attentionMask } = inputs();
      const loss = T.noGrad(() => peft.forward({ inputIds, attentionMask, labels: inputIds })).loss!;
      close(loss, want.get("loss"), `${name} loss`);
    });
    it(`${name}: generate (two caches, one per pass) gives Python's cache-less greedy tokens`, () => {
      const peft = loadCase(name);
      const { genInputIds, genAttentionMask } = readInputs(set.modelDir("llama"));
      const got = peft.generate({ inputIds: genInputIds!, attentionMask: genAttentionMask!, maxNewTokens: 4 });
      assert.deepEqual([...got.dataSync()], [...readExpected(set.peftDir(name)).get("generate_greedy")!.dataSync()]);
    });
  }

  it("the cases differ from each other and from the base model (the goldens exercise the mixing)", () => {
    const logits = CASES.map((n) => readExpected(set.peftDir(n)).get("logits")!.dataSync());
    const plain = T.noGrad(() => base().forward(inputs())).logits!.dataSync();
    for (const [i, l] of logits.entries()) {
      assert.ok(
        l.some((v, j) => Math.abs(v - plain[j]!) > 1e-3),
        `${CASES[i]} equals the base model`,
      );
      for (const other of logits.slice(i + 1)) assert.ok(l.some((v, j) => Math.abs(v - other[j]!) > 1e-3));
    }
  });

  it("saves peft's file: the classifier's names and shapes, the config's fields; it reloads to the same logits", () => {
    for (const name of CASES) {
      const peft = loadCase(name);
      const dir = mkdtempSync(join(tmpdir(), "peft-ts-xlora-"));
      peft.savePretrained(dir);
      const shapes = (m: Map<string, T.Tensor>) => Object.fromEntries([...m].map(([k, t]) => [k, t.shape.join("x")]));
      const python = loadSafetensors(join(set.peftDir(name), "adapter", "adapter_model.safetensors"));
      const ours = loadSafetensors(join(dir, "adapter_model.safetensors"));
      assert.deepEqual(shapes(ours), shapes(python), name);
      assert.ok([...ours.keys()].every((k) => k.startsWith("base_model.internal_xlora_classifier.layers.")));
      const savedConfig = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
      const pythonConfig = JSON.parse(
        readFileSync(join(set.peftDir(name), "adapter", "adapter_config.json"), "utf8"),
      ) as Record<string, unknown>;
      assert.deepEqual(Object.keys(savedConfig).sort(), Object.keys(pythonConfig).sort());
      const reloaded = getPeftModel(base(), caseConfig(name));
      reloaded.loadAdapterWeights(dir, "default");
      const a = T.noGrad(() => peft.forward(inputs())).logits!,
        b = T.noGrad(() => reloaded.eval().forward(inputs())).logits!;
      close(a, b, `${name} reloaded`);
    }
  });
});

describe("X-LoRA adapters made here", () => {
  it(
    "a fresh classifier saves and reloads to the same logits; they go to $PEFT_TS_ADAPTERS for " +
      "`make_method_fixtures_xlora.py --check-ts-adapters`",
    () => {
      const out = process.env["PEFT_TS_ADAPTERS"] ?? mkdtempSync(join(tmpdir(), "peft-ts-xlora-made-"));
      for (const name of CASES) {
        T.manualSeed(40 + name.length);
        const peft = getPeftModel(base(), caseConfig(name)).eval();
        const dir = join(out, name);
        peft.savePretrained(dir);
        const got = T.noGrad(() => peft.forward(inputs())).logits!;
        writeSafetensors(join(dir, "logits.safetensors"), new Map([["logits", got]]), { format: "pt" });
        const reloaded = getPeftModel(base(), caseConfig(name));
        reloaded.loadAdapterWeights(dir, "default");
        assert.equal(maxAbsDiff(T.noGrad(() => reloaded.eval().forward(inputs())).logits!, got), 0, name);
      }
    },
  );
});

describe("X-LoRA disabled (peft's behaviour)", () => {
  it(
    "withAdapterDisabled skips the classifier and every expert adds its full output, as plain " +
      "LoRA with all experts active",
    () => {
      const xlora = loadCase("deep");
      const got = xlora.withAdapterDisabled(() => T.noGrad(() => xlora.forward(inputs())).logits!);
      const lora = PeftModel.fromPretrained(base(), EXPERTS[0]!, { adapterName: "0" });
      lora.loadAdapter(EXPERTS[1]!, "1");
      lora.loadAdapter(EXPERTS[2]!, "2");
      lora.baseModel.setAdapter(["0", "1", "2"]);
      close(got, T.noGrad(() => lora.forward(inputs())).logits!, "disabled X-LoRA vs plain LoRA");
    },
  );
});

describe("X-LoRA scalings by hand", () => {
  const config = (fields: Partial<XLoraConfig>) => XLoraConfig({ hidden_size: 4, adapters: { "0": "a" }, ...fields });
  // [batch 1, length 2, layers 1, experts 3]
  const s = () => T.tensor(Float32Array.from([0.1, 0.5, 0.2, 0.9, -0.3, 0.4]), [1, 2, 1, 3]);

  it("top_k_lora keeps each token's k largest and zeroes the rest", () => {
    const got = [...layerScalings(s(), 0, config({ top_k_lora: 2, enable_softmax: false })).dataSync()];
    assert.deepEqual(
      got.map((v) => Math.round(v * 1e6) / 1e6 + 0),
      [0, 0.5, 0.2, 0.9, 0, 0.4],
    );
  });

  it("enable_softmax_topk takes one softmax over all the layer's kept entries, across tokens (as peft does)", () => {
    const got = layerScalings(
      s(),
      0,
      config({ top_k_lora: 2, enable_softmax: false, enable_softmax_topk: true }),
    ).dataSync();
    const kept = [0.5, 0.2, 0.9, 0.4];
    const z = kept.reduce((a, v) => a + Math.exp(v), 0);
    const want = [0, Math.exp(0.5) / z, Math.exp(0.2) / z, Math.exp(0.9) / z, 0, Math.exp(0.4) / z];
    want.forEach((w, i) => {
      assert.ok(Math.abs(got[i]! - w) < 1e-6, `${i}: ${got[i]} vs ${w}`);
    });
  });
});

describe("X-LoRA trains its gating", () => {
  const fresh = (fields: Partial<XLoraConfig> = {}) => {
    T.manualSeed(3);
    return getPeftModel(
      base(),
      XLoraConfig({
        task_type: "CAUSAL_LM",
        hidden_size: 16,
        adapters: Object.fromEntries(EXPERTS.map((p, i) => [String(i), p])),
        ...fields,
      }),
    );
  };

  it("only the classifier is trainable; training lowers the loss and leaves the experts unchanged", () => {
    const peft = fresh({ xlora_depth: 2, xlora_size: 8, xlora_dropout_p: 0 }).train();
    const trainable = peft
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([k]) => k);
    assert.deepEqual(trainable, [
      "base_model.internal_xlora_classifier.layers.0.weight",
      "base_model.internal_xlora_classifier.layers.0.bias",
      "base_model.internal_xlora_classifier.layers.2.weight",
      "base_model.internal_xlora_classifier.layers.2.bias",
    ]);
    const experts = peft.namedParameters().filter(([k]) => /\.lora_[AB]\./.test(k));
    const before = experts.map(([, p]) => Float32Array.from(p.dataSync()));
    const ids = T.tensor(Int32Array.from([5, 9, 13, 5, 9, 13, 5, 9, 5, 9, 13, 5, 9, 13, 5, 9]), [2, 8]);
    const losses = trainToy(peft, 25, 0.05, ids);
    assert.ok(losses[losses.length - 1]! < losses[0]! - 0.05, `losses ${losses[0]} → ${losses[losses.length - 1]}`);
    experts.forEach(([k, p], i) => {
      assert.deepEqual(p.dataSync(), before[i], `${k} changed`);
    });
  });

  it(
    "gradient checkpointing is refused while training (a recomputed layer would give the " + "classifier no gradient)",
    () => {
      const peft = getPeftModel(base().gradientCheckpointingEnable(), {
        ...caseConfig("topk"),
        inference_mode: false,
      } as XLoraConfig).train();
      const { inputIds } = inputs();
      assert.throws(
        () => peft.forward({ inputIds, labels: inputIds }),
        (e: Error) => e instanceof ConfigError && /gradient checkpointing/.test(e.message),
      );
      assert.ok(
        T.noGrad(() => peft.forward({ inputIds }))
          .logits!.dataSync()
          .every(Number.isFinite),
      );
    },
  );

  it("use_trainable_adapters makes the experts trainable too", () => {
    const peft = fresh({ use_trainable_adapters: true });
    const experts = peft.namedParameters().filter(([k]) => /\.lora_[AB]\./.test(k));
    assert.ok(experts.length === 3 * 3 * 2 * 2 && experts.every(([, p]) => p.requiresGrad));
  });
});

describe("X-LoRA from `peft train`", () => {
  it("a config naming two LoRA experts trains the classifier and saves it under peft's names", () => {
    const ws = cliWorkspace("peft-ts-xlora-cli-", LLAMA);
    for (const [i, targets] of [
      ["q_proj", "v_proj"],
      ["q_proj", "v_proj"],
    ].entries()) {
      T.manualSeed(20 + i);
      getPeftModel(
        fromPretrained(join(ws.root, "model"), "causal-lm"),
        LoraConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: targets, init_lora_weights: false }),
      ).savePretrained(join(ws.root, `expert-${i}`));
    }
    trainMethod(ws, "XLORA", { hidden_size: LLAMA.hidden_size, adapters: { "0": "expert-0", "1": "expert-1" } });
    const saved = loadSafetensors(join(ws.root, "out-XLORA", "adapter_model.safetensors"));
    assert.deepEqual([...saved.keys()].sort(), [
      "base_model.internal_xlora_classifier.layers.0.bias",
      "base_model.internal_xlora_classifier.layers.0.weight",
    ]);
    assert.deepEqual(saved.get("base_model.internal_xlora_classifier.layers.0.weight")!.shape, [2, LLAMA.hidden_size]);
  });
});

describe("X-LoRA refusals", () => {
  it("experts with different targets (peft fails with a KeyError), a wrong hidden_size, a mismatched file", () => {
    const dir = mkdtempSync(join(tmpdir(), "peft-ts-xlora-expert-"));
    getPeftModel(base(), LoraConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: ["q_proj"] })).savePretrained(dir);
    assert.throws(
      () => getPeftModel(base(), XLoraConfig({ hidden_size: 16, adapters: { "0": EXPERTS[0]!, "1": dir } })),
      (e: Error) => e instanceof ConfigError && /do not adapt .*v_proj/.test(e.message),
    );
    assert.throws(
      () => getPeftModel(base(), XLoraConfig({ hidden_size: 32, adapters: { "0": EXPERTS[0]! } })),
      (e: Error) => e instanceof ConfigError && /hidden size is 16/.test(e.message),
    );
    assert.throws(() => XLoraConfig({ hidden_size: 16, adapters: {}, top_k_lora: 0 }), ConfigError);
    const peft = getPeftModel(base(), { ...caseConfig("deep"), xlora_dropout_p: 0 } as XLoraConfig);
    assert.throws(
      () => peft.loadAdapterWeights(join(set.peftDir("deep"), "adapter"), "default"),
      (e: Error) => e instanceof CheckpointError && /layers\.3\.weight/.test(e.message),
    );
    const bad = mkdtempSync(join(tmpdir(), "peft-ts-xlora-bad-"));
    writeSafetensors(join(bad, "adapter_model.safetensors"), new Map([["x", T.zeros([1])]]));
    assert.throws(() => loadCase("dense").loadAdapterWeights(bad, "default"), CheckpointError);
  });
});
