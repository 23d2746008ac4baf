/**
 * LoRA's documented behaviour (SPEC §4–§5) on tiny random GPT-2 (Conv1D, tied embeddings) and LLaMA (GQA: 4 query
 * heads, 2 key/value heads) models built here. Every expected value comes from an independent computation: the
 * base model's own outputs from before getPeftModel, a model holding only one adapter with the same weights
 * copied in, or float64 matrix products written out in this file from the adapter's A and B.
 *
 * Tolerances. "Exactly" means bit-identical float32: the same operations on the same values (a zero LoRA delta
 * added to the base output, a disabled adapter, an adapter reloaded from a float32 safetensors file). Where the
 * operations differ (merged vs unmerged weights, float32 vs float64 products), the bounds are stated next to
 * each check in units of float32's machine epsilon EPS = 2⁻²³ (relative spacing of float32 numbers).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoModelForSequenceClassification } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import { cloneModule, type Linear, type Module } from "../src/nn/index.js";
import { LoraConfig, LoraEmbedding, LoraLinear, PeftModel, TaskType, getPeftModel } from "../src/peft/index.js";
import { BaseTunerLayer } from "../src/peft/tuners/tuner-layer.js";
import { ModulesToSaveWrapper } from "../src/peft/modules-to-save.js";
import { AdamW } from "../src/optim/index.js";
import * as T from "../src/tensor/index.js";
import { assertClose, assertSame, maxAbs, maxAbsDiff, mm, randTensor, transposed, values } from "./helpers.js";
import { IDS, gpt2, llama, logits, toyIds, trainSteps } from "./tiny-models.js";

const EPS = 2 ** -23;
type Fields = Partial<LoraConfig>;

// ---------------------------------------------------------------------------------------------------------------
// Helpers (tiny models and inputs: tiny-models.ts)

const LLAMA_LINEARS = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
];

/**
 * Merged vs unmerged logits: the two compute x·(W + BAs) and x·W + ((x·Aᵀ)·Bᵀ)·s, the same real number rounded
 * differently. Each float32 dot product of length K ≤ 64 is off by at most ~K·EPS/2 ≈ 4e-6 of Σ|terms|, and two
 * layers with norms and attention pass that on with an O(1) gain, so 1e-5 of the logits' scale plus a 1e-4
 * relative term has a wide margin (measured differences are 3e-8 to 4e-7 of the scale).
 */
function assertCloseLogits(actual: number[], expected: number[], what: string): void {
  assertClose(actual, expected, 1e-5 * Math.max(1, maxAbs(expected)), 1e-4, what);
}

/** The LoRA layers of a PeftModel's transformers model by path. */
function loraLayers(peft: PeftModel): [string, LoraLinear | LoraEmbedding][] {
  return peft
    .getBaseModel()
    .namedModules()
    .filter(
      (e): e is [string, LoraLinear | LoraEmbedding] => e[1] instanceof LoraLinear || e[1] instanceof LoraEmbedding,
    );
}

function loraPaths(peft: PeftModel): string[] {
  return loraLayers(peft)
    .map(([k]) => k)
    .sort();
}

/** Add random values in ±[lo, hi] to a parameter (to make DoRA magnitudes or modules_to_save copies differ from their start). */
function perturb(p: T.Tensor, seed: number, lo = 0.05, hi = 0.2): void {
  T.tidy(() => T.noGrad(() => p.copy_(T.add(p, randTensor([...p.shape], seed, lo, hi)))));
}

/** Copy the adapter (lora_*) and modules_to_save parameters of `from` into `to`, by identical parameter names. */
function copyAdapterWeights(from: Module, to: Module): number {
  const src = new Map(from.namedParameters());
  let n = 0;
  T.noGrad(() => {
    for (const [name, p] of to.namedParameters()) {
      if (!name.includes("lora_") && !name.includes(".modules_to_save.")) continue;
      const s = src.get(name);
      assert.ok(s, `no parameter ${name} in the source model`);
      p.copy_(s);
      n++;
    }
  });
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Float64 reference arithmetic (mm, transposed: helpers.ts)

/** |a| [m, k] · |b| [k, n]: the magnitude that bounds the rounding error of a float32 product. */
function mmAbs(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  return mm(Array.from(a, Math.abs), Array.from(b, Math.abs), m, k, n);
}

/**
 * The LoRA output change for inputs x [n, in] computed by hand: x·Aᵀ·Bᵀ·scaling with A [r, in], B [out, r], and
 * a per-element magnitude |x|·|Aᵀ|·|Bᵀ|·scaling for the error bound.
 */
function handLoraDelta(
  x: number[],
  A: number[],
  B: number[],
  n: number,
  inF: number,
  r: number,
  outF: number,
  scaling: number,
) {
  const xa = mm(x, transposed(A, r, inF), n, inF, r);
  const delta = mm(xa, transposed(B, outF, r), n, r, outF).map((v) => v * scaling);
  const mag = mm(mmAbs(x, transposed(A, r, inF), n, inF, r), transposed(B, outF, r).map(Math.abs), n, r, outF).map(
    (v) => v * Math.abs(scaling),
  );
  return { delta, mag };
}

// ---------------------------------------------------------------------------------------------------------------

describe("LoRA: a fresh adapter changes nothing", () => {
  it(
    "B = 0 (and A = 0 on embeddings): GPT-2 Conv1D + tied wte, LLaMA Linear + embed_tokens, " +
      "gaussian init, DoRA — outputs bit-identical to the base model's",
    () => {
      const cases: [string, () => PreTrainedModel, Fields, number][] = [
        [
          "gpt2 conv1d+embedding",
          () => gpt2(),
          { target_modules: ["c_attn", "c_proj", "c_fc", "wte"], fan_in_fan_out: true },
          2 * 4 + 1,
        ],
        [
          "llama linear+embedding",
          () => llama(),
          {
            target_modules: [
              "q_proj",
              "k_proj",
              "v_proj",
              "o_proj",
              "gate_proj",
              "up_proj",
              "down_proj",
              "embed_tokens",
            ],
          },
          2 * 7 + 1,
        ],
        ["llama gaussian init", () => llama(), { target_modules: "all-linear", init_lora_weights: "gaussian" }, 2 * 7],
        ["llama DoRA", () => llama(), { target_modules: ["q_proj", "v_proj"], use_dora: true }, 4],
        [
          "llama rsLoRA r 16",
          () => llama(),
          { target_modules: ["q_proj", "v_proj"], r: 16, lora_alpha: 32, use_rslora: true },
          4,
        ],
      ];
      for (const [what, make, fields, layers] of cases) {
        const base = make();
        const before = logits(base);
        const peft = getPeftModel(base, LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, lora_alpha: 8, ...fields }));
        assert.equal(loraLayers(peft).length, layers, `${what}: adapter layers`);
        for (const [key, layer] of loraLayers(peft)) {
          // The zero factor: lora_B for Linear/Conv1D, lora_embedding_A for embeddings (HF's init).
          const zero = layer instanceof LoraEmbedding ? layer.loraFactors("default").A : layer.loraFactors("default").B;
          assert.ok(
            values(zero).every((v) => v === 0),
            `${what}: ${key} zero factor`,
          );
          const other =
            layer instanceof LoraEmbedding ? layer.loraFactors("default").B : layer.loraFactors("default").A;
          assert.ok(
            values(other).some((v) => v !== 0),
            `${what}: ${key} the other factor is random`,
          );
        }
        assertSame(logits(peft), before, `${what}: logits`);
      }
    },
  );
});

