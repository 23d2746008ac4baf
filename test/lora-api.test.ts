/**
 * LoRA's adapter API against peft 0.15.2 (scripts/make_method_fixtures_lora_api.py): several active adapters,
 * getModelStatus / getLayerStatus, getPeftModelStateDict / setPeftModelStateDict, hotswapAdapter; and by hand
 * setRequiresGrad and injectAdapterInModel.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import {
  LoraConfig,
  LoraLinear,
  TaskType,
  getLayerStatus,
  getModelStatus,
  getPeftModel,
  getPeftModelStateDict,
  hotswapAdapter,
  hotswapAdapterFromStateDict,
  injectAdapterInModel,
  setPeftModelStateDict,
  PromptTuningConfig,
  IA3Config,
  LoHaConfig,
  LoKrConfig,
  AdaLoraConfig,
  type LoraModel,
  type PeftModel,
} from "../src/peft/index.js";
import { ConfigError, ModelMismatchError } from "../src/errors.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { manualSeed, noGrad, tensor, zeros } from "../src/tensor/index.js";
import { modelDir } from "./golden.js";
import { assertClose, values } from "./helpers.js";
import {
  LORA_API_CASES,
  loadLoraApiAdapters,
  loraApiAdapter,
  loraApiExpected,
  loraApiInputs,
} from "./lora-api-fixtures.js";

const expected = loraApiExpected();
const TOL = 1e-4;

function logits(peft: PeftModel): number[] {
  return values(noGrad(() => peft.forward(loraApiInputs())).logits!);
}

/** A status object with peft's snake_case keys (nested records keep their adapter-name keys). */
function snake(status: object): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(status).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]),
  );
}

describe("several active adapters", () => {
  for (const active of [
    ["first", "second"],
    ["first", "second", "third"],
  ]) {
    it(`${active.join(" + ")}: the deltas add up, as peft's base_model.set_adapter([...])`, () => {
      const peft = loadLoraApiAdapters(["first", "second", "third"]);
      peft.base_model.setAdapter(active);
      const want = values(expected.get(`active_${active.join("_")}.logits`)!);
      assertClose(logits(peft), want, TOL, 0, "logits");
    });
  }
});

describe("getModelStatus / getLayerStatus equal peft's", () => {
  const golden = LORA_API_CASES["status"] as Record<
    string,
    { model: Record<string, unknown>; layers: Record<string, unknown>[] }
  >;
  const peft = loadLoraApiAdapters(["first", "second", "third"], ["first", "second"]);
  const states: [string, () => void][] = [
    ["loaded", () => {}],
    ["active_first_second", () => peft.base_model.setAdapter(["first", "second"])],
    ["merged_first_second", () => peft.mergeAdapter()],
  ];
  for (const [state, step] of states) {
    it(state, () => {
      step();
      assert.deepEqual(snake(getModelStatus(peft)), golden[state]!.model);
      assert.deepEqual(getLayerStatus(peft).map(snake), golden[state]!.layers);
    });
  }

  it(
    "disabled: enabled false everywhere (peft also freezes every adapter while disabled; " +
      "peft-ts keeps requiresGrad)",
    () => {
      peft.unmergeAdapter();
      const want = golden["disabled"]!;
      peft.withAdapterDisabled(() => {
        const { requires_grad: _got, ...got } = snake(getModelStatus(peft));
        const { requires_grad: _want, ...rest } = want.model;
        assert.deepEqual(got, { ...rest, trainable_params: 8960 });
        assert.deepEqual(
          getLayerStatus(peft).map((l) => l.enabled),
          want.layers.map((l) => l["enabled"]),
        );
      });
    },
  );

  it("each method's layers name themselves as peft's do", () => {
    const configs = {
      LORA: LoraConfig({ target_modules: ["lm_head", "wte"] }),
      IA3: IA3Config({ target_modules: ["lm_head"], feedforward_modules: [] }),
      LOHA: LoHaConfig({ target_modules: ["lm_head"] }),
      LOKR: LoKrConfig({ target_modules: ["lm_head"] }),
      ADALORA: AdaLoraConfig({ target_modules: ["lm_head"], total_step: 10 }),
    };
    const want = LORA_API_CASES["module_types"] as Record<string, Record<string, string>>;
    for (const [method, config] of Object.entries(configs)) {
      const model = getPeftModel(fromPretrained(modelDir("gpt2"), "causal-lm"), config);
      assert.deepEqual(
        Object.fromEntries(getLayerStatus(model).map((l) => [l.name, l.moduleType])),
        want[method],
        method,
      );
    }
  });

  it("mixed merges are irregular; a model without adapter layers and prompt learning are refused", () => {
    const fresh = loadLoraApiAdapters(["first", "second"]);
    const [, layer] = (fresh.base_model as LoraModel).tunerLayers().find(([k]) => k.endsWith("h.0.attn.c_attn"))!;
    layer.merge(["first"]);
    assert.equal(getModelStatus(fresh).mergedAdapters, "irregular");
    layer.disableAdapters = true;
    assert.equal(getModelStatus(fresh).enabled, "irregular");
    assert.throws(
      () => getLayerStatus(fromPretrained(modelDir("gpt2"), "causal-lm")),
      (e: unknown) => e instanceof ConfigError && /No adapter layers found/.test(e.message),
    );
    const prompt = getPeftModel(
      fromPretrained(modelDir("gpt2"), "causal-lm"),
      PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 2 }),
    );
    assert.throws(() => getModelStatus(prompt), /prompt learning methods have no adapter layers/);
  });
});

