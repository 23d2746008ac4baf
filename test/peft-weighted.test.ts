/**
 * addWeightedAdapter on GPT-2 (Conv1D layers with fan_in_fan_out, and the token embedding): each combination's
 * delta weights against the formulas of peft 0.15.2, the new adapter's config, and the errors.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained } from "../src/models/auto.js";
import { LoraConfig, LoraEmbedding, LoraLinear, type PeftModel, getPeftModel, TaskType } from "../src/peft/index.js";
import type { LoraModel } from "../src/peft/index.js";

type Fields = Partial<LoraConfig>;
import { manualSeed, noGrad, tensor } from "../src/tensor/index.js";
import { quantile, svdF64 } from "../src/tensor/linalg.js";
import { modelDir } from "./golden.js";
import { assertClose, values } from "./helpers.js";

const W = [0.7, -0.4];

/** GPT-2 with adapters "a" (r 4, alpha 8, c_attn + wte), "b" (r 2, alpha 3, c_attn + c_proj), "c" (r 4, alpha 2, c_attn). */
function model(): PeftModel {
  manualSeed(1234);
  const base = fromPretrained(modelDir("gpt2"), "causal-lm");
  const common = { task_type: TaskType.CAUSAL_LM, init_lora_weights: false, fan_in_fan_out: true } as const;
  const peft = getPeftModel(
    base,
    LoraConfig({ ...common, r: 4, lora_alpha: 8, target_modules: ["c_attn", "wte"] }),
    "a",
  );
  peft.addAdapter("b", LoraConfig({ ...common, r: 2, lora_alpha: 3, target_modules: ["c_attn", "c_proj"] }));
  peft.addAdapter("c", LoraConfig({ ...common, r: 4, lora_alpha: 2, target_modules: ["c_attn"] }));
  return peft;
}

function loraLayers(peft: PeftModel): [string, LoraLinear | LoraEmbedding][] {
  return (peft.base_model as LoraModel)
    .tunerLayers()
    .filter(
      (e): e is [string, LoraLinear | LoraEmbedding] => e[1] instanceof LoraLinear || e[1] instanceof LoraEmbedding,
    );
}

/** Σ coefᵢ·getDeltaWeight(adapterᵢ) over the adapters present in the layer (base-weight layout). */
function weightedDelta(
  layer: LoraLinear | LoraEmbedding,
  adapters: string[],
  coef: (a: string, i: number) => number,
): number[] {
  let sum: number[] | null = null;
  adapters.forEach((a, i) => {
    if (!layer.hasAdapter(a)) return;
    const d = values(noGrad(() => layer.getDeltaWeight(a)));
    sum = sum ? sum.map((x, j) => x + coef(a, i) * d[j]!) : d.map((x) => coef(a, i) * x);
  });
  return sum!;
}

const ids = () => tensor(Int32Array.from([5, 17, 99, 3, 42, 7]), [1, 6]);