describe("LoRA: merge, unmerge, mergeAndUnload, unload", () => {
  /**
   * Merge then unmerge one model's adapters and check: each merged weight against W + ΔW computed by hand in float64
   * (`mergedOf`), merged logits against unmerged ones, restored weights against the originals, and the logits again.
   * Error bounds: a merged weight is fl(W + fl(ΔW)), where the float32 product ΔW = B·A·s is off by ≤ r·EPS/2
   * of Σ|B||A|s and the addition by EPS/2 of the sum, so 8·EPS·(|W| + Σ|B||A|s) bounds it with margin (r ≤ 4).
   * Unmerging computes fl(fl(W + ΔW) − ΔW) with the same ΔW (deterministic kernels), so the restored weight is off
   * by at most two roundings: 2·EPS·(|W| + |ΔW|), again checked as 8·EPS·(|W| + Σ|B||A|s). DoRA multiplies by and
   * divides by the row factor m/‖W + ΔW‖ as well: two more roundings, and the norm of in = 32 terms is off by
   * ≲ 32·EPS relative, hence 64·EPS for DoRA.
   */
  function checkMergeCycle(
    what: string,
    peft: PeftModel,
    mergedOf: (layer: LoraLinear | LoraEmbedding, w0: number[]) => { expected: Float64Array; mag: Float64Array },
    ulps: number,
  ): void {
    const layers = loraLayers(peft);
    assert.ok(layers.length > 0, what);
    const w0 = new Map(layers.map(([k, l]) => [k, values(l.base_layer.getTensor("weight"))]));
    const unmerged = logits(peft);
    peft.mergeAdapter();
    for (const [key, layer] of layers) {
      assert.ok(layer.merged, `${what}: ${key} merged`);
      const { expected, mag } = mergedOf(layer, w0.get(key)!);
      const got = values(layer.base_layer.getTensor("weight"));
      for (let i = 0; i < got.length; i++) {
        const tol = ulps * EPS * (Math.abs(w0.get(key)![i]!) + mag[i]!);
        if (!(Math.abs(got[i]! - expected[i]!) <= tol))
          assert.fail(`${what}: ${key} merged weight[${i}] ${got[i]} vs W + ΔW = ${expected[i]} (tol ${tol})`);
      }
    }
    const merged = logits(peft);
    assertCloseLogits(merged, unmerged, `${what}: merged vs unmerged logits`);
    peft.unmergeAdapter();
    for (const [key, layer] of layers) {
      assert.ok(!layer.merged, `${what}: ${key} unmerged`);
      const { mag } = mergedOf(layer, w0.get(key)!);
      const got = values(layer.base_layer.getTensor("weight"));
      const orig = w0.get(key)!;
      for (let i = 0; i < got.length; i++) {
        const tol = ulps * EPS * (Math.abs(orig[i]!) + mag[i]!);
        if (!(Math.abs(got[i]! - orig[i]!) <= tol))
          assert.fail(`${what}: ${key} restored weight[${i}] ${got[i]} vs original ${orig[i]} (tol ${tol})`);
      }
    }
    assertCloseLogits(logits(peft), unmerged, `${what}: logits after unmerge`);
  }

  /** W + B·A·s in the base weight's layout (Linear [out, in], Conv1D [in, out], Embedding [vocab, dim]). */
  const plainMerge = (s: number) => (layer: LoraLinear | LoraEmbedding, w0: number[]) => {
    const { A, B } = layer.loraFactors("default");
    const [m, r] = B.shape as [number, number];
    const n = A.shape[1]!;
    const deltaOutIn = mm(values(B), values(A), m, r, n).map((v) => v * s); // [m, n]
    const magOutIn = mmAbs(values(B), values(A), m, r, n).map((v) => v * s);
    // Linear: [out, in] as is. Conv1D (fan_in_fan_out) stores [in, out]; the embedding table is [vocab, dim] = (B·A)ᵀ.
    const flip = layer instanceof LoraEmbedding || layer.fanInFanOut;
    const delta = flip ? transposed(deltaOutIn, m, n) : deltaOutIn;
    const mag = flip ? transposed(magOutIn, m, n) : magOutIn;
    return { expected: delta.map((d, i) => w0[i]! + d), mag };
  };

  it("LoRA on Linear (LLaMA all-linear): merged weights = W + B·A·α/r, same outputs, unmerge restores W", () => {
    const peft = getPeftModel(
      llama(),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        lora_alpha: 8,
        target_modules: "all-linear",
        init_lora_weights: false,
      }),
    );
    checkMergeCycle("llama linear", peft, plainMerge(8 / 4), 8);
  });

  it(
    "LoRA on GPT-2 Conv1D (fan_in_fan_out): merged [in, out] weights = W + (B·A·α/r)ᵀ, same " +
      "outputs, unmerge restores W",
    () => {
      const peft = getPeftModel(
        gpt2(),
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 16,
          target_modules: ["c_attn", "c_proj", "c_fc"],
          fan_in_fan_out: true,
          init_lora_weights: false,
        }),
      );
      assert.equal(loraLayers(peft).length, 2 * 4, "c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj per block");
      assert.ok(loraLayers(peft).every(([, l]) => l instanceof LoraLinear && l.fanInFanOut));
      checkMergeCycle("gpt2 conv1d", peft, plainMerge(16 / 4), 8);
    },
  );

  it(
    "LoRA on Embedding (LLaMA embed_tokens, untied): merged table = E + (B·A)ᵀ·α/r, same " +
      "outputs, unmerge restores E",
    () => {
      const peft = getPeftModel(
        llama(),
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 2,
          target_modules: ["embed_tokens", "v_proj"],
          init_lora_weights: false,
        }),
      );
      assert.ok(loraLayers(peft).some(([, l]) => l instanceof LoraEmbedding));
      checkMergeCycle("llama embedding", peft, plainMerge(2 / 4), 8);
    },
  );

  it(
    "DoRA (LLaMA q/v, magnitudes moved off their init): merged rows = m/‖W + ΔW‖·(W + ΔW), " +
      "same outputs, unmerge restores W",
    () => {
      const s = 8 / 4;
      const peft = getPeftModel(
        llama(),
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 8,
          target_modules: ["q_proj", "v_proj"],
          use_dora: true,
          init_lora_weights: false,
        }),
      );
      let seed = 500;
      for (const [, layer] of loraLayers(peft))
        perturb((layer as LoraLinear).lora_magnitude_vector.get("default").weight, seed++);
      const doraMerge = (layer: LoraLinear | LoraEmbedding, w0: number[]) => {
        const { A, B } = layer.loraFactors("default");
        const [out, r] = B.shape as [number, number];
        const inF = A.shape[1]!;
        const v = mm(values(B), values(A), out, r, inF).map((d, i) => w0[i]! + d * s); // W + ΔW, [out, in]
        const m = values((layer as LoraLinear).lora_magnitude_vector.get("default").weight);
        const expected = new Float64Array(out * inF);
        const mag = mmAbs(values(B), values(A), out, r, inF).map((x) => x * s);
        for (let o = 0; o < out; o++) {
          let norm = 0;
          for (let i = 0; i < inF; i++) norm += v[o * inF + i]! ** 2;
          const f = m[o]! / Math.sqrt(norm);
          for (let i = 0; i < inF; i++) {
            expected[o * inF + i] = f * v[o * inF + i]!;
            mag[o * inF + i] = (mag[o * inF + i]! + Math.abs(v[o * inF + i]!)) * Math.max(1, Math.abs(f));
          }
        }
        return { expected, mag };
      };
      checkMergeCycle("llama dora", peft, doraMerge, 64);
    },
  );

  it(
    "mergeAndUnload: the plain model (no LoRA layers or wrappers, the base's state-dict keys) " +
      "gives the adapter's outputs",
    () => {
      const base = llama();
      const baseKeys = [...base.stateDict().keys()];
      const peft = getPeftModel(
        base,
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 8,
          target_modules: ["q_proj", "v_proj", "embed_tokens"],
          modules_to_save: ["lm_head"],
          init_lora_weights: false,
        }),
      );
      const copy = peft.getBaseModel().getTensor("lm_head.modules_to_save.default.weight");
      perturb(copy, 77);
      const copyValues = values(copy);
      const adapterLogits = logits(peft);
      assert.ok(maxAbsDiff(adapterLogits, logits(llama())) > 1e-2, "the adapter changes the outputs");
      const plain = peft.mergeAndUnload();
      assert.equal(plain, base, "the transformers model itself is returned");
      assert.equal(plain.constructor.name, "LlamaForCausalLM");
      assert.ok(
        plain.modules().every((m) => !(m instanceof BaseTunerLayer) && !(m instanceof ModulesToSaveWrapper)),
        "no adapter layers or wrappers left",
      );
      assert.deepEqual([...plain.stateDict().keys()], baseKeys);
      assertSame(values(plain.getTensor("lm_head.weight")), copyValues, "lm_head is the trained modules_to_save copy");
      assertCloseLogits(logits(plain), adapterLogits, "merged plain model vs adapter");
    },
  );

  it("unload: the plain model without merging has the base model's exact outputs", () => {
    const base = llama();
    const baseLogits = logits(base);
    const baseKeys = [...base.stateDict().keys()];
    const peft = getPeftModel(
      base,
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        target_modules: "all-linear",
        modules_to_save: ["lm_head"],
        init_lora_weights: false,
      }),
    );
    assert.ok(maxAbsDiff(logits(peft), baseLogits) > 1e-2, "the adapter changes the outputs");
    const plain = peft.unload();
    assert.ok(plain.modules().every((m) => !(m instanceof BaseTunerLayer) && !(m instanceof ModulesToSaveWrapper)));
    assert.deepEqual([...plain.stateDict().keys()], baseKeys);
    assertSame(logits(plain), baseLogits, "unloaded logits");
  });
});