describe("getPeftModelStateDict / setPeftModelStateDict", () => {
  const golden = LORA_API_CASES["state_dict"] as Record<string, unknown>;

  it("key sets per adapter equal peft's, values the adapter files'", () => {
    const peft = loadLoraApiAdapters(["first", "second", "third"]);
    for (const name of ["first", "second", "third"]) {
      const sd = getPeftModelStateDict(peft, name);
      assert.deepEqual([...sd.keys()].sort(), golden[name]);
      const file = loadSafetensors(`${loraApiAdapter(name)}/adapter_model.safetensors`);
      for (const [k, t] of file) assert.deepEqual(values(sd.get(k)!), values(t), k);
    }
  });

  it(
    "loading second's file as first: unexpected and missing keys as peft reports them, " + "matching tensors copied",
    () => {
      const peft = loadLoraApiAdapters(["first", "second", "third"]);
      const file = loadSafetensors(`${loraApiAdapter("second")}/adapter_model.safetensors`);
      const result = setPeftModelStateDict(peft, file, "first");
      const want = golden["set_second_as_first"] as { unexpected_keys: string[]; missing_lora_keys: string[] };
      assert.deepEqual([...result.unexpectedKeys].sort(), want.unexpected_keys);
      assert.deepEqual(
        result.missingKeys.filter((k) => k.includes("lora_") && /\.first(\.|$)/.test(k)).sort(),
        want.missing_lora_keys,
      );
      assert.ok(result.missingKeys.includes("base_model.model.transformer.h.0.attn.c_attn.base_layer.weight"));
      const layer = (peft.base_model as LoraModel).model.getSubmodule("transformer.h.1.attn.c_attn") as LoraLinear;
      assert.deepEqual(
        values(layer.loraFactors("first").B),
        values(file.get("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight")!),
      );
    },
  );

  it("a shape that differs is an error, or skipped and reported missing with ignoreMismatchedSizes", () => {
    const peft = loadLoraApiAdapters(["first", "fourth"]);
    const file = loadSafetensors(`${loraApiAdapter("first")}/adapter_model.safetensors`);
    const onlyAttn = new Map([...file].filter(([k]) => k.includes("c_attn")));
    assert.throws(
      () => setPeftModelStateDict(peft, onlyAttn, "fourth"),
      (e: unknown) =>
        e instanceof ModelMismatchError &&
        /size mismatch for .*c_attn\.lora_A\.fourth\.weight: \[4, 64\] in the state dict, \[2, 64\]/.test(e.message),
    );
    const before = values(
      (peft.base_model as LoraModel).model
        .getSubmodule("transformer.h.0.attn.c_attn")
        .getSubmodule("lora_A.fourth")
        .getTensor("weight"),
    );
    const result = setPeftModelStateDict(peft, onlyAttn, "fourth", { ignoreMismatchedSizes: true });
    assert.ok(result.missingKeys.includes("base_model.model.transformer.h.0.attn.c_attn.lora_A.fourth.weight"));
    assert.deepEqual(
      values(
        (peft.base_model as LoraModel).model
          .getSubmodule("transformer.h.0.attn.c_attn")
          .getSubmodule("lora_A.fourth")
          .getTensor("weight"),
      ),
      before,
    );
    assert.throws(() => setPeftModelStateDict(peft, onlyAttn, "nope"), /no adapter named "nope"/);
  });
});