describe("addWeightedAdapter on Conv1D and embedding layers", () => {
  it("cat: ΔW = Σ wᵢ·ΔWᵢ exactly, rank Σr zero-padded where an adapter is missing; equals both adapters active", () => {
    const peft = model();
    peft.addWeightedAdapter(["a", "b"], W, "cat", { combinationType: "cat" });
    const config = peft.peftConfig["cat"]!;
    assert.deepEqual(
      [config["r"], config["lora_alpha"], config["target_modules"], config["fan_in_fan_out"]],
      [6, 6, ["c_attn", "wte", "c_proj"], true],
    );
    const kinds = new Set<string>();
    for (const [key, layer] of loraLayers(peft)) {
      if (!layer.hasAdapter("cat")) continue;
      kinds.add(layer instanceof LoraEmbedding ? "embedding" : layer.fanInFanOut ? "conv1d" : "linear");
      assert.equal(layer.r.get("cat"), 6, key);
      assert.equal(layer.scaling.get("cat"), 1, key);
      assertClose(
        values(noGrad(() => layer.getDeltaWeight("cat"))),
        weightedDelta(layer, ["a", "b"], (_, i) => W[i]!),
        1e-6,
        1e-5,
        `${key} ΔW`,
      );
    }
    assert.deepEqual([...kinds].sort(), ["conv1d", "embedding"]);
    // Rows of A past the present adapters' ranks are zero (c_proj only has "b", rank 2).
    const cproj = loraLayers(peft).find(([k]) => k.endsWith("attn.c_proj"))![1] as LoraLinear;
    assert.ok(
      values(cproj.loraFactors("cat").A)
        .slice(2 * cproj.inFeatures)
        .every((x) => x === 0),
    );

    // With weights 1, 1 the cat adapter is the two adapters applied together.
    peft.addWeightedAdapter(["a", "b"], [1, 1], "sum", { combinationType: "cat" });
    peft.setAdapter("sum");
    const single = values(noGrad(() => peft.forward({ inputIds: ids() })).logits!);
    peft.base_model.setAdapter(["a", "b"]);
    const both = values(noGrad(() => peft.forward({ inputIds: ids() })).logits!);
    assertClose(single, both, 1e-4, 1e-5, "logits");
  });

  it("linear: A = Σ √(wᵢ·sᵢ)·Aᵢ and B = Σ √(wᵢ·sᵢ)·Bᵢ on equal ranks", () => {
    const peft = model();
    const w = [0.6, 0.9];
    peft.addWeightedAdapter(["a", "c"], w, "lin", { combinationType: "linear" });
    assert.deepEqual([peft.peftConfig["lin"]!["r"], peft.peftConfig["lin"]!["lora_alpha"]], [4, 4]);
    for (const [key, layer] of loraLayers(peft)) {
      if (!layer.hasAdapter("lin")) continue;
      const got = layer.loraFactors("lin");
      for (const which of ["A", "B"] as const) {
        let want: number[] | null = null;
        ["a", "c"].forEach((a, i) => {
          if (!layer.hasAdapter(a)) return;
          const f = Math.sqrt(w[i]! * layer.scaling.get(a)!);
          const v = values(layer.loraFactors(a)[which]);
          want = want ? want.map((x, j) => x + f * v[j]!) : v.map((x) => f * x);
        });
        assertClose(values(got[which]), want!, 1e-6, 1e-6, `${key} ${which}`);
      }
    }
  });

  it("svd: rank ≥ Σr reproduces Σ wᵢ·sᵢ·ΔWᵢ; the default rank max(r) is the best rank-4 approximation", () => {
    const peft = model();
    peft.addWeightedAdapter(["a", "b"], W, "full", { combinationType: "svd", svdRank: 6 });
    peft.addWeightedAdapter(["a", "b"], W, "trunc", { combinationType: "svd" });
    assert.deepEqual(
      [peft.peftConfig["full"]!["r"], peft.peftConfig["trunc"]!["r"], peft.peftConfig["trunc"]!["lora_alpha"]],
      [6, 4, 4],
    );
    for (const [key, layer] of loraLayers(peft)) {
      if (!layer.hasAdapter("full")) continue;
      // peft weights the already-scaled delta by weight·scaling again.
      const want = weightedDelta(layer, ["a", "b"], (a, i) => W[i]! * layer.scaling.get(a)!);
      assertClose(values(noGrad(() => layer.getDeltaWeight("full"))), want, 1e-5, 1e-4, `${key} ΔW (rank 6)`);
      // Rank 4: Eckart–Young, from a dense SVD of the same matrix (in the base-weight layout; transposition-invariant).
      const shape = noGrad(() => layer.getDeltaWeight("trunc")).shape as [number, number];
      const d = svdF64(want, shape[0], shape[1]);
      const best = new Float64Array(shape[0] * shape[1]);
      for (let i = 0; i < shape[0]; i++)
        for (let t = 0; t < 4; t++)
          for (let j = 0; j < shape[1]; j++)
            best[i * shape[1] + j]! += d.u[i * d.k + t]! * d.s[t]! * d.vh[t * shape[1] + j]!;
      assertClose(
        values(noGrad(() => layer.getDeltaWeight("trunc"))),
        Array.from(best),
        1e-5,
        1e-4,
        `${key} ΔW (rank 4)`,
      );
      // Vh rows are orthonormal: A·Aᵀ = I.
      const A = values(layer.loraFactors("trunc").A),
        n = A.length / 4;
      for (let p = 0; p < 4; p++)
        for (let q = 0; q < 4; q++) {
          let s = 0;
          for (let j = 0; j < n; j++) s += A[p * n + j]! * A[q * n + j]!;
          assert.ok(Math.abs(s - (p === q ? 1 : 0)) < 1e-5, `${key}: A·Aᵀ[${p}][${q}] = ${s}`);
        }
    }
  });

  it(
    "svd with a rank above min(out, in) pads with zeros; svdClamp clips both factors at " + "±quantile as torch does",
    () => {
      const peft = model();
      peft.addWeightedAdapter(["a", "b"], W, "big", { combinationType: "svd", svdRank: 80 });
      const wte = loraLayers(peft).find(([k]) => k.endsWith("wte"))![1];
      assert.equal(wte.r.get("big"), 80);
      assertClose(
        values(noGrad(() => wte.getDeltaWeight("big"))),
        weightedDelta(wte, ["a"], () => W[0]! * wte.scaling.get("a")!),
        1e-5,
        1e-4,
        "wte ΔW",
      );
      const { B } = wte.loraFactors("big"); // [64, 80]: columns past 64 are zero
      const b = values(B);
      for (let i = 0; i < 64; i++) for (let t = 64; t < 80; t++) assert.equal(b[i * 80 + t], 0);

      peft.addWeightedAdapter(["a", "b"], W, "plain", { combinationType: "svd" });
      peft.addWeightedAdapter(["a", "b"], W, "clamped", { combinationType: "svd", svdClamp: 0.9 });
      for (const [key, layer] of loraLayers(peft)) {
        if (!layer.hasAdapter("plain")) continue;
        const plain = layer.loraFactors("plain"),
          clamped = layer.loraFactors("clamped");
        const hi = quantile([...values(plain.B), ...values(plain.A)], 0.9);
        for (const which of ["A", "B"] as const) {
          assertClose(
            values(clamped[which]),
            values(plain[which]).map((x) => Math.min(Math.max(x, -hi), hi)),
            1e-6,
            1e-6,
            `${key} ${which} clamped`,
          );
        }
      }
    },
  );

  it("the new adapter is inactive and frozen; a single adapter is always combined linearly", () => {
    const peft = model();
    peft.addWeightedAdapter(["b"], [2], "solo", { combinationType: "svd" });
    assert.deepEqual(peft.activeAdapters, ["a"]);
    for (const p of (peft.base_model as LoraModel).adapterParameters("solo")) assert.equal(p.requiresGrad, false);
    const layer = loraLayers(peft).find(([k]) => k.endsWith("attn.c_attn"))![1];
    assertClose(
      values(layer.loraFactors("solo").A),
      values(layer.loraFactors("b").A).map((x) => Math.sqrt(2 * 1.5) * x),
      1e-6,
      1e-6,
      "A",
    );
    assert.deepEqual([peft.peftConfig["solo"]!["r"], peft.peftConfig["solo"]!["lora_alpha"]], [2, 2]);
  });

  it("rank_pattern: per-layer ranks are honoured and recorded in the new config", () => {
    manualSeed(5);
    const base = fromPretrained(modelDir("gpt2"), "causal-lm");
    const common: Fields = {
      task_type: TaskType.CAUSAL_LM,
      init_lora_weights: false,
      fan_in_fan_out: true,
      target_modules: ["c_attn"],
    };
    const peft = getPeftModel(
      base,
      LoraConfig({ ...common, r: 4, lora_alpha: 4, rank_pattern: { "h.1.attn.c_attn": 2 } }),
      "x",
    );
    peft.addAdapter("y", LoraConfig({ ...common, r: 4, lora_alpha: 8 }));
    peft.addWeightedAdapter(["x", "y"], [1, 1], "xy", { combinationType: "cat" });
    const config = peft.peftConfig["xy"]!;
    assert.equal(config["r"], 8);
    assert.deepEqual(config["rank_pattern"], { "transformer.h.1.attn.c_attn": 6 });
    assert.deepEqual(config["alpha_pattern"], { "transformer.h.1.attn.c_attn": 6 });
    for (const [key, layer] of loraLayers(peft)) {
      assert.equal(layer.r.get("xy"), key.includes("h.1.") ? 6 : 8, key);
      assert.equal(layer.scaling.get("xy"), 1, key);
      assertClose(
        values(noGrad(() => layer.getDeltaWeight("xy"))),
        weightedDelta(layer, ["x", "y"], () => 1),
        1e-6,
        1e-5,
        `${key} ΔW`,
      );
    }
    assert.throws(
      () => peft.addWeightedAdapter(["x", "y"], [1, 1], "lin", { combinationType: "linear" }),
      /needs equal ranks, but in transformer\.h\.1\.attn\.c_attn the adapters have ranks x: 2, y: 4/,
    );
  });

  it("string target_modules are joined as regexes", () => {
    manualSeed(6);
    const base = fromPretrained(modelDir("gpt2"), "causal-lm");
    const common = { task_type: TaskType.CAUSAL_LM, init_lora_weights: false, fan_in_fan_out: true, r: 2 } as const;
    const peft = getPeftModel(base, LoraConfig({ ...common, target_modules: ".*h\\.0\\.attn\\.c_attn" }), "p");
    peft.addAdapter("q", LoraConfig({ ...common, target_modules: ".*h\\.1\\.attn\\.c_attn" }));
    peft.addWeightedAdapter(["p", "q"], [1, 1], "pq", { combinationType: "cat" });
    assert.equal(peft.peftConfig["pq"]!["target_modules"], "(.*h\\.0\\.attn\\.c_attn)|(.*h\\.1\\.attn\\.c_attn)");
    assert.equal(loraLayers(peft).filter(([, l]) => l.hasAdapter("pq")).length, 2);
    const other = getPeftModel(
      fromPretrained(modelDir("gpt2"), "causal-lm"),
      LoraConfig({ ...common, target_modules: ".*c_attn" }),
      "s",
    );
    other.addAdapter("l", LoraConfig({ ...common, target_modules: ["c_attn"] }));
    assert.throws(
      () => other.addWeightedAdapter(["s", "l"], [1, 1], "sl", { combinationType: "cat" }),
      /same target modules type/,
    );
  });
});