describe("LoRA: what trains", () => {
  it(
    "only lora_* and modules_to_save parameters get gradients, and only they get AdamW state; " +
      "frozen weights stay bit-identical",
    () => {
      const peft = getPeftModel(
        llama(),
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 8,
          target_modules: ["q_proj", "v_proj"],
          modules_to_save: ["lm_head"],
        }),
      );
      const named = peft.namedParameters();
      const isAdapter = (name: string) =>
        /\.lora_[AB]\.default\.weight$/.test(name) || name.includes(".modules_to_save.default.");
      // By hand: q_proj 32→32 and v_proj 32→16 (2 kv heads × head dim 8) at r 4, two layers, plus the 64×32 lm_head copy.
      const expectedTrainable = 2 * (4 * (32 + 32) + 4 * (32 + 16)) + 64 * 32;
      assert.equal(
        named.filter(([n]) => isAdapter(n)).reduce((s, [, p]) => s + p.size, 0),
        expectedTrainable,
      );
      assert.equal(peft.getNbTrainableParameters()[0], expectedTrainable);
      for (const [name, p] of named) assert.equal(p.requiresGrad, isAdapter(name), `requiresGrad of ${name}`);

      const before = new Map(named.map(([n, p]) => [n, values(p)]));
      const ids = IDS();
      const opt = new AdamW(peft.parameters(), { lr: 1e-2 });
      T.tidy(() => peft.forward({ inputIds: ids, labels: ids }).loss!.backward());
      for (const [name, p] of named) assert.equal(p.grad !== null, isAdapter(name), `gradient of ${name}`);
      // lora_B starts at 0, so the loss depends on B through A·x ≠ 0: its gradient is not zero.
      const bGrad = named.find(([n]) => n.endsWith("layers.0.self_attn.q_proj.lora_B.default.weight"))![1].grad!;
      assert.ok(values(bGrad).some((v) => v !== 0));

      opt.step();
      for (const [name, p] of named) {
        const st = opt.getState(p);
        assert.equal(st !== undefined, isAdapter(name), `AdamW state of ${name}`);
        if (st)
          assert.deepEqual(
            [st["step"], (st["expAvg"] as T.Tensor).shape, (st["expAvgSq"] as T.Tensor).shape],
            [1, p.shape, p.shape],
            name,
          );
        if (isAdapter(name)) continue;
        assertSame(values(p), before.get(name)!, `frozen ${name} after the step`);
      }
      assert.equal(opt.stateSize, named.filter(([n]) => isAdapter(n)).length);
      assert.ok(
        maxAbsDiff(
          values(named.find(([n]) => n.endsWith("lm_head.modules_to_save.default.weight"))![1]),
          before.get("base_model.model.lm_head.modules_to_save.default.weight")!,
        ) > 0,
      );
      assertSame(
        values(peft.getBaseModel().getTensor("lm_head.original_module.weight")),
        before.get("base_model.model.lm_head.original_module.weight")!,
        "original lm_head",
      );
      opt.zeroGrad();
      opt.dispose();
    },
  );

  it('bias: "all" makes every bias trainable (and they get gradients); the counts follow from the shapes', () => {
    const peft = getPeftModel(
      gpt2(),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        target_modules: ["c_attn"],
        fan_in_fan_out: true,
        bias: "all",
      }),
    );
    // By hand: LoRA on c_attn (32 → 96) at r 4 in two blocks; biases per block: ln_1 32, c_attn 96, attn.c_proj 32, ln_2 32,
    // c_fc 128, mlp.c_proj 32; plus ln_f 32.
    const lora = 2 * 4 * (32 + 96);
    const biases = 2 * (32 + 96 + 32 + 32 + 128 + 32) + 32;
    assert.equal(peft.getNbTrainableParameters()[0], lora + biases);
    const ids = IDS();
    T.tidy(() => peft.forward({ inputIds: ids, labels: ids }).loss!.backward());
    for (const [name, p] of peft.namedParameters()) {
      const trainable = name.includes("lora_") || name.endsWith(".bias");
      assert.equal(p.requiresGrad, trainable, `requiresGrad of ${name}`);
      assert.equal(p.grad !== null, trainable, `gradient of ${name}`);
      p.grad?.dispose();
      p.grad = null;
    }
  });

  it(
    "printTrainableParameters prints HF's line with counts computed from the shapes (GPT-2 " + "c_attn; LLaMA GQA q/v)",
    () => {
      const printed = (peft: PeftModel) => {
        const lines: string[] = [];
        const log = console.log;
        console.log = (...args: unknown[]) => void lines.push(args.join(" "));
        try {
          peft.printTrainableParameters();
        } finally {
          console.log = log;
        }
        return lines;
      };
      // GPT-2: wte 64·32 + wpe 32·32; per block ln_1 64, c_attn 32·96+96, c_proj 32·32+32, ln_2 64, c_fc 32·128+128,
      // mlp.c_proj 128·32+32; ln_f 64; lm_head is tied to wte (counted once). LoRA r 4 on c_attn: 2·4·(32+96) = 1,024.
      const gptBase =
        64 * 32 + 32 * 32 + 2 * (64 + (32 * 96 + 96) + (32 * 32 + 32) + 64 + (32 * 128 + 128) + (128 * 32 + 32)) + 64;
      assert.equal(gptBase, 28544);
      const g = getPeftModel(
        gpt2(),
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, target_modules: ["c_attn"], fan_in_fan_out: true }),
      );
      assert.deepEqual(g.getNbTrainableParameters(), [1024, 28544 + 1024]);
      assert.deepEqual(printed(g), ["trainable params: 1,024 || all params: 29,568 || trainable%: 3.4632"]); // 100·1024/29568 = 3.46320…
      // LLaMA: embed 64·32; per layer q 32·32, k 32·16, v 32·16, o 32·32, gate/up/down 3·32·64, two norms 2·32; norm 32;
      // lm_head 64·32 (untied). LoRA r 8 on q (32→32) and v (32→16): 2·(8·64 + 8·48) = 1,792.
      const llamaBase = 64 * 32 + 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32 + 64 * 32;
      assert.equal(llamaBase, 22688);
      const l = getPeftModel(
        llama(),
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, target_modules: ["q_proj", "v_proj"] }),
      );
      assert.deepEqual(printed(l), ["trainable params: 1,792 || all params: 24,480 || trainable%: 7.3203"]); // 179200/24480 = 7.32026…
    },
  );
});

