/**
 * The adapter contract (src/peft/contract.ts): each method's host declares its capabilities, and PeftModel follows
 * the declaration — merging, weighted combination and the per-step hook work where declared and give an error
 * naming the method where not. Generation is a method of the generative model classes with nothing else imported.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import {
  AdaLoraConfig,
  type AdaLoraModel,
  AdaptionPromptConfig,
  IA3Config,
  LoHaConfig,
  LoKrConfig,
  LoraConfig,
  PrefixTuningConfig,
  PromptTuningConfig,
  TaskType,
  getPeftModel,
  type PeftConfig,
} from "../src/peft/index.js";
import * as T from "../src/tensor/index.js";
import { LLAMA, IDS, llama, logits } from "./tiny-models.js";
import { values } from "./helpers.js";

const CAUSAL = { task_type: TaskType.CAUSAL_LM };
const LINEARS = ["q_proj", "v_proj"];

/** Each method, the capabilities its host must declare: [merge, weighted combination, per-step hook]. */
const METHODS: [string, () => PeftConfig, [boolean, boolean, boolean]][] = [
  ["LORA", () => LoraConfig({ ...CAUSAL, r: 2 }), [true, true, false]],
  ["ADALORA", () => AdaLoraConfig({ ...CAUSAL, init_r: 4, target_r: 2, total_step: 10 }), [true, false, true]],
  ["IA3", () => IA3Config({ ...CAUSAL }), [true, true, false]],
  ["LOHA", () => LoHaConfig({ ...CAUSAL, r: 2, target_modules: LINEARS }), [true, false, false]],
  ["LOKR", () => LoKrConfig({ ...CAUSAL, r: 2, target_modules: LINEARS }), [true, false, false]],
  [
    "ADAPTION_PROMPT",
    () => AdaptionPromptConfig({ ...CAUSAL, adapter_len: 2, adapter_layers: 1 }),
    [false, false, false],
  ],
  ["PROMPT_TUNING", () => PromptTuningConfig({ ...CAUSAL, num_virtual_tokens: 2 }), [false, false, false]],
  ["PREFIX_TUNING", () => PrefixTuningConfig({ ...CAUSAL, num_virtual_tokens: 2 }), [false, false, false]],
];

describe("adapter contract: declared capabilities", () => {
  for (const [name, config, [merge, weighted, stepHook]] of METHODS) {
    it(
      `${name}: merge ${merge}, weighted combination ${weighted}, per-step hook ${stepHook}; ` +
        `PeftModel follows the declaration`,
      () => {
        const peft = getPeftModel(llama(), config());
        const { capabilities, family } = peft.base_model;
        assert.equal(family, name.endsWith("_TUNING") ? "virtual-tokens" : "injected-layers");
        const declared = [capabilities.merge, capabilities.weightedCombination, capabilities.optimizerStepHook].map(
          (c) => c !== null,
        );
        assert.deepEqual(declared, [merge, weighted, stepHook]);
        if (!merge) {
          assert.throws(() => peft.mergeAdapter(), new RegExp(`${name} adapters cannot be merged`));
          assert.throws(() => peft.mergeAndUnload(), /cannot be merged/);
        }
        if (!weighted)
          assert.throws(
            () => peft.addWeightedAdapter(["default"], [1], "mix"),
            new RegExp(`LoRA adapters only.*${name}`),
          );
        if (!stepHook) {
          // No hook: a step changes nothing (the adapter's parameters are not touched).
          const before = peft.base_model.adapterParameters("default").map((p) => values(p));
          peft.afterOptimizerStep(0);
          assert.deepEqual(
            peft.base_model.adapterParameters("default").map((p) => values(p)),
            before,
          );
        }
      },
    );
  }

  it(
    "ADALORA: PeftModel.afterOptimizerStep runs the rank allocation: the importance |w·∂L/∂w| " +
      "of lora_A after one step",
    () => {
      const peft = getPeftModel(llama(), AdaLoraConfig({ ...CAUSAL, init_r: 4, target_r: 2, total_step: 10 }));
      assert.throws(() => peft.afterOptimizerStep(0), /gradient.*after loss\.backward\(\) and before zeroGrad\(\)/);
      peft.forward({ inputIds: IDS(), labels: IDS() }).loss!.backward();
      peft.afterOptimizerStep(0);
      const tuner = peft.base_model as AdaLoraModel;
      const name = "model.layers.0.self_attn.q_proj";
      const A = tuner
        .adaLoraLayers()
        .find(([path]) => path === name)![1]
        .A("default");
      const want = values(A).map((w, i) => Math.fround(Math.abs(w * values(A.grad!)[i]!)));
      assert.ok(
        want.some((v) => v > 0),
        "A starts random, so its importance is not all zero",
      );
      assert.deepEqual(Array.from(tuner.rankAllocator!.importance(`${name}.lora_A.default`)!.ipt), want);
    },
  );
});

describe("generate is a method of the generative model classes", () => {
  it("a causal LM loaded through the Auto classes generates without importing generation/", () => {
    T.manualSeed(3);
    const model = AutoModelForCausalLM.fromConfig(LLAMA);
    const prompt = T.tensor(Int32Array.from([5, 9, 2]), [1, 3]);
    const out = model.generate({ inputIds: prompt, maxNewTokens: 2, eosTokenId: [], padTokenId: 0 });
    // Greedy by hand: the argmax of the last position's logits, appended, twice.
    const seq = [5, 9, 2];
    for (let step = 0; step < 2; step++) {
      const row = logits(model, () => ({ inputIds: T.tensor(Int32Array.from(seq), [1, seq.length]) }));
      const last = row.slice(row.length - Number(LLAMA.vocab_size));
      seq.push(last.indexOf(Math.max(...last)));
    }
    assert.deepEqual(values(out), seq);
  });
});
