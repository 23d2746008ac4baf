/**
 * AdaLoRA beyond the golden files: the budget schedule against its formula, the orthogonality penalty and its
 * gradient against hand-computed values, rank allocation after real training steps against an independent
 * computation of the importance scores, pruned save / resized load (rank 0 included), merge/unmerge, the
 * Trainer's automatic updateAndAllocate, and the errors users can hit.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import {
  AdaLoraConfig,
  type AdaLoraModel,
  LoraConfig,
  PeftModel,
  TaskType,
  budgetSchedule,
  getPeftModel,
} from "../src/peft/index.js";
import type { AdaLoraLinear } from "../src/peft/index.js";
import { AdamW } from "../src/optim/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { Dataset, DataCollatorForSeq2Seq, Trainer, TrainingArguments } from "../src/train/index.js";
import { assertClose, randValues, rng } from "./helpers.js";

const CONFIG = {
  model_type: "gpt2",
  vocab_size: 48,
  n_positions: 32,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
  initializer_range: 0.3,
};
const tmp = () => mkdtempSync(join(tmpdir(), "peft-ts-adalora-"));

function tinyAdaLora(fields: Partial<AdaLoraConfig> = {}, seed = 1): PeftModel {
  T.manualSeed(seed);
  const base = AutoModelForCausalLM.fromConfig(CONFIG);
  return getPeftModel(
    base,
    AdaLoraConfig({ task_type: TaskType.CAUSAL_LM, init_r: 4, target_r: 2, lora_alpha: 8, total_step: 10, ...fields }),
  );
}

function tuner(m: PeftModel): AdaLoraModel {
  return m.base_model as AdaLoraModel;
}

/** Random token ids [2, 10] with labels. */
function batch(seed: number): { inputIds: T.Tensor; labels: T.Tensor; attentionMask: T.Tensor } {
  const r = rng(seed);
  const ids = Array.from({ length: 20 }, () => 3 + Math.floor(r() * 45));
  return {
    inputIds: T.tensor(Int32Array.from(ids), [2, 10]),
    labels: T.tensor(Int32Array.from(ids), [2, 10]),
    attentionMask: T.tensor(Int32Array.from(ids.map(() => 1)), [2, 10]),
  };
}

function logits(m: { forward(i: never): unknown }, b: ReturnType<typeof batch>): Float32Array {
  return T.noGrad(
    () => (m.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask } as never) as ModelOutput).logits!,
  ).dataSync() as Float32Array;
}

/** Give every adapter tensor random values (E included, so that the adapter changes the output). */
function randomizeAdapter(m: PeftModel, seed: number): void {
  let s = seed;
  T.noGrad(() => {
    for (const [name, p] of m.namedParameters())
      if (name.includes("lora_") && p.size > 0) p.copy_(T.tensor(randValues(p.size, s++, 0.05, 0.5), p.shape));
  });
}

describe("AdaLoRA config", () => {
  it("requires total_step and a budgeting phase, refuses DoRA, keeps HF's defaults", () => {
    assert.throws(() => AdaLoraConfig({ init_r: 4 }), /total_step/);
    assert.throws(() => AdaLoraConfig({ total_step: 0 }), /total_step/);
    assert.throws(() => AdaLoraConfig({ total_step: 10, tinit: 5, tfinal: 5 }), /budgeting phase/);
    assert.throws(() => AdaLoraConfig({ total_step: 10, use_dora: true }), /DoRA/);
    const c = AdaLoraConfig({ total_step: 10 });
    assert.deepEqual(
      [
        c.peft_type,
        c.init_r,
        c.target_r,
        c.tinit,
        c.tfinal,
        c.deltaT,
        c.beta1,
        c.beta2,
        c.orth_reg_weight,
        c.rank_pattern,
        c.r,
        c.lora_alpha,
      ],
      ["ADALORA", 12, 8, 0, 0, 1, 0.85, 0.85, 0.5, null, 8, 8],
    );
  });
});