describe("LoRA: withAdapterDisabled", () => {
  function setup() {
    const base = llama();
    const baseLogits = logits(base);
    const peft = getPeftModel(
      base,
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        target_modules: ["q_proj", "v_proj", "embed_tokens"],
        modules_to_save: ["lm_head"],
        init_lora_weights: false,
      }),
    );
    perturb(peft.getBaseModel().getTensor("lm_head.modules_to_save.default.weight"), 91);
    const adapterLogits = logits(peft);
    assert.ok(maxAbsDiff(adapterLogits, baseLogits) > 1e-2);
    return { peft, baseLogits, adapterLogits };
  }

  it(
    "gives the base model's exact outputs inside (modules_to_save copies bypassed too) and the " +
      "adapter's afterwards",
    () => {
      const { peft, baseLogits, adapterLogits } = setup();
      const inside = peft.withAdapterDisabled(() => logits(peft));
      assertSame(inside, baseLogits, "disabled");
      assertSame(logits(peft), adapterLogits, "re-enabled");
    },
  );

  it("re-enables the adapter when fn throws, and when an async fn rejects", async () => {
    const { peft, baseLogits, adapterLogits } = setup();
    assert.throws(
      () =>
        peft.withAdapterDisabled(() => {
          assertSame(logits(peft), baseLogits, "disabled before the throw");
          throw new Error("boom");
        }),
      /boom/,
    );
    assertSame(logits(peft), adapterLogits, "re-enabled after a throw");
    const asyncInside = await peft.withAdapterDisabled(async () => {
      await new Promise((r) => setTimeout(r, 1));
      return logits(peft);
    });
    assertSame(asyncInside, baseLogits, "disabled across an await");
    assertSame(logits(peft), adapterLogits, "re-enabled after the async fn");
    await assert.rejects(
      peft.withAdapterDisabled(async () => {
        await null;
        throw new Error("async boom");
      }),
      /async boom/,
    );
    assertSame(logits(peft), adapterLogits, "re-enabled after a rejection");
  });

  it("with merged adapters: the base outputs inside (unmerged first, as in HF), the adapter's afterwards", () => {
    const { peft, baseLogits, adapterLogits } = setup();
    peft.mergeAdapter();
    // Disabling unmerges: the restored weights are off by ≤ 2·EPS·(|W| + |ΔW|) (see the merge tests), and here the
    // embedding's ΔW (A, B ~ N(0, 1), α/r = 2) is ~200× its N(0, 0.02²) rows, which RMSNorm rescales to O(1): up to
    // ~2·EPS·200 ≈ 5e-5 relative on the first hidden state, so this check allows 1e-4 of the logits' scale.
    const disabled = peft.withAdapterDisabled(() => logits(peft));
    assertClose(disabled, baseLogits, 1e-4 * Math.max(1, maxAbs(baseLogits)), 0, "disabled after merge");
    assertCloseLogits(logits(peft), adapterLogits, "adapter after");
  });
});