describe("addWeightedAdapter errors", () => {
  const peft = model();
  const cases: [string, () => void, RegExp][] = [
    [
      "unknown adapter",
      () => peft.addWeightedAdapter(["a", "nope"], [1, 1], "n"),
      /adapter "nope" does not exist; adapters: "a", "b", "c"/,
    ],
    ["existing name", () => peft.addWeightedAdapter(["a", "b"], [1, 1], "c"), /an adapter named "c" already exists/],
    [
      "unequal ranks for linear",
      () => peft.addWeightedAdapter(["a", "b"], [1, 1], "n", { combinationType: "linear" }),
      /same r value when using combination_type "linear" \(got a: r=4, b: r=2\)/,
    ],
    ["weights count", () => peft.addWeightedAdapter(["a", "b"], [1], "n"), /2 adapter\(s\) but 1 weights/],
    [
      "non-finite weight",
      () => peft.addWeightedAdapter(["a", "b"], [1, NaN], "n"),
      /weight of adapter "b" must be a finite number, got NaN/,
    ],
    ["no adapters", () => peft.addWeightedAdapter([], [], "n"), /at least one adapter/],
    [
      "ties without density",
      () => peft.addWeightedAdapter(["a", "b"], [1, 1], "n", { combinationType: "ties_svd" }),
      /combination_type "ties_svd" needs a density/,
    ],
    [
      "invalid type",
      () => peft.addWeightedAdapter(["a", "b"], [1, 1], "n", { combinationType: "mean" as never }),
      /invalid combination_type "mean"/,
    ],
    [
      "svdRank",
      () => peft.addWeightedAdapter(["a", "b"], [1, 1], "n", { svdRank: 0 }),
      /svdRank must be a positive integer, got 0/,
    ],
    [
      "svdClamp",
      () => peft.addWeightedAdapter(["a", "b"], [1, 1], "n", { svdClamp: 1.5 }),
      /svdClamp is a quantile and must be in \[0, 1\], got 1.5/,
    ],
    [
      "negative weight for linear",
      () => peft.addWeightedAdapter(["a", "c"], [1, -1], "n", { combinationType: "linear" }),
      /takes √\(weight·scaling\), but adapter "c" has weight -1/,
    ],
  ];
  for (const [what, fn, message] of cases) {
    it(`${what}: a clear error, and no adapter is left behind`, () => {
      assert.throws(fn, message);
      assert.ok(!("n" in peft.peftConfig) && !(peft.base_model as LoraModel).peftConfig.has("n"));
      assert.ok(loraLayers(peft).every(([, l]) => !l.hasAdapter("n")));
    });
  }

  it("DoRA adapters and a bias copied from the first adapter are refused", () => {
    manualSeed(7);
    const common: Fields = { task_type: TaskType.CAUSAL_LM, fan_in_fan_out: true, r: 2, target_modules: ["c_attn"] };
    const dora = getPeftModel(
      fromPretrained(modelDir("gpt2"), "causal-lm"),
      LoraConfig({ ...common, use_dora: true }),
      "d",
    );
    dora.addAdapter("e", LoraConfig({ ...common }));
    assert.throws(() => dora.addWeightedAdapter(["e", "d"], [1, 1], "n"), /adapter "d" uses DoRA/);
    const biased = getPeftModel(
      fromPretrained(modelDir("gpt2"), "causal-lm"),
      LoraConfig({ ...common, bias: "lora_only" }),
      "f",
    );
    biased.addAdapter("g", LoraConfig({ ...common }));
    assert.throws(() => biased.addWeightedAdapter(["f", "g"], [1, 1], "n"), /would copy bias="lora_only" from "f"/);
  });
});