describe("AdaLoRA budget schedule", () => {
  it("follows the cubic formula between tinit and total_step − tfinal, masking every deltaT steps", () => {
    // tinit 2, tfinal 3, total_step 20, deltaT 2, budget 24 → 8: b(s) = ⌊16·(1 − (s − 2)/15)³ + 8⌋ for 2 < s ≤ 17.
    const c = { tinit: 2, tfinal: 3, total_step: 20, deltaT: 2 };
    const at = (s: number) => budgetSchedule(s, c, 24, 8);
    assert.deepEqual(at(0), { budget: 24, mask: false });
    assert.deepEqual(at(2), { budget: 24, mask: false });
    assert.deepEqual(at(3), { budget: 21, mask: false }); // ⌊16·(14/15)³ + 8⌋ = ⌊21.0086⌋
    assert.deepEqual(at(4), { budget: 18, mask: true }); // ⌊16·(13/15)³ + 8⌋ = ⌊18.4154⌋
    assert.deepEqual(at(10), { budget: 9, mask: true }); // ⌊16·(7/15)³ + 8⌋ = ⌊9.6261⌋
    assert.deepEqual(at(16), { budget: 8, mask: true }); // ⌊16·(1/15)³ + 8⌋ = ⌊8.0047⌋
    assert.deepEqual(at(17), { budget: 8, mask: false }); // total_step − tfinal: still the schedule (coefficient 0)
    assert.deepEqual(at(18), { budget: 8, mask: true }); // final phase
    assert.deepEqual(at(25), { budget: 8, mask: true });
    // With deltaT 1 every budgeting step masks; the model's allocator uses Σ init_r and target_r · #layers.
    const m = tinyAdaLora({ target_modules: ["c_attn", "c_fc"], tinit: 1, tfinal: 1, total_step: 8 });
    const alloc = tuner(m).rankAllocator!;
    assert.equal(alloc.initBudget, 4 * 4);
    assert.equal(alloc.targetBudget, 2 * 4);
    assert.deepEqual(alloc.budgetSchedule(3), { budget: 10, mask: true }); // ⌊8·(1 − 2/6)³ + 8⌋ = ⌊10.370⌋
  });
});

describe("AdaLoRA orthogonality penalty", () => {
  it("equals orth_reg_weight × mean(‖AAᵀ − I‖_F, ‖BᵀB − I‖_F) and has the gradient 2·M·A/‖M‖ (2·B·M/‖M‖)", () => {
    const w = 0.3;
    const m = tinyAdaLora({ target_modules: ["c_attn"], orth_reg_weight: w });
    randomizeAdapter(m, 11);
    const layers = tuner(m).adaLoraLayers();
    const count = 2 * layers.length;
    // Hand computation in double: M = PPᵀ − I for A (r×in), M = QᵀQ − I for B (out×r); dN/dA = 2MA/N, dN/dB = 2BM/N.
    let expected = 0;
    const grads = new Map<T.Tensor, Float64Array>();
    for (const [, l] of layers) {
      for (const which of ["A", "B"] as const) {
        const p = which === "A" ? l.A("default") : l.B("default");
        const [rows, cols] = p.shape as [number, number];
        const v = Float64Array.from(p.dataSync());
        const at = (i: number, j: number) => v[i * cols + j]!;
        const r = which === "A" ? rows : cols;
        const M = new Float64Array(r * r);
        for (let i = 0; i < r; i++)
          for (let j = 0; j < r; j++) {
            let s = 0;
            if (which === "A") for (let k = 0; k < cols; k++) s += at(i, k) * at(j, k);
            else for (let k = 0; k < rows; k++) s += at(k, i) * at(k, j);
            M[i * r + j] = s - (i === j ? 1 : 0);
          }
        const N = Math.sqrt(M.reduce((s, x) => s + x * x, 0));
        expected += N;
        const g = new Float64Array(rows * cols);
        for (let i = 0; i < rows; i++)
          for (let j = 0; j < cols; j++) {
            let s = 0;
            if (which === "A")
              for (let k = 0; k < r; k++) s += M[i * r + k]! * at(k, j); // (M·A)[i, j]
            else for (let k = 0; k < r; k++) s += at(i, k) * M[k * r + j]!; // (B·M)[i, j]
            g[i * cols + j] = ((w / count) * 2 * s) / N;
          }
        grads.set(p, g);
      }
    }
    expected = (w * expected) / count;
    const reg = tuner(m).orthogonalRegularization("default")!;
    assertClose([reg.item()], [expected], 0, 1e-5, "penalty");
    reg.backward();
    for (const [p, g] of grads) assertClose(p.grad!.dataSync(), g, 1e-6, 1e-4, `gradient of ${p.shape.join("×")}`);
    for (const [, l] of layers)
      assert.ok(
        !l.E("default").grad ||
          l
            .E("default")
            .grad!.dataSync()
            .every((x) => x === 0),
        "E gets no gradient from the penalty",
      );
  });

  it("is added to the loss whenever the model returns one, counting rank-0 layers with 0", () => {
    const m = tinyAdaLora({ target_modules: ["c_attn"] });
    randomizeAdapter(m, 12);
    const b = batch(3);
    const withReg = () => T.noGrad(() => (m.forward(b) as ModelOutput).loss!.item());
    const plain = () => T.noGrad(() => (tuner(m).model.forward(b) as ModelOutput).loss!.item());
    const reg = () => T.noGrad(() => tuner(m).orthogonalRegularization("default")!.item());
    assertClose([withReg() - plain()], [reg()], 1e-5, 0, "loss − cross-entropy");
    // Prune h.1 to rank 0: its two terms vanish but still count in the mean (as peft's num_param does).
    const before = reg();
    const layers = tuner(m).adaLoraLayers();
    const pattern = { "transformer.h.1.attn.c_attn.lora_E.default": [false, false, false, false] };
    tuner(m).resizeModulesByRankPattern(pattern, "default");
    assert.deepEqual(layers[1]![1].A("default").shape, [0, 32]);
    const only0 = T.noGrad(() => {
      const l = layers[0]![1];
      const n = (t: T.Tensor) => Math.sqrt(Array.from(t.dataSync()).reduce((s, x) => s + x * x, 0));
      const a = l.A("default"),
        bb = l.B("default");
      const eye = T.tensor(
        Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0)),
        [4, 4],
      );
      return n(T.sub(T.matmul(a, T.transpose(a)), eye)) + n(T.sub(T.matmul(T.transpose(bb), bb), eye));
    });
    assertClose([reg()], [(0.5 * only0) / 4], 0, 1e-5, "penalty with a rank-0 layer");
    assert.ok(reg() < before);
    assertClose([withReg() - plain()], [reg()], 1e-5, 0, "loss − cross-entropy with a rank-0 layer");
  });
});

