/**
 * addWeightedAdapter's pruning merges (ties, dare_linear, dare_ties, magnitude_prune and their _svd variants) against
 * peft 0.15.2 goldens (scripts/make_method_fixtures_lora_api.py), and DARE against hand-computed values for given masks.
 * DARE below density 1 is compared with a TorchGenerator seeded as the script seeded torch before the call.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../src/errors.js";
import type { LoraLinear, LoraModel } from "../src/peft/index.js";
import { noGrad, TorchGenerator } from "../src/tensor/index.js";
import { mergeTaskTensors, magnitudePruned, type TaskMergeOptions } from "../src/peft/tuners/lora/weighted.js";
import { assertClose, values } from "./helpers.js";
import { LORA_API_CASES, loraApiExpected, loraApiInputs, loadLoraApiAdapters } from "./lora-api-fixtures.js";

const expected = loraApiExpected();
const TOL = 1e-4;

interface WeightedCase {
  adapters: string[];
  weights: number[];
  combination_type: string;
  density: number;
  majority_sign_method?: "total" | "frequency";
  svd_rank?: number;
  /** torch.manual_seed before the call (DARE below density 1). */
  seed?: number;
  /** The first adapter's init_lora_weights for the call (the new adapter's initial draws follow it). */
  init_lora_weights?: boolean | string;
  new_rank: number;
}

describe("addWeightedAdapter: pruning merges against peft 0.15.2", () => {
  for (const [name, c] of Object.entries(LORA_API_CASES.weighted as Record<string, WeightedCase>)) {
    const options = [
      `density ${c.density}`,
      ...(c.majority_sign_method ? [c.majority_sign_method] : []),
      ...(c.seed === undefined ? [] : [`seed ${c.seed}`]),
      ...(c.init_lora_weights === undefined ? [] : [`init_lora_weights ${c.init_lora_weights}`]),
    ];
    it(`${name}: ${c.combination_type} (${options.join(", ")})`, () => {
      const peft = loadLoraApiAdapters(["first", "second", "third"]);
      if (c.init_lora_weights !== undefined)
        peft.peftConfig[c.adapters[0]!]!["init_lora_weights"] = c.init_lora_weights;
      const generator = c.seed === undefined ? undefined : new TorchGenerator().manualSeed(c.seed);
      peft.addWeightedAdapter(c.adapters, c.weights, "new", {
        combinationType: c.combination_type as never,
        density: c.density,
        majoritySignMethod: c.majority_sign_method,
        svdRank: c.svd_rank ?? null,
        generator,
      });
      // The generator has made exactly torch's draws: the next ones are torch.rand(8) after the call.
      if (generator)
        assert.deepEqual(
          [...generator.uniformValues(8)],
          [...values(expected.get(`${name}.next_rand`)!)],
          "torch.rand(8) after the call",
        );
      assert.equal(peft.peftConfig["new"]!["r"], c.new_rank);
      peft.setAdapter("new");
      const model = (peft.base_model as LoraModel).model;
      if (c.combination_type.endsWith("svd")) {
        // Singular vectors' signs are implementation-defined; their product is not.
        const layer = model.getSubmodule("transformer.h.0.attn.c_proj") as LoraLinear;
        assertClose(
          values(noGrad(() => layer.getDeltaWeight("new"))),
          values(expected.get(`${name}.c_proj.delta`)!),
          TOL,
          0,
          "c_proj ΔW",
        );
      } else {
        for (const [short, path] of [
          ["c_attn", "transformer.h.0.attn.c_attn"],
          ["wte", "transformer.wte"],
        ] as const) {
          const { A, B } = (model.getSubmodule(path) as LoraLinear).loraFactors("new");
          assertClose(values(A), values(expected.get(`${name}.${short}.A`)!), 1e-6, 0, `${short} A`);
          assertClose(values(B), values(expected.get(`${name}.${short}.B`)!), 1e-6, 0, `${short} B`);
        }
      }
      const logits = noGrad(() => peft.forward(loraApiInputs())).logits!;
      assertClose(values(logits), values(expected.get(`${name}.logits`)!), TOL, 0, "logits");
    });
  }

  it("refuses a pruning merge without density, a bad majority sign method and unequal ranks", () => {
    const peft = loadLoraApiAdapters(["first", "second", "fourth"]);
    assert.throws(
      () => peft.addWeightedAdapter(["first", "second"], [1, 1], "x", { combinationType: "ties" }),
      (e: unknown) => e instanceof ConfigError && /needs a density/.test(e.message),
    );
    assert.throws(
      () =>
        peft.addWeightedAdapter(["first", "second"], [1, 1], "x", { combinationType: "dare_ties_svd", density: -0.1 }),
      ConfigError,
    );
    assert.throws(
      () =>
        peft.addWeightedAdapter(["first", "second"], [1, 1], "x", {
          combinationType: "ties",
          density: 0.5,
          majoritySignMethod: "mean" as never,
        }),
      /majoritySignMethod "mean"/,
    );
    assert.throws(
      () =>
        peft.addWeightedAdapter(["first", "fourth"], [1, 1], "x", { combinationType: "magnitude_prune", density: 0.5 }),
      /same r value when using combination_type "magnitude_prune"/,
    );
    assert.throws(
      () => peft.addWeightedAdapter(["first", "second"], [1, 1], "x", { combinationType: "nope" as never }),
      /invalid combination_type "nope"/,
    );
    assert.ok(!("x" in peft.peftConfig));
  });
});