describe("state dicts of a model given adapters by injectAdapterInModel", () => {
  it(
    "keys are the model's own paths, as peft's; a round trip through setPeftModelStateDict " + "restores the values",
    () => {
      const config = LoraConfig({
        r: 2,
        target_modules: ["c_attn"],
        modules_to_save: ["ln_f"],
        init_lora_weights: false,
        fan_in_fan_out: true,
      });
      const model = injectAdapterInModel(config, fromPretrained(modelDir("gpt2"), "causal-lm"), "mine");
      const sd = getPeftModelStateDict(model, "mine");
      assert.deepEqual(
        [...sd.keys()].sort(),
        (LORA_API_CASES["state_dict"] as Record<string, unknown>)["injected_mine"],
      );
      const wanted = [...sd].map(([k, t]) => [k, values(t)] as const);
      const saved = new Map(wanted.map(([k, v]) => [k, tensor(Float32Array.from(v), sd.get(k)!.shape)]));
      noGrad(() => {
        for (const t of sd.values()) t.copy_(zeros(t.shape));
      });
      assert.ok(values(sd.get("transformer.ln_f.weight")!).every((x) => x === 0));
      const result = setPeftModelStateDict(model, saved, "mine");
      assert.deepEqual(result.unexpectedKeys, []);
      const after = getPeftModelStateDict(model, "mine");
      for (const [k, v] of wanted) assert.deepEqual(values(after.get(k)!), v, k);
      // A second adapter goes into the same model and has its own keys.
      injectAdapterInModel(LoraConfig({ r: 2, target_modules: ["c_attn"], fan_in_fan_out: true }), model, "other");
      assert.ok(model.getSubmodule("transformer.h.0.attn.c_attn") instanceof LoraLinear);
      assert.deepEqual(getModelStatus(model).availableAdapters, ["mine", "other"]);
      assert.throws(() => getPeftModelStateDict(model, "nope"), /no adapter named "nope"/);
    },
  );
});

describe("hotswapAdapter", () => {
  const golden = LORA_API_CASES["hotswap"] as Record<string, unknown>;

  it(
    "fourth (rank 2, c_attn only) into first: logits and scaling as peft, the smaller rank " +
      "zero-padded, wte zeroed",
    () => {
      const peft = loadLoraApiAdapters(["first"]);
      hotswapAdapter(peft, loraApiAdapter("fourth"), "first");
      assertClose(logits(peft), values(expected.get("hotswap_fourth_into_first.logits")!), TOL, 0, "logits");
      const layer = (peft.base_model as LoraModel).model.getSubmodule("transformer.h.0.attn.c_attn") as LoraLinear;
      const want = golden["fourth_into_first"] as { scaling: number; lora_A_shape: number[] };
      assert.equal(layer.scaling.get("first"), want.scaling);
      assert.deepEqual(layer.loraFactors("first").A.shape, want.lora_A_shape);
      // The swapped-in adapter equals loading it directly.
      assertClose(logits(peft), logits(loadLoraApiAdapters(["fourth"])), 1e-5, 0, "vs fourth loaded");
    },
  );

  it(
    "third into first is accepted like peft; second (new c_proj layers) is refused with peft's " +
      "message, the model untouched",
    () => {
      assert.equal(golden["third_into_first"], "ok");
      const peft = loadLoraApiAdapters(["first"]);
      hotswapAdapter(peft, loraApiAdapter("third"), "first");
      assertClose(logits(peft), logits(loadLoraApiAdapters(["third"])), 1e-5, 0, "vs third loaded");

      const other = loadLoraApiAdapters(["first"]);
      const before = logits(other);
      const message = (golden["second_into_first"] as string).replace(/^RuntimeError: /, "");
      assert.throws(
        () => hotswapAdapter(other, loraApiAdapter("second"), "first"),
        (e: unknown) => e instanceof ModelMismatchError && e.message === message,
      );
      assert.deepEqual(logits(other), before);
    },
  );

  it("a larger rank replaces the factors (as peft's swap_tensors); swapping back pads again", () => {
    const peft = loadLoraApiAdapters(["fourth"], ["fourth"]);
    hotswapAdapter(peft, loraApiAdapter("third"), "fourth");
    assertClose(logits(peft), logits(loadLoraApiAdapters(["third"])), 1e-5, 0, "vs third loaded");
    const layer = (peft.base_model as LoraModel).model.getSubmodule("transformer.h.1.attn.c_attn") as LoraLinear;
    assert.deepEqual(
      [layer.r.get("fourth"), layer.loraFactors("fourth").A.shape, layer.loraFactors("fourth").B.shape],
      [4, [4, 64], [192, 4]],
    );
    assert.ok(
      peft.base_model.adapterParameters("fourth").every((p) => p.requiresGrad),
      "stays trainable",
    );
    hotswapAdapter(peft, loraApiAdapter("fourth"), "fourth");
    assertClose(logits(peft), logits(loadLoraApiAdapters(["fourth"])), 1e-5, 0, "vs fourth loaded");
  });

  it("other shapes, a larger rank in one factor only, and incompatible configs are refused", () => {
    const peft = loadLoraApiAdapters(["fourth"]);
    const key = "base_model.model.transformer.h.0.attn.c_attn.lora_A.fourth.weight";
    const config = peft.peftConfig["fourth"] as LoraConfig;
    assert.throws(
      () => hotswapAdapterFromStateDict(peft, new Map([[key, zeros([2, 65])]]), "fourth", config),
      (e: unknown) =>
        e instanceof ModelMismatchError &&
        /Incompatible shapes found for LoRA weights .*lora_A\.fourth\.weight: \[2, 64\] vs \[2, 65\]/.test(e.message),
    );
    assert.throws(
      () => hotswapAdapterFromStateDict(peft, new Map([[key, zeros([3, 64])]]), "fourth", config),
      /lora_A\.fourth\.weight has a larger rank than the loaded adapter but .*lora_B\.fourth\.weight does not/,
    );
    peft.mergeAdapter();
    assert.throws(
      () => hotswapAdapter(peft, loraApiAdapter("fourth"), "fourth"),
      (e: unknown) => e instanceof ConfigError && /while it is merged/.test(e.message),
    );
    peft.unmergeAdapter();
    manualSeed(3);
    const rslora = getPeftModel(
      fromPretrained(modelDir("gpt2"), "causal-lm"),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        target_modules: ["c_attn"],
        use_rslora: true,
        fan_in_fan_out: true,
      }),
    );
    assert.throws(
      () => hotswapAdapter(rslora, loraApiAdapter("third"), "default"),
      (e: unknown) =>
        e instanceof ConfigError && e.message === "Configs are incompatible: for use_rslora, true != false",
    );
  });
});