/** Float64 copies of every adapter tensor and its gradient, keyed "<path>.lora_X.default". */
function snapshot(m: PeftModel): Map<string, { w: Float64Array; g: Float64Array | null; shape: number[] }> {
  const out = new Map<string, { w: Float64Array; g: Float64Array | null; shape: number[] }>();
  for (const [path, l] of tuner(m).adaLoraLayers()) {
    for (const part of ["A", "B", "E"] as const) {
      const p = l[part]("default");
      out.set(`${path}.lora_${part}.default`, {
        w: Float64Array.from(p.dataSync()),
        g: p.grad ? Float64Array.from(p.grad.dataSync()) : null,
        shape: [...p.shape],
      });
    }
  }
  return out;
}

describe("AdaLoRA rank allocation", () => {
  it(
    "after training past tinit, keeps exactly the budget and the highest-scoring triplets " +
      "(independent computation)",
    () => {
      const beta1 = 0.8,
        beta2 = 0.9;
      const m = tinyAdaLora(
        {
          target_modules: ["c_attn", "c_proj", "c_fc"],
          init_r: 4,
          target_r: 2,
          tinit: 2,
          tfinal: 2,
          total_step: 10,
          deltaT: 2,
          beta1,
          beta2,
        },
        4,
      );
      const t = tuner(m);
      const layers = t.adaLoraLayers();
      assert.equal(layers.length, 8);
      assert.equal(t.rankAllocator!.initBudget, 32);
      assert.equal(t.rankAllocator!.targetBudget, 16);
      const opt = new AdamW(
        m.parameters().filter((p) => p.requiresGrad),
        { lr: 1e-2 },
      );

      // Independent state: EMA of |w·g| and of |ipt − EMA|, in double.
      const avg = new Map<string, Float64Array>(),
        unc = new Map<string, Float64Array>();
      const expectedPattern = (budget: number): Record<string, boolean[]> => {
        const scoreOf = (name: string, i: number) => avg.get(name)![i]! * unc.get(name)![i]!;
        const triplets: [string, number[]][] = layers.map(([path, l]) => {
          const r = 4,
            n = l.inFeatures,
            mOut = l.outFeatures;
          return [
            `${path}.lora_E.default`,
            Array.from({ length: r }, (_, i) => {
              let a = 0,
                bsum = 0;
              for (let j = 0; j < n; j++) a += scoreOf(`${path}.lora_A.default`, i * n + j);
              for (let j = 0; j < mOut; j++) bsum += scoreOf(`${path}.lora_B.default`, j * r + i);
              return scoreOf(`${path}.lora_E.default`, i) + a / n + bsum / mOut;
            }),
          ];
        });
        const all = triplets.flatMap(([, s]) => s).sort((x, y) => x - y);
        const threshold = all[32 - budget - 1]!;
        // No near-ties, so float32 rounding in the implementation cannot flip the order.
        assert.ok(
          all[32 - budget]! - threshold > 1e-6 * Math.abs(threshold),
          "test setup: the cut falls between well-separated scores",
        );
        return Object.fromEntries(triplets.map(([k, s]) => [k, s.map((v) => v > threshold)]));
      };

      const budgets: Record<number, number> = { 4: 20, 6: 16, 8: 16 }; // ⌊16·(1 − (s − 2)/6)³ + 16⌋ at s = 4, 6; target at s = 8
      for (let step = 0; step < 10; step++) {
        T.tidy(() => {
          const out = m.forward(batch(100 + step)) as ModelOutput;
          out.loss!.backward();
        });
        opt.step();
        const snap = snapshot(m);
        if (step < 8) {
          for (const [name, { w, g }] of snap) {
            if (!avg.has(name)) {
              avg.set(name, new Float64Array(w.length));
              unc.set(name, new Float64Array(w.length));
            }
            const a = avg.get(name)!,
              u = unc.get(name)!;
            for (let i = 0; i < w.length; i++) {
              const ipt = Math.abs(w[i]! * g![i]!);
              a[i] = beta1 * a[i]! + (1 - beta1) * ipt;
              u[i] = beta2 * u[i]! + (1 - beta2) * Math.abs(ipt - a[i]!);
            }
          }
        }
        const before = m.peftConfig["default"]!["rank_pattern"];
        t.updateAndAllocate(step);
        const pattern = m.peftConfig["default"]!["rank_pattern"] as Record<string, boolean[]> | null;
        if (step in budgets) {
          const want = expectedPattern(budgets[step]!);
          assert.deepEqual(pattern, want, `rank pattern after step ${step}`);
          const kept = Object.values(pattern!)
            .flat()
            .filter((k) => k).length;
          assert.equal(kept, budgets[step], `kept rank after step ${step}`);
        } else {
          assert.equal(pattern, before, `no new allocation at step ${step}`);
        }
        // Masked E entries are 0 right after an allocation (the optimizer revives them in between, as in peft) and
        // stay 0 in the final phase, where the final pattern is re-applied every step.
        if (step in budgets || step > 8) {
          for (const [path, l] of layers) {
            const e = l.E("default").dataSync();
            pattern![`${path}.lora_E.default`]!.forEach((keep, i) => {
              if (!keep) assert.equal(e[i], 0, `E[${i}] of ${path} is masked after step ${step}`);
            });
          }
        }
        opt.zeroGrad();
      }
      assert.equal(
        t.rankAllocator!.importance("transformer.h.0.attn.c_attn.lora_A.default"),
        null,
        "scores are reset once the final ranks are fixed",
      );
    },
  );

  it("needs the gradients: called after zeroGrad it says so", () => {
    const m = tinyAdaLora({ target_modules: ["c_attn"], tinit: 0 });
    assert.throws(() => tuner(m).updateAndAllocate(0), /gradient.*after loss\.backward\(\) and before zeroGrad\(\)/);
  });

  it(
    "the Trainer calls updateAndAllocate after each optimizer step (before zeroGrad) and ends " +
      "at the target budget",
    () => {
      const m = tinyAdaLora({ target_modules: ["c_attn", "c_fc"], tinit: 1, tfinal: 1, total_step: 6 }, 2);
      const r = rng(9);
      const data = new Dataset(
        Array.from({ length: 8 }, () => {
          const ids = Array.from({ length: 10 }, () => 3 + Math.floor(r() * 40));
          return { input_ids: ids, labels: ids };
        }),
      );
      const args = TrainingArguments({
        output_dir: tmp(),
        learning_rate: 1e-2,
        per_device_train_batch_size: 2,
        max_steps: 6,
        save_strategy: "no",
        logging_steps: 1,
        lr_scheduler_type: "constant",
      });
      new Trainer({
        model: m,
        args,
        trainDataset: data,
        dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
      }).train();
      const pattern = m.peftConfig["default"]!["rank_pattern"] as Record<string, boolean[]>;
      assert.ok(pattern, "rank_pattern was allocated");
      assert.equal(Object.keys(pattern).length, 4);
      assert.equal(
        Object.values(pattern)
          .flat()
          .filter((k) => k).length,
        2 * 4,
        "kept rank = target_r × layers",
      );
    },
  );
});