describe("merge_utils by hand", () => {
  const t1 = Float64Array.from([0.5, -2, 0.1, 3]);
  const t2 = Float64Array.from([-1, 1, 0.4, -0.2]);
  const t3 = Float64Array.from([2, -0.5, -0.3, 0.6]);
  const masks = [
    [1, 0, 1, 1],
    [1, 1, 0, 1],
    [0, 1, 1, 1],
  ];
  /** A mask source that hands out the given masks in order, recording the densities asked for. */
  function fixedMasks(): TaskMergeOptions["mask"] & { densities: number[] } {
    let next = 0;
    const f = Object.assign(
      (count: number, density: number) => {
        f.densities.push(density);
        assert.equal(count, 4);
        return masks[next++]!;
      },
      { densities: [] as number[] },
    );
    return f;
  }
  const w = [1, 0.5, 2];

  it("magnitude pruning keeps the ⌊density·n⌋ largest |values|", () => {
    assert.deepEqual([...magnitudePruned(t1, 0.5)], [0, -2, 0, 3]);
    assert.deepEqual([...magnitudePruned(t1, 0.74)], [0, -2, 0, 3]); // ⌊2.96⌋ = 2
    assert.deepEqual([...magnitudePruned(t1, 0.75)], [0.5, -2, 0, 3]);
  });

  it("dare_linear: Σ wᵢ·(maskᵢ ⊙ tᵢ), no 1/density rescaling (as peft 0.15.2)", () => {
    const mask = fixedMasks();
    const got = mergeTaskTensors("dare_linear", [t1, t2, t3], w, { density: 0.6, majoritySignMethod: "total", mask });
    // entry 0: 0.5·1 + (−1)·0.5 + 0 = 0; 1: 0 + 1·0.5 + (−0.5)·2 = −0.5; 2: 0.1 + 0 + (−0.3)·2 = −0.5; 3: 3 − 0.1 + 1.2 = 4.1
    assertClose([...got], [0, -0.5, -0.5, 4.1], 1e-12);
    assert.deepEqual(mask.densities, [0.6, 0.6, 0.6]);
  });

  it("dare_ties: masked, signs elected by total or frequency, mean of the agreeing weighted values", () => {
    // Masked: m1 = [0.5, 0, 0.1, 3], m2 = [−1, 1, 0, −0.2], m3 = [0, −0.5, −0.3, 0.6].
    // total: sums [−0.5, 0.5, −0.2, 3.4] → signs [−, +, −, +]:
    //   0: only m2 (−1·0.5) → −0.5; 1: only m2 (1·0.5) → 0.5; 2: only m3 (−0.3·2) → −0.6; 3: m1, m3 → (3 + 1.2)/2 = 2.1.
    assertClose(
      [
        ...mergeTaskTensors("dare_ties", [t1, t2, t3], w, {
          density: 0.6,
          majoritySignMethod: "total",
          mask: fixedMasks(),
        }),
      ],
      [-0.5, 0.5, -0.6, 2.1],
      1e-12,
    );
    // frequency: sign counts [0, 0, 0, 1] → signs [+, +, +, +]:
    //   0: m1 (0.5) → 0.5; 1: m2 → 0.5; 2: m1 (0.1) → 0.1; 3: m1, m3 → 2.1.
    assertClose(
      [
        ...mergeTaskTensors("dare_ties", [t1, t2, t3], w, {
          density: 0.6,
          majoritySignMethod: "frequency",
          mask: fixedMasks(),
        }),
      ],
      [0.5, 0.5, 0.1, 2.1],
      1e-12,
    );
  });

  it("density ≥ 1 draws no mask and keeps every value", () => {
    const mask = fixedMasks();
    assertClose(
      [...mergeTaskTensors("dare_linear", [t1, t2], [1, 1], { density: 1, majoritySignMethod: "total", mask })],
      [-0.5, -1, 0.5, 2.8],
      1e-12,
    );
    assert.deepEqual(mask.densities, []);
  });

  it("the generator option refuses a new adapter whose init_lora_weights draws are not followed", () => {
    const peft = loadLoraApiAdapters(["first", "second"]);
    peft.peftConfig["first"]!["init_lora_weights"] = "olora";
    assert.throws(
      () =>
        peft.addWeightedAdapter(["first", "second"], [0.7, 0.5], "dare", {
          combinationType: "dare_linear",
          density: 0.5,
          generator: new TorchGenerator(),
        }),
      (e: unknown) =>
        e instanceof ConfigError && /init_lora_weights true, false or "gaussian".*"first".*"olora"/.test(e.message),
    );
    assert.ok(!("dare" in peft.peftConfig));
  });
});