describe("setRequiresGrad and injectAdapterInModel", () => {
  it("setRequiresGrad switches exactly the named adapters' parameters, active or not", () => {
    const peft = loadLoraApiAdapters(["first", "second", "third"], ["first"]);
    const trainable = () =>
      Object.fromEntries(
        ["first", "second", "third"].map((n) => [n, peft.base_model.adapterParameters(n).map((p) => p.requiresGrad)]),
      );
    peft.setRequiresGrad(["second", "third"]);
    let t = trainable();
    assert.ok(t["first"]!.every(Boolean) && t["second"]!.every(Boolean) && t["third"]!.every(Boolean));
    peft.setRequiresGrad("first", false);
    t = trainable();
    assert.ok(t["first"]!.every((x) => !x) && t["second"]!.every(Boolean));
    assert.deepEqual(peft.activeAdapters, ["first"]);
    assert.throws(
      () => peft.setRequiresGrad(["second", "nope"]),
      (e: unknown) => e instanceof ConfigError && /no adapter named "nope"/.test(e.message),
    );
  });

  it("injectAdapterInModel puts LoRA layers into the model itself, named as peft's, with the adapter's outputs", () => {
    manualSeed(11);
    const config: Partial<LoraConfig> = {
      task_type: TaskType.CAUSAL_LM,
      r: 2,
      target_modules: ["c_attn"],
      fan_in_fan_out: true,
      init_lora_weights: false,
    };
    const model = injectAdapterInModel(LoraConfig(config), fromPretrained(modelDir("gpt2"), "causal-lm"), "mine");
    const layer = model.getSubmodule("transformer.h.1.attn.c_attn");
    assert.ok(layer instanceof LoraLinear && layer.hasAdapter("mine"));
    assert.ok([...model.stateDict().keys()].includes("transformer.h.1.attn.c_attn.lora_A.mine.weight"));
    const status = getModelStatus(model);
    assert.deepEqual(
      [status.baseModelType, status.adapterModelType, status.numAdapterLayers, status.activeAdapters],
      [model.constructor.name, "None", 2, ["mine"]],
    );
    // The same seed and config through getPeftModel give the same weights and logits.
    manualSeed(11);
    const peft = getPeftModel(fromPretrained(modelDir("gpt2"), "causal-lm"), LoraConfig(config), "mine");
    const ids = loraApiInputs();
    assertClose(values((noGrad(() => model.forward(ids)) as ModelOutput).logits!), logits(peft), 1e-6, 0, "logits");
    assert.throws(
      () => getPeftModelStateDict(fromPretrained(modelDir("gpt2"), "causal-lm")),
      /this model has no adapters/,
    );
    assert.throws(
      () =>
        injectAdapterInModel(
          PromptTuningConfig({ task_type: TaskType.CAUSAL_LM, num_virtual_tokens: 2 }),
          fromPretrained(modelDir("gpt2"), "causal-lm"),
        ),
      (e: unknown) => e instanceof ConfigError && /does not support PROMPT_TUNING/.test(e.message),
    );
  });
});