describe("LoRA: several adapters", () => {
  it(
    "setAdapter switches between adapters, each giving exactly the outputs of a model holding " +
      "only it; deleteAdapter removes one",
    () => {
      const base = llama();
      const clones = [cloneModule(base), cloneModule(base)];
      const cfgA = LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        lora_alpha: 8,
        target_modules: ["q_proj", "v_proj"],
        init_lora_weights: false,
      });
      const cfgB = LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 2,
        lora_alpha: 6,
        use_rslora: true,
        target_modules: ["k_proj", "v_proj", "down_proj"],
        modules_to_save: ["lm_head"],
        init_lora_weights: false,
      });
      const multi = getPeftModel(base, cfgA, "a");
      multi.addAdapter("b", cfgB);
      perturb(multi.getBaseModel().getTensor("lm_head.modules_to_save.b.weight"), 33);
      assert.equal(multi.activeAdapter, "a", "addAdapter does not switch");
      const onlyA = getPeftModel(clones[0]!, cfgA, "a");
      const onlyB = getPeftModel(clones[1]!, cfgB, "b");
      assert.equal(copyAdapterWeights(multi, onlyA), 2 * 2 * 2);
      assert.equal(copyAdapterWeights(multi, onlyB), 3 * 2 * 2 + 1);
      const logitsA = logits(onlyA),
        logitsB = logits(onlyB);
      assert.ok(maxAbsDiff(logitsA, logitsB) > 1e-2, "the adapters differ");

      const trainable = (adapter: string) =>
        multi.namedParameters().filter(([n, p]) => p.requiresGrad && n.includes(`.${adapter}.`)).length;
      assertSame(logits(multi), logitsA, "active a");
      assert.deepEqual([trainable("a"), trainable("b")], [8, 0]);
      multi.setAdapter("b");
      assert.deepEqual([multi.activeAdapter, multi.activeAdapters], ["b", ["b"]]);
      assertSame(logits(multi), logitsB, "active b");
      assert.deepEqual([trainable("a"), trainable("b")], [0, 13]);
      multi.setAdapter("a");
      assertSame(logits(multi), logitsA, "a again");
      assert.throws(() => multi.setAdapter("c"), /"c" not found.*a, b/);

      // Deleting the active adapter falls back to the other one.
      multi.setAdapter("b");
      multi.deleteAdapter("b");
      assert.deepEqual(Object.keys(multi.peftConfig), ["a"]);
      assert.equal(multi.activeAdapter, "a");
      assert.ok(
        multi.namedParameters().every(([n]) => !n.includes(".b.") && !n.endsWith(".b")),
        "no parameters of b left",
      );
      assert.ok(loraLayers(multi).every(([, l]) => !l.adapterNames().includes("b")));
      assertSame(logits(multi), logitsA, "after deleting b");
      assert.equal(trainable("a"), 8);
      assert.throws(() => multi.deleteAdapter("b"), /"b" does not exist/);
    },
  );
});

describe("LoRA: the delta formula", () => {
  /** out − base of one LoRA layer on random inputs vs x·Aᵀ·Bᵀ·scaling by hand. */
  function checkDelta(layer: LoraLinear, x: T.Tensor, r: number, scaling: number, what: string): void {
    const { A, B } = layer.loraFactors("default");
    assert.deepEqual(
      [A.shape, B.shape],
      [
        [r, layer.inFeatures],
        [layer.outFeatures, r],
      ],
      `${what}: A [r, in], B [out, r]`,
    );
    const [got, base] = T.tidy(() =>
      T.noGrad(() => [values(layer.forward(x)), values((layer.base_layer as Linear).forward(x))]),
    );
    const n = x.shape[0]!;
    const { delta, mag } = handLoraDelta(
      values(x),
      values(A),
      values(B),
      n,
      layer.inFeatures,
      r,
      layer.outFeatures,
      scaling,
    );
    // got and base are float32 roundings of values of size ≤ |base| + |delta| (EPS/2 each) and the float32 products
    // are off by ≲ (in + r)·EPS/2 of their magnitudes: 64·EPS·(|base| + mag) covers both.
    for (let i = 0; i < got.length; i++) {
      const tol = 64 * EPS * (Math.abs(base[i]!) + mag[i]!);
      const d = got[i]! - base[i]!;
      if (!(Math.abs(d - delta[i]!) <= tol))
        assert.fail(`${what}: (out − base)[${i}] = ${d} vs x·Aᵀ·Bᵀ·s = ${delta[i]} (tol ${tol})`);
    }
    assert.ok(maxAbs(delta) > 1e-2, `${what}: a non-trivial delta`);
  }

  it("Linear (GQA v_proj 32→16, q_proj) and GPT-2 Conv1D: out − base = x·Aᵀ·Bᵀ·α/r; with use_rslora α/√r", () => {
    for (const [rslora, scaling] of [
      [false, 8 / 4],
      [true, 8 / 2],
    ] as const) {
      const peft = getPeftModel(
        llama(),
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 8,
          use_rslora: rslora,
          target_modules: ["q_proj", "v_proj"],
          init_lora_weights: false,
        }),
      );
      const x = randTensor([3, 32], 5);
      for (const key of ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"]) {
        checkDelta(peft.getBaseModel().getSubmodule(key) as LoraLinear, x, 4, scaling, `${key} rslora=${rslora}`);
      }
    }
    const g = getPeftModel(
      gpt2(),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 2,
        lora_alpha: 5,
        target_modules: ["c_fc"],
        fan_in_fan_out: true,
        init_lora_weights: false,
      }),
    );
    checkDelta(
      g.getBaseModel().getSubmodule("transformer.h.1.mlp.c_fc") as LoraLinear,
      randTensor([4, 32], 6),
      2,
      5 / 2,
      "gpt2 c_fc",
    );
  });

  it("Embedding: out − base = Aᵀ[id]·Bᵀ·α/r (lora_embedding_A [r, vocab], lora_embedding_B [dim, r])", () => {
    const peft = getPeftModel(
      llama(),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 4,
        lora_alpha: 6,
        target_modules: ["embed_tokens"],
        init_lora_weights: false,
      }),
    );
    const layer = peft.getBaseModel().getSubmodule("model.embed_tokens") as LoraEmbedding;
    const { A, B } = layer.loraFactors("default");
    assert.deepEqual(
      [A.shape, B.shape],
      [
        [4, 64],
        [32, 4],
      ],
    );
    const ids = [3, 0, 63, 17];
    const idT = T.tensor(Int32Array.from(ids), [1, 4]);
    const [got, base] = T.tidy(() =>
      T.noGrad(() => [
        values(layer.forward(idT)),
        values((layer.base_layer as Module & { forward(x: T.Tensor): T.Tensor }).forward(idT)),
      ]),
    );
    const a = values(A),
      b = values(B);
    ids.forEach((id, t) => {
      for (let j = 0; j < 32; j++) {
        let d = 0,
          mag = 0;
        for (let k = 0; k < 4; k++) {
          d += a[k * 64 + id]! * b[j * 4 + k]! * 1.5;
          mag += Math.abs(a[k * 64 + id]! * b[j * 4 + k]! * 1.5);
        }
        const i = t * 32 + j;
        assert.ok(
          Math.abs(got[i]! - base[i]! - d) <= 16 * EPS * (Math.abs(base[i]!) + mag),
          `token ${id} dim ${j}: ${got[i]! - base[i]!} vs ${d}`,
        );
      }
    });
  });

  it("rank_pattern / alpha_pattern give per-module ranks and alphas, each looked up on its own (as peft does)", () => {
    const peft = getPeftModel(
      llama(),
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 8,
        lora_alpha: 16,
        target_modules: ["q_proj", "v_proj"],
        init_lora_weights: false,
        rank_pattern: { q_proj: 2, "model.layers.1.self_attn.v_proj": 4 },
        alpha_pattern: { "layers.0.self_attn.q_proj": 3 },
      }),
    );
    // [module, r, alpha]: rank_pattern's "q_proj" matches both q_proj; alpha_pattern's key only layer 0's.
    const expected: [string, number, number][] = [
      ["model.layers.0.self_attn.q_proj", 2, 3],
      ["model.layers.0.self_attn.v_proj", 8, 16],
      ["model.layers.1.self_attn.q_proj", 2, 16],
      ["model.layers.1.self_attn.v_proj", 4, 16],
    ];
    assert.deepEqual(
      loraPaths(peft),
      expected.map(([k]) => k),
    );
    const x = randTensor([3, 32], 8);
    for (const [key, r, alpha] of expected)
      checkDelta(
        peft.getBaseModel().getSubmodule(key) as LoraLinear,
        x,
        r,
        alpha / r,
        `${key} (r ${r}, alpha ${alpha})`,
      );
    // By hand: q (32→32) at r 2 twice, v (32→16) at r 8 and r 4.
    assert.equal(peft.getNbTrainableParameters()[0], 2 * 2 * 64 + 8 * 48 + 4 * 48);
  });
});