describe("AdaLoRA save / load / merge", () => {
  it("saves tensors pruned to rank_pattern (rank 0 as [0, in]) and loads them back into resized layers", () => {
    const m = tinyAdaLora({ target_modules: ["c_attn"] });
    randomizeAdapter(m, 21);
    const t = tuner(m);
    const pattern = {
      "transformer.h.0.attn.c_attn.lora_E.default": [true, false, true, true],
      "transformer.h.1.attn.c_attn.lora_E.default": [false, false, false, false],
    };
    m.peftConfig["default"]!["rank_pattern"] = pattern;
    t.maskUsingRankPattern(pattern);
    const b = batch(5);
    const want = logits(m, b);
    const a0 = Array.from(t.adaLoraLayers()[0]![1].A("default").dataSync());
    const b0 = Array.from(t.adaLoraLayers()[0]![1].B("default").dataSync());
    const dir = tmp();
    m.savePretrained(dir);

    const saved = loadSafetensors(join(dir, "adapter_model.safetensors"));
    const p = "base_model.model.transformer.h";
    assert.deepEqual(Object.fromEntries([...saved].map(([k, v]) => [k, v.shape])), {
      [`${p}.0.attn.c_attn.lora_A`]: [3, 32],
      [`${p}.0.attn.c_attn.lora_E`]: [3, 1],
      [`${p}.0.attn.c_attn.lora_B`]: [96, 3],
      [`${p}.1.attn.c_attn.lora_A`]: [0, 32],
      [`${p}.1.attn.c_attn.lora_E`]: [0, 1],
      [`${p}.1.attn.c_attn.lora_B`]: [96, 0],
    });
    assert.deepEqual(Array.from(saved.get(`${p}.0.attn.c_attn.lora_A`)!.dataSync()), [
      ...a0.slice(0, 32),
      ...a0.slice(64, 128),
    ]);
    assert.deepEqual(
      Array.from(saved.get(`${p}.0.attn.c_attn.lora_B`)!.dataSync()),
      Array.from({ length: 96 }, (_, i) => [b0[i * 4]!, b0[i * 4 + 2]!, b0[i * 4 + 3]!]).flat(),
    );
    const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    assert.deepEqual(config["rank_pattern"], {
      "transformer.h.0.attn.c_attn.lora_E": [true, false, true, true],
      "transformer.h.1.attn.c_attn.lora_E": [false, false, false, false],
    });
    assert.equal(config["r"], 8);
    assert.equal(config["init_r"], 4);

    for (const isTrainable of [false, true]) {
      T.manualSeed(1);
      const reloaded = PeftModel.fromPretrained(AutoModelForCausalLM.fromConfig(CONFIG), dir, { isTrainable });
      const layers = tuner(reloaded).adaLoraLayers();
      assert.deepEqual(
        layers.map(([, l]) => [l.r.get("default"), l.ranknumOf("default")]),
        [
          [3, 4],
          [0, 0],
        ],
        "ranks and ranknum (kept at init_r, 0 for rank 0 as in peft)",
      );
      assertClose(logits(reloaded, b), want, 2e-6, 0, `logits after reload (isTrainable ${isTrainable})`);
      assert.equal(reloaded.getNbTrainableParameters()[0], isTrainable ? 3 * 32 + 3 + 96 * 3 : 0);
      // Saving the reloaded adapter writes the same files.
      const again = tmp();
      reloaded.savePretrained(again);
      const twice = loadSafetensors(join(again, "adapter_model.safetensors"));
      for (const [k, v] of saved)
        assert.deepEqual(Array.from(twice.get(k)!.dataSync()), Array.from(v.dataSync()), `re-saved ${k}`);
    }
  });

  it("merge / unmerge / mergeAndUnload keep the outputs (Linear and GPT-2 Conv1D)", () => {
    for (const targets of [["c_attn"], ["c_attn", "c_fc"]]) {
      const m = tinyAdaLora({ target_modules: targets });
      randomizeAdapter(m, 31);
      const b = batch(6);
      const want = logits(m, b);
      const weight = (tuner(m).adaLoraLayers()[0]![1] as AdaLoraLinear).weight;
      const w0 = Array.from(weight.dataSync());
      m.mergeAdapter();
      assertClose(logits(m, b), want, 1e-5, 0, "merged logits");
      assert.ok(
        Math.max(...Array.from(weight.dataSync(), (x, i) => Math.abs(x - w0[i]!))) > 1e-3,
        "merging changed the weight",
      );
      m.unmergeAdapter();
      assertClose(weight.dataSync(), w0, 1e-6, 0, "weights after unmerge");
      const disabled = m.withAdapterDisabled(() => logits(m, b));
      const merged = m.mergeAndUnload();
      assertClose(logits(merged, b), want, 1e-5, 0, "mergeAndUnload logits");
      assert.ok(
        Math.max(...Array.from(disabled, (x, i) => Math.abs(x - want[i]!))) > 1e-3,
        "the adapter changes the output",
      );
    }
  });

  it("a Linear-target model (llama-like) works too: rank_pattern by module path", () => {
    T.manualSeed(3);
    const base = AutoModelForCausalLM.fromConfig({
      model_type: "llama",
      vocab_size: 48,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 32,
      initializer_range: 0.2,
    });
    const m = getPeftModel(
      base,
      AdaLoraConfig({ task_type: TaskType.CAUSAL_LM, init_r: 3, target_r: 1, total_step: 4 }),
    );
    assert.deepEqual(
      tuner(m)
        .adaLoraLayers()
        .map(([p]) => p),
      [
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
      ],
    );
    assert.equal(m.peftConfig["default"]!["fan_in_fan_out"], false);
  });
});