describe("LoRA: target matching", () => {
  const lora = (model: PreTrainedModel, fields: Fields) =>
    getPeftModel(model, LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 2, ...fields }));
  const gptPaths = (layers: number[], names: string[]) =>
    layers.flatMap((i) => names.map((n) => `transformer.h.${i}.${n}`)).sort();
  const llamaPaths = (layers: number[], names: string[]) =>
    layers.flatMap((i) => names.map((n) => `model.layers.${i}.${n}`)).sort();

  it("a list matches module names exactly or as a '.'-suffix", () => {
    assert.deepEqual(
      loraPaths(lora(gpt2(), { target_modules: ["attn.c_proj"], fan_in_fan_out: true })),
      gptPaths([0, 1], ["attn.c_proj"]),
    );
    assert.deepEqual(
      loraPaths(lora(gpt2(), { target_modules: ["c_proj"], fan_in_fan_out: true })),
      gptPaths([0, 1], ["attn.c_proj", "mlp.c_proj"]),
    );
    assert.deepEqual(
      loraPaths(lora(gpt2(), { target_modules: ["transformer.h.1.mlp.c_fc", "c_attn"], fan_in_fan_out: true })),
      gptPaths([0, 1], ["attn.c_attn"]).concat("transformer.h.1.mlp.c_fc").sort(),
    );
    // "proj" is not a '.'-separated suffix of "…c_proj": nothing matches.
    assert.throws(() => lora(gpt2(), { target_modules: ["proj"], fan_in_fan_out: true }), /not found/);
  });

  it("a string is a full-match regex", () => {
    assert.deepEqual(
      loraPaths(lora(gpt2(), { target_modules: ".*\\.0\\.attn\\.c_(attn|proj)", fan_in_fan_out: true })),
      gptPaths([0], ["attn.c_attn", "attn.c_proj"]),
    );
    assert.deepEqual(
      loraPaths(lora(llama(), { target_modules: "model\\.layers\\.1\\..*_proj" })),
      llamaPaths([1], LLAMA_LINEARS),
    );
    // Not a search: "c_attn" alone does not fully match "transformer.h.0.attn.c_attn".
    assert.throws(() => lora(gpt2(), { target_modules: "c_attn", fan_in_fan_out: true }), /not found/);
  });

  it(
    '"all-linear" wraps every linear layer but the LM head (LLaMA Linear, GPT-2 Conv1D), also ' +
      "for a second adapter",
    () => {
      const l = lora(llama(), { target_modules: "all-linear" });
      assert.deepEqual(loraPaths(l), llamaPaths([0, 1], LLAMA_LINEARS));
      assert.ok(!(l.getBaseModel().getSubmodule("lm_head") instanceof BaseTunerLayer));
      l.addAdapter("second", LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 2, target_modules: "all-linear" }));
      assert.deepEqual(
        [...(l.peftConfig["second"]!.target_modules as string[])].sort(),
        llamaPaths([0, 1], LLAMA_LINEARS),
      );
      assert.ok(loraLayers(l).every(([, layer]) => layer.adapterNames().sort().join() === "default,second"));
      assert.deepEqual(
        loraPaths(lora(gpt2(), { target_modules: "all-linear", fan_in_fan_out: true })),
        gptPaths([0, 1], ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]),
      );
    },
  );

  it("exclude_modules (list or regex) removes matches", () => {
    assert.deepEqual(
      loraPaths(lora(llama(), { target_modules: "all-linear", exclude_modules: ["down_proj", "o_proj"] })),
      llamaPaths(
        [0, 1],
        LLAMA_LINEARS.filter((n) => !n.endsWith("down_proj") && !n.endsWith("o_proj")),
      ),
    );
    assert.deepEqual(
      loraPaths(lora(llama(), { target_modules: ["q_proj", "v_proj"], exclude_modules: ".*\\.1\\..*" })),
      llamaPaths([0], ["self_attn.q_proj", "self_attn.v_proj"]),
    );
    // A list entry whose modules are all excluded was found (no "matched nothing" error for v_proj).
    assert.deepEqual(
      loraPaths(lora(llama(), { target_modules: ["q_proj", "v_proj"], exclude_modules: ["v_proj"] })),
      llamaPaths([0, 1], ["self_attn.q_proj"]),
    );
    assert.throws(
      () => lora(llama(), { target_modules: ["q_proj"], exclude_modules: ["q_proj"] }),
      /All modules were excluded.*model\.layers\.0\.self_attn\.q_proj/,
    );
    // Exclusions that do not touch the targets do not hide a target that matches nothing.
    assert.throws(
      () => lora(llama(), { target_modules: ["qkv"], exclude_modules: ".*norm" }),
      /Target modules \["qkv"\] not found/,
    );
  });

  it("layers_to_transform with and without layers_pattern", () => {
    assert.deepEqual(
      loraPaths(
        lora(llama(), { target_modules: ["q_proj", "v_proj"], layers_to_transform: [1], layers_pattern: "layers" }),
      ),
      llamaPaths([1], ["self_attn.q_proj", "self_attn.v_proj"]),
    );
    assert.deepEqual(
      loraPaths(lora(llama(), { target_modules: ["q_proj"], layers_to_transform: [0] })),
      llamaPaths([0], ["self_attn.q_proj"]),
    );
    assert.deepEqual(
      loraPaths(
        lora(gpt2(), {
          target_modules: ["c_attn", "c_fc"],
          layers_to_transform: 1,
          layers_pattern: "h",
          fan_in_fan_out: true,
        }),
      ),
      gptPaths([1], ["attn.c_attn", "mlp.c_fc"]),
    );
    // A pattern that names no layer container matches nothing.
    assert.throws(
      () => lora(llama(), { target_modules: ["q_proj"], layers_to_transform: [0], layers_pattern: "blocks" }),
      /not found/,
    );
  });

  it(
    "a list entry that matches nothing is named, with the model's linear module names (not " +
      "adapter internals); the model is left as it was",
    () => {
      const names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"];
      const linearNames = (message: string) => /named ([\w, ]+) \(e\.g\./.exec(message)?.[1]?.split(", ");
      const base = llama();
      assert.throws(
        () => lora(base, { target_modules: ["q_proj", "qkv_proj"] }),
        (err: Error) => {
          assert.match(err.message, /"qkv_proj"/);
          assert.doesNotMatch(err.message, /"q_proj"/, "only the entry that matched nothing is named as missing");
          assert.deepEqual(linearNames(err.message), names);
          return true;
        },
      );
      assert.ok(
        base.modules().every((m) => !(m instanceof BaseTunerLayer)),
        "no adapter layer was injected",
      );
      // The same with an adapter already in place: the listed names are the model's, and the failed adapter leaves nothing behind.
      const peft = lora(llama(), { target_modules: "all-linear" });
      assert.throws(
        () =>
          peft.addAdapter("c", LoraConfig({ task_type: TaskType.CAUSAL_LM, target_modules: ["q_proj", "nothing"] })),
        (err: Error) => {
          assert.match(err.message, /"nothing"/);
          assert.deepEqual(linearNames(err.message), names);
          return true;
        },
      );
      assert.ok(loraLayers(peft).every(([, l]) => l.adapterNames().join() === "default"));
      assert.throws(
        () => lora(gpt2(), { target_modules: ["query", "value"], fan_in_fan_out: true }),
        (err: Error) => {
          assert.match(err.message, /query/);
          for (const n of ["c_attn", "c_proj", "c_fc"]) assert.match(err.message, new RegExp(n));
          return true;
        },
      );
    },
  );

  it(
    "no target_modules: the model type's default (gpt2 c_attn, llama q/v); none for DistilBERT " +
      "or an unknown type → asks for target_modules",
    () => {
      assert.deepEqual(loraPaths(lora(gpt2(), { fan_in_fan_out: true })), gptPaths([0, 1], ["attn.c_attn"]));
      assert.deepEqual(loraPaths(lora(llama(), {})), llamaPaths([0, 1], ["self_attn.q_proj", "self_attn.v_proj"]));
      T.manualSeed(3);
      const distil = AutoModelForSequenceClassification.fromConfig({
        model_type: "distilbert",
        vocab_size: 64,
        dim: 32,
        n_heads: 4,
        n_layers: 1,
        hidden_dim: 64,
        max_position_embeddings: 32,
      });
      assert.throws(
        () => getPeftModel(distil, LoraConfig({ task_type: TaskType.SEQ_CLS })),
        (err: Error) => /target_modules/.test(err.message) && /distilbert/.test(err.message),
      );
      const custom = gpt2();
      (custom.config as { model_type: string }).model_type = "my-gpt";
      assert.throws(
        () => lora(custom, {}),
        (err: Error) => /target_modules/.test(err.message) && /my-gpt/.test(err.message),
      );
      // Naming the modules works for DistilBERT.
      T.manualSeed(3);
      const distil2 = AutoModelForSequenceClassification.fromConfig({
        model_type: "distilbert",
        vocab_size: 64,
        dim: 32,
        n_heads: 4,
        n_layers: 1,
        hidden_dim: 64,
        max_position_embeddings: 32,
      });
      const ok = getPeftModel(distil2, LoraConfig({ task_type: TaskType.SEQ_CLS, target_modules: ["q_lin", "v_lin"] }));
      assert.equal(loraPaths(ok).length, 2);
    },
  );

  it("an unsupported module type is an error naming the module and its type", () => {
    assert.throws(
      () => lora(gpt2(), { target_modules: ["ln_1"], fan_in_fan_out: true }),
      (err: Error) =>
        /transformer\.h\.0\.ln_1/.test(err.message) &&
        /LayerNorm/.test(err.message) &&
        /not supported/.test(err.message),
    );
    assert.throws(
      () => lora(llama(), { target_modules: ["input_layernorm"] }),
      (err: Error) => /RMSNorm/.test(err.message) && /not supported/.test(err.message),
    );
  });
});

describe("LoRA: savePretrained / fromPretrained", () => {
  const tmp = () => mkdtempSync(join(tmpdir(), "peft-ts-lora-"));
  /** Every file and folder below dir (relative paths). */
  const tree = (dir: string): string[] =>
    readdirSync(dir)
      .flatMap((n) =>
        statSync(join(dir, n)).isDirectory() ? [`${n}/`, ...tree(join(dir, n)).map((c) => `${n}/${c}`)] : [n],
      )
      .sort();
  const noTempFiles = (dir: string) =>
    assert.deepEqual(
      tree(dir).filter((f) => /(^|\/)\.|\.tmp$/.test(f)),
      [],
      `temporary files left in ${dir}`,
    );
  const cfg = () =>
    LoraConfig({
      task_type: TaskType.CAUSAL_LM,
      r: 4,
      lora_alpha: 8,
      target_modules: ["q_proj", "v_proj", "embed_tokens"],
      rank_pattern: { v_proj: 2 },
      modules_to_save: ["lm_head"],
      init_lora_weights: false,
    });

  it(
    "reloading onto a fresh copy of the base reproduces the outputs exactly; loaded adapters " +
      "are frozen unless isTrainable",
    () => {
      const base = llama();
      const fresh = [cloneModule(base), cloneModule(base)];
      const peft = getPeftModel(base, cfg());
      perturb(peft.getBaseModel().getTensor("lm_head.modules_to_save.default.weight"), 44);
      const dir = tmp();
      peft.savePretrained(dir);
      assert.deepEqual(tree(dir), ["README.md", "adapter_config.json", "adapter_model.safetensors"]);
      const saved = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual(
        [saved["peft_type"], saved["inference_mode"], saved["r"], saved["rank_pattern"], saved["modules_to_save"]],
        ["LORA", true, 4, { v_proj: 2 }, ["lm_head"]],
      );
      const expected = logits(peft);

      const loaded = PeftModel.fromPretrained(fresh[0]!, dir);
      assertSame(logits(loaded), expected, "reloaded logits");
      assert.equal(loaded.getNbTrainableParameters()[0], 0);
      assert.ok(
        loaded.parameters().every((p) => !p.requiresGrad),
        "everything frozen",
      );
      assert.equal(loaded.training, false);

      const trainable = PeftModel.fromPretrained(fresh[1]!, dir, { isTrainable: true });
      assertSame(logits(trainable), expected, "reloaded (trainable) logits");
      // By hand: q (32→32) r 4 and v (32→16) r 2 in two layers, embed_tokens (64 ids → 32) r 4, the 64×32 lm_head copy.
      assert.equal(trainable.getNbTrainableParameters()[0], 2 * (4 * 64 + 2 * 48) + 4 * (64 + 32) + 64 * 32);
      noTempFiles(dir);
    },
  );

  it("a folder without adapter_config.json is a clear error", () => {
    const dir = tmp();
    writeFileSync(join(dir, "adapter_model.safetensors"), "");
    assert.throws(
      () => PeftModel.fromPretrained(llama(), dir),
      (err: Error) =>
        /adapter_config\.json is missing/.test(err.message) &&
        err.message.includes(dir) &&
        /adapter_model\.safetensors/.test(err.message),
    );
    assert.throws(
      () => PeftModel.fromPretrained(llama(), join(dir, "nope")),
      /adapter_config\.json is missing.*does not exist/,
    );
  });

  it(
    "an adapter for another model: a different hidden size is a size mismatch; other layers or " + "modules are named",
    () => {
      const dir = tmp();
      getPeftModel(
        llama(),
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, target_modules: ["q_proj", "v_proj"] }),
      ).savePretrained(dir);
      assert.throws(
        () => PeftModel.fromPretrained(llama(1, { hidden_size: 48 }), dir),
        (err: Error) => {
          assert.match(err.message, /size mismatch/);
          assert.match(err.message, /q_proj\.lora_A/);
          assert.match(err.message, /\[4, 32\].*\[4, 48\]/);
          return true;
        },
      );
      // Three layers' adapter onto a two-layer model: the third layer's tensors have no place.
      const deep = tmp();
      getPeftModel(
        llama(1, { num_hidden_layers: 3 }),
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, target_modules: ["q_proj", "v_proj"] }),
      ).savePretrained(deep);
      assert.throws(
        () => PeftModel.fromPretrained(llama(), deep),
        (err: Error) => /no place/.test(err.message) && /layers\.2\./.test(err.message),
      );
      // A GPT-2 adapter onto LLaMA: its target modules do not exist there.
      const g = tmp();
      getPeftModel(
        gpt2(),
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, target_modules: ["c_attn"], fan_in_fan_out: true }),
      ).savePretrained(g);
      assert.throws(
        () => PeftModel.fromPretrained(llama(), g),
        (err: Error) => /c_attn/.test(err.message) && /not found/.test(err.message) && /q_proj/.test(err.message),
      );
    },
  );

  it("a non-default adapter is saved in its own subfolder and loads back with loadAdapter; selectedAdapters", () => {
    const base = llama();
    const fresh = cloneModule(base);
    const peft = getPeftModel(
      base,
      LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, target_modules: ["q_proj"], init_lora_weights: false }),
    );
    peft.addAdapter(
      "other",
      LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 2,
        lora_alpha: 4,
        target_modules: ["v_proj", "up_proj"],
        init_lora_weights: false,
      }),
    );
    const defaultLogits = logits(peft);
    peft.setAdapter("other");
    const otherLogits = logits(peft);
    const dir = tmp();
    peft.savePretrained(dir);
    assert.deepEqual(tree(dir), [
      "README.md",
      "adapter_config.json",
      "adapter_model.safetensors",
      "other/",
      "other/README.md",
      "other/adapter_config.json",
      "other/adapter_model.safetensors",
    ]);
    const otherConfig = JSON.parse(readFileSync(join(dir, "other", "adapter_config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.deepEqual([otherConfig["r"], otherConfig["target_modules"]], [2, ["v_proj", "up_proj"]]);

    const loaded = PeftModel.fromPretrained(fresh, dir);
    assertSame(logits(loaded), defaultLogits, "default");
    loaded.loadAdapter(join(dir, "other"), "other");
    loaded.setAdapter("other");
    assertSame(logits(loaded), otherLogits, "other");

    const only = tmp();
    peft.savePretrained(only, { selectedAdapters: ["other"] });
    assert.deepEqual(tree(only), [
      "other/",
      "other/README.md",
      "other/adapter_config.json",
      "other/adapter_model.safetensors",
    ]);
    noTempFiles(dir);
    noTempFiles(only);
  });

  it("writes are atomic: saving over an existing adapter or failing half-way leaves no temporary files", () => {
    const peft = getPeftModel(
      llama(),
      LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, target_modules: ["q_proj"], init_lora_weights: false }),
    );
    const dir = tmp();
    peft.savePretrained(dir);
    const first = readFileSync(join(dir, "adapter_model.safetensors"));
    peft.savePretrained(dir);
    assert.deepEqual(readFileSync(join(dir, "adapter_model.safetensors")), first);
    noTempFiles(dir);
    // A folder in the way of the weights file: the adapter folder is replaced whole, so it goes too (a fill that fails
    // half-way is test/atomic.test.ts' "a failing fill leaves the previous folder as it was").
    const blocked = tmp();
    mkdirSync(join(blocked, "adapter_model.safetensors"));
    peft.savePretrained(blocked);
    assert.deepEqual(readFileSync(join(blocked, "adapter_model.safetensors")), first);
    noTempFiles(blocked);
    assert.ok(existsSync(join(blocked, "adapter_config.json")));
  });
});