describe("AdaLoRA errors", () => {
  it(
    "refuses a loss without a trainable adapter, updateAndAllocate when loaded for inference, " +
      "a second trainable adapter, embeddings, weighted adapters",
    () => {
      const m = tinyAdaLora({ target_modules: ["c_attn"] });
      const dir = tmp();
      m.savePretrained(dir);
      T.manualSeed(1);
      const frozen = PeftModel.fromPretrained(AutoModelForCausalLM.fromConfig(CONFIG), dir);
      assert.throws(() => T.noGrad(() => frozen.forward(batch(1))), /isTrainable: true/);
      assert.doesNotThrow(() => logits(frozen, batch(1)));
      assert.throws(() => tuner(frozen).updateAndAllocate(0), /trainable AdaLoRA adapter/);
      assert.throws(
        () => m.addAdapter("other", AdaLoraConfig({ target_modules: ["c_attn"], total_step: 5 })),
        /only 1 trainable adapter/,
      );
      m.addAdapter("other", AdaLoraConfig({ target_modules: ["c_attn"], total_step: 5, inference_mode: true }));
      assert.throws(() => m.addWeightedAdapter(["default", "other"], [0.5, 0.5], "mix"), /LoRA adapters only/);
      T.manualSeed(1);
      assert.throws(
        () =>
          getPeftModel(
            AutoModelForCausalLM.fromConfig(CONFIG),
            AdaLoraConfig({ target_modules: ["wte"], total_step: 5 }),
          ),
        /not supported by AdaLoRA/,
      );
      T.manualSeed(1);
      assert.throws(
        () =>
          getPeftModel(AutoModelForCausalLM.fromConfig(CONFIG), { ...LoraConfig({}), peft_type: "ADALORA" } as never),
        /total_step/,
      );
    },
  );
});