describe("LoRA: end to end", () => {
  it(
    "LoRA r 8 learns a fixed dataset with AdamW (loss < 50% of its start), storage count flat " +
      "across steps, saved adapter reproduces the logits",
    () => {
      // initializer_range 0.2 instead of 0.02: with N(0, 0.02²) embeddings, a tied LM head after a LayerNorm can move
      // the logits by < 1 whatever LoRA does, which caps how far the loss of a frozen random model can fall.
      const base = gpt2(21, { initializer_range: 0.2 });
      const fresh = cloneModule(base);
      const baseLogits = logits(base);
      const peft = getPeftModel(
        base,
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 16, fan_in_fan_out: true }),
      );
      assert.deepEqual(loraPaths(peft), ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]);
      peft.train();
      const ids = toyIds();
      const opt = new AdamW(peft.parameters(), { lr: 1e-2 });
      const live: number[] = [];
      const losses = trainSteps(peft, opt, ids, 60, () => live.push(T.memory().liveStorages));
      assert.ok(losses.every(Number.isFinite));
      assert.ok(losses[59]! < 0.5 * losses[0]!, `loss ${losses[0]} → ${losses[59]}`);
      // After the first step (which creates the AdamW moments) no step leaves storages behind. ≤ rather than ===:
      // the garbage collector may free unrelated tensors of earlier tests meanwhile.
      for (let i = 1; i < live.length; i++)
        assert.ok(live[i]! <= live[0]!, `live storages ${live[0]} after step 1, ${live[i]} after step ${i + 1}`);
      assert.equal(opt.stateSize, 4, "AdamW state for the 4 LoRA matrices only");

      peft.eval();
      const trained = logits(peft);
      assert.ok(maxAbsDiff(trained, baseLogits) > 0.1);
      const dir = mkdtempSync(join(tmpdir(), "peft-ts-lora-e2e-"));
      peft.savePretrained(dir);
      const loaded = PeftModel.fromPretrained(fresh, dir);
      assertSame(logits(loaded), trained, "reloaded trained adapter");
      const lossAgain = T.tidy(() => T.noGrad(() => loaded.forward({ inputIds: ids, labels: ids }).loss!.item()));
      assert.ok(lossAgain < 0.5 * losses[0]!);
      opt.dispose();
    },
  );
});
