/**
 * (IA)³, LoHa and LoKr behaviour (SPEC §5) on small layers and tiny random models built here. Expected values
 * come from independent computations: float64 products written out in this file from the adapter's factors,
 * the base layer's own outputs, or the base model's outputs from before getPeftModel.
 *
 * Tolerances. "Exactly" means bit-identical float32 (the same float32 operations on the same values: an (IA)³
 * product written out with Math.fround, a vector of ones, a disabled adapter, a reloaded float32 file). Float64
 * references differ from the float32 computation by rounding only: for the O(1) values used here (dot products
 * of ≤ 16 terms), 1e-5 absolute has a wide margin.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromPretrained } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import { Conv1D, Linear, cloneModule, type Module } from "../src/nn/index.js";
import {
  IA3Config,
  IA3Linear,
  IA3Model,
  LoHaConfig,
  LoHaLinear,
  LoKrConfig,
  LoKrLinear,
  PeftModel,
  getPeftModel,
  configFromJson,
  type PeftConfig,
} from "../src/peft/index.js";
import { factorization, kron, lokrShape } from "../src/peft/tuners/lokr/index.js";
import type { LycorisSettings } from "../src/peft/tuners/lycoris.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { AdamW } from "../src/optim/index.js";
import * as T from "../src/tensor/index.js";
import { assertClose, assertSame, maxAbs, maxAbsDiff, mm, randTensor, transposed, values } from "./helpers.js";
import { IDS, LLAMA, gpt2, llama, logits, toyIds, trainSteps, type Forwardable } from "./tiny-models.js";
import { modelDir, readInputs } from "./golden.js";
import { cliWorkspace, trainGenerateMerge } from "./cli-workspace.js";

const EPS = 2 ** -23;

// ---------------------------------------------------------------------------------------------------------------
// Helpers (tiny models and inputs: tiny-models.ts)

/** x [rows, in] · ΔWᵀ with ΔW [out, in], in float64. */
function xDeltaT(
  x: ArrayLike<number>,
  delta: ArrayLike<number>,
  rows: number,
  inF: number,
  outF: number,
): Float64Array {
  return mm(x, transposed(delta, outF, inF), rows, inF, outF);
}

/** A layer's output for x, without gradients. */
function run(layer: { forward(x: T.Tensor): T.Tensor }, x: T.Tensor): number[] {
  return T.tidy(() => values(T.noGrad(() => layer.forward(x))));
}

/** Overwrite a parameter with random values in ±[0.1, 1]. */
function randomize(p: T.Tensor, seed: number): void {
  T.tidy(() => T.noGrad(() => p.copy_(randTensor([...p.shape], seed))));
}

const settings = (s: Partial<LycorisSettings> & { r: number; alpha: number }): LycorisSettings => ({
  rankDropout: 0,
  moduleDropout: 0,
  initWeights: false,
  rankDropoutScale: false,
  ...s,
});

function adapterLayers<L>(peft: PeftModel, cls: abstract new (...args: never[]) => L): [string, L][] {
  return peft
    .getBaseModel()
    .namedModules()
    .filter((e): e is [string, L & Module] => e[1] instanceof cls) as [string, L][];
}

// ---------------------------------------------------------------------------------------------------------------
// (IA)³

describe("IA3: the scaling formula", () => {
  const x = () => randTensor([3, 6], 5);

  /** A Linear 6 → 4 or a Conv1D (nx 6, nf 4) with a random weight and bias. */
  function baseLayer(kind: "linear" | "conv1d", seed: number): Linear | Conv1D {
    T.manualSeed(seed);
    const layer = kind === "linear" ? new Linear(6, 4) : new Conv1D(4, 6);
    randomize(layer.weight, seed + 1);
    randomize(layer.bias!, seed + 2);
    return layer;
  }

  for (const kind of ["linear", "conv1d"] as const) {
    it(
      `${kind}: attention target out = base(x) ⊙ l, feed-forward target out = base(x ⊙ l), bit ` +
        `for bit; vectors [out, 1] / [1, in]`,
      () => {
        for (const feedforward of [false, true]) {
          const base = baseLayer(kind, 30);
          const reference = cloneModule(base);
          const layer = new IA3Linear(base, kind === "conv1d", feedforward);
          layer.updateLayer("default", false);
          const l = layer.vector("default");
          assert.deepEqual(l.shape, feedforward ? [1, 6] : [4, 1]);
          const lv = values(l);
          const xv = values(x());
          let expected: number[];
          if (feedforward) {
            const scaled = T.tensor(
              xv.map((v, i) => Math.fround(v * lv[i % 6]!)),
              [3, 6],
            );
            expected = run(reference as Linear, scaled);
          } else {
            expected = run(reference as Linear, x()).map((v, i) => Math.fround(v * lv[i % 4]!));
          }
          assertSame(run(layer, x()), expected, `${kind} ${feedforward ? "feed-forward" : "attention"} output`);
        }
      },
    );
  }

  it("several active adapters multiply their vectors; an adapter absent from the layer is skipped", () => {
    const layer = new IA3Linear(baseLayer("linear", 40), false, false);
    layer.updateLayer("a", false);
    layer.updateLayer("b", false);
    const base = run(layer.base_layer as Linear, x());
    const la = values(layer.vector("a")),
      lb = values(layer.vector("b"));
    layer.setAdapter(["a", "b", "missing"]);
    assertSame(
      run(layer, x()),
      base.map((v, i) => Math.fround(v * Math.fround(la[i % 4]! * lb[i % 4]!))),
      "a and b active",
    );
    layer.setAdapter(["b"]);
    assertSame(
      run(layer, x()),
      base.map((v, i) => Math.fround(v * lb[i % 4]!)),
      "b active",
    );
  });

  it(
    "merge: W ⊙ l on output rows and the bias (attention), on input columns (feed-forward), " +
      "transposed for Conv1D; same outputs; unmerge divides back",
    () => {
      for (const kind of ["linear", "conv1d"] as const) {
        for (const feedforward of [false, true]) {
          const what = `${kind} ${feedforward ? "feed-forward" : "attention"}`;
          const base = baseLayer(kind, 50);
          const w0 = values(base.weight),
            b0 = values(base.bias!);
          const layer = new IA3Linear(base, kind === "conv1d", feedforward);
          layer.updateLayer("default", false);
          const l = values(layer.vector("default"));
          const unmerged = run(layer, x());
          layer.merge();
          assert.ok(layer.merged);
          // Stored layout: Linear [out 4, in 6], Conv1D [in 6, out 4].
          const expectedW = w0.map((w, idx) => {
            const [row, col] = [Math.floor(idx / (kind === "linear" ? 6 : 4)), idx % (kind === "linear" ? 6 : 4)];
            const [o, i] = kind === "linear" ? [row, col] : [col, row];
            return Math.fround(w * l[feedforward ? i : o]!);
          });
          assertSame(values(base.weight), expectedW, `${what}: merged weight`);
          assertSame(
            values(base.bias!),
            feedforward ? b0 : b0.map((b, o) => Math.fround(b * l[o]!)),
            `${what}: merged bias`,
          );
          // Merged: x·(W⊙l) vs (x·W)⊙l (or (x⊙l)·W) — the same products summed in another rounding order.
          assertClose(run(layer, x()), unmerged, 1e-5, 1e-5, `${what}: merged output`);
          layer.unmerge();
          assert.ok(!layer.merged);
          // W⊙l/(l + 1e-8): two roundings and the 1e-8 tolerance, relative to each entry.
          assertClose(
            values(base.weight),
            w0,
            0,
            4 * EPS + 1e-7 / Math.min(...l.map(Math.abs)),
            `${what}: unmerged weight`,
          );
          assertClose(
            values(base.bias!),
            b0,
            0,
            4 * EPS + 1e-7 / Math.min(...l.map(Math.abs)),
            `${what}: unmerged bias`,
          );
        }
      }
    },
  );

  it(
    "init_ia3_weights true gives vectors of ones and the base model's outputs exactly (GPT-2 " +
      "Conv1D, LLaMA, BERT, T5); false draws N(0, 1)",
    () => {
      const checkModel = (
        model: PreTrainedModel,
        inputs: (() => Record<string, T.Tensor>) | undefined,
        config: PeftConfig,
        what: string,
      ) => {
        const before = logits(model as unknown as Forwardable, inputs);
        const peft = getPeftModel(model, config);
        const layers = adapterLayers(peft, IA3Linear);
        assert.ok(layers.length > 0, what);
        for (const [path, layer] of layers)
          assert.ok(
            values(layer.vector("default")).every((v) => v === 1),
            `${what}: ${path} starts at ones`,
          );
        assertSame(logits(peft, inputs), before, `${what}: outputs with a fresh adapter`);
      };
      checkModel(gpt2(), undefined, IA3Config({ task_type: "CAUSAL_LM" }), "gpt2");
      checkModel(llama(), undefined, IA3Config({ task_type: "CAUSAL_LM" }), "llama");
      const forwardOnly = (name: string) => () => {
        const all = readInputs(modelDir(name));
        return Object.fromEntries(Object.entries(all).filter(([k]) => !k.startsWith("gen") && k !== "labels"));
      };
      checkModel(
        fromPretrained(modelDir("bert-seqcls"), "sequence-classification"),
        forwardOnly("bert-seqcls"),
        IA3Config({ task_type: "SEQ_CLS" }),
        "bert-seqcls",
      );
      checkModel(
        fromPretrained(modelDir("t5"), "seq2seq-lm"),
        forwardOnly("t5"),
        IA3Config({ task_type: "SEQ_2_SEQ_LM" }),
        "t5",
      );

      T.manualSeed(3);
      const random = getPeftModel(llama(), IA3Config({ task_type: "CAUSAL_LM", init_ia3_weights: false }));
      const v = adapterLayers(random, IA3Linear).flatMap(([, l]) => values(l.vector("default")));
      const mean = v.reduce((s, a) => s + a, 0) / v.length;
      const variance = v.reduce((s, a) => s + (a - mean) ** 2, 0) / v.length;
      // 192 draws of N(0, 1): the sample mean is within ±0.3 and the variance within [0.6, 1.5] with overwhelming probability.
      assert.ok(Math.abs(mean) < 0.3 && variance > 0.6 && variance < 1.5, `mean ${mean}, variance ${variance}`);
    },
  );

  it(
    "default targets and feed-forward modules by model type; feed-forward matched by plain " +
      "suffix (BERT's attention.output.dense too)",
    () => {
      const g = getPeftModel(gpt2(), IA3Config({ task_type: "CAUSAL_LM" }));
      const shapes = (peft: PeftModel) =>
        Object.fromEntries(
          adapterLayers(peft, IA3Linear).map(([k, l]) => [k, [l.isFeedforward, ...l.vector("default").shape]]),
        );
      assert.deepEqual(shapes(g), {
        "transformer.h.0.attn.c_attn": [false, 96, 1],
        "transformer.h.0.mlp.c_proj": [true, 1, 128],
        "transformer.h.1.attn.c_attn": [false, 96, 1],
        "transformer.h.1.mlp.c_proj": [true, 1, 128],
      });
      assert.equal(g.peftConfig["default"]!["fan_in_fan_out"], true, "Conv1D targets force fan_in_fan_out");
      const l = getPeftModel(llama(), IA3Config({ task_type: "CAUSAL_LM" }));
      assert.deepEqual(shapes(l), {
        "model.layers.0.self_attn.k_proj": [false, 16, 1],
        "model.layers.0.self_attn.v_proj": [false, 16, 1],
        "model.layers.0.mlp.down_proj": [true, 1, 64],
        "model.layers.1.self_attn.k_proj": [false, 16, 1],
        "model.layers.1.self_attn.v_proj": [false, 16, 1],
        "model.layers.1.mlp.down_proj": [true, 1, 64],
      });
      assert.deepEqual(l.peftConfig["default"]!["feedforward_modules"], ["down_proj"]);
      // BERT: "output.dense" is feed-forward, and by plain suffix so is attention.output.dense (as in peft).
      const b = getPeftModel(
        fromPretrained(modelDir("bert-seqcls"), "sequence-classification"),
        IA3Config({ task_type: "SEQ_CLS" }),
      );
      const bs = shapes(b);
      assert.deepEqual(bs["bert.encoder.layer.0.attention.output.dense"], [true, 1, 64]);
      assert.deepEqual(bs["bert.encoder.layer.0.output.dense"], [true, 1, 128]);
      assert.deepEqual(bs["bert.encoder.layer.0.attention.self.key"], [false, 64, 1]);
      // A regex feedforward_modules full-matches the module path.
      const r = getPeftModel(
        llama(),
        IA3Config({
          task_type: "CAUSAL_LM",
          target_modules: ["q_proj", "o_proj"],
          feedforward_modules: ".*layers\\.1\\.self_attn\\.o_proj",
        }),
      );
      const rs = shapes(r);
      assert.deepEqual(
        [rs["model.layers.0.self_attn.o_proj"], rs["model.layers.1.self_attn.o_proj"]],
        [
          [false, 32, 1],
          [true, 1, 32],
        ],
      );
    },
  );

  it(
    "config errors: feed-forward modules outside the targets; no default for an unknown model " +
      "type; unsupported layers leave the model untouched",
    () => {
      assert.throws(
        () => IA3Config({ target_modules: ["k_proj"], feedforward_modules: ["down_proj"] }),
        /`feedforward_modules` should be a subset of `target_modules`.*down_proj/,
      );
      assert.throws(() => IA3Config({ init_ia3_weights: "yes" as unknown as boolean }), /init_ia3_weights/);
      const unknown = llama(12);
      unknown.config.model_type = "mystery";
      assert.throws(() => getPeftModel(unknown, IA3Config({})), /Please specify `target_modules`.*mystery/);
      const unknown2 = llama(12);
      unknown2.config.model_type = "mystery";
      assert.throws(
        () => getPeftModel(unknown2, IA3Config({ target_modules: ["q_proj"] })),
        /Please specify `feedforward_modules`.*mystery/,
      );
      assert.ok(getPeftModel(unknown2, IA3Config({ target_modules: ["q_proj"], feedforward_modules: [] })));
      const model = llama();
      const before = model.namedModules().map(([k, m]) => `${k}:${m.constructor.name}`);
      assert.throws(
        () => getPeftModel(model, IA3Config({ target_modules: ["q_proj", "embed_tokens"], feedforward_modules: [] })),
        /model\.embed_tokens \(Embedding\) is not supported by IA3/,
      );
      assert.deepEqual(
        model.namedModules().map(([k, m]) => `${k}:${m.constructor.name}`),
        before,
        "no layer was wrapped",
      );
      assert.ok(!model.namedModules().some(([, m]) => m instanceof IA3Linear));
    },
  );

  it(
    "addWeightedAdapter: each layer's vector is Σ wᵢ·lᵢ (0 where no adapter is); inactive and " +
      "frozen; saves and reloads",
    () => {
      const peft = getPeftModel(
        llama(),
        IA3Config({
          task_type: "CAUSAL_LM",
          target_modules: ["k_proj", "down_proj"],
          feedforward_modules: ["down_proj"],
          init_ia3_weights: false,
        }),
        "a",
      );
      peft.addAdapter(
        "b",
        IA3Config({
          task_type: "CAUSAL_LM",
          target_modules: ["v_proj", "down_proj"],
          feedforward_modules: ["down_proj"],
          init_ia3_weights: false,
        }),
      );
      peft.addWeightedAdapter(["a", "b"], [0.7, -0.4], "mix");
      const config = peft.peftConfig["mix"]!;
      assert.deepEqual([...(config["target_modules"] as string[])].sort(), ["down_proj", "k_proj", "v_proj"]);
      assert.deepEqual(config["feedforward_modules"], ["down_proj"]);
      assert.deepEqual(peft.activeAdapters, ["a"]);
      for (const [path, layer] of adapterLayers(peft, IA3Linear)) {
        const part = (n: string, w: number) => (layer.hasAdapter(n) ? values(layer.vector(n)).map((v) => w * v) : null);
        const parts = [part("a", 0.7), part("b", -0.4)].filter((p): p is number[] => p !== null);
        const expected = parts.reduce((s, p) => s.map((v, i) => v + p[i]!));
        assertClose(values(layer.vector("mix")), expected, 1e-6, 1e-6, `${path}: mix`);
        assert.equal(layer.vector("mix").requiresGrad, false, `${path}: mix is frozen`);
      }
      assert.throws(() => peft.addWeightedAdapter(["a", "nope"], [1, 1], "x"), /adapter "nope" does not exist/);
      assert.throws(() => peft.addWeightedAdapter(["a", "b"], [1], "x"), /2 adapter\(s\) but 1 weights/);
      assert.throws(() => peft.addWeightedAdapter(["a"], [1], "x", { combinationType: "svd" }), /apply to LoRA only/);
      peft.setAdapter("mix");
      const mixed = logits(peft);
      const dir = mkdtempSync(join(tmpdir(), "peft-ts-ia3-mix-"));
      peft.savePretrained(dir, { selectedAdapters: ["mix"] });
      assertSame(logits(PeftModel.fromPretrained(llama(), join(dir, "mix"))), mixed, "reloaded mix");
    },
  );
});

// ---------------------------------------------------------------------------------------------------------------
// LoHa and LoKr on small layers

describe("LoHa: ΔW = (w1a·w1b) ⊙ (w2a·w2b) · α/r", () => {
  const x = () => randTensor([3, 6], 7);

  function lohaDelta(layer: LoHaLinear, name: string, scale: number): number[] {
    const f = layer.factors(name);
    const [out, r] = f.w1a.shape as [number, number];
    const inF = f.w1b.shape[1]!;
    const p1 = mm(values(f.w1a), values(f.w1b), out, r, inF);
    const p2 = mm(values(f.w2a), values(f.w2b), out, r, inF);
    return Array.from(p1, (v, i) => v * p2[i]! * scale);
  }

  it("a Linear 6 → 4 at r 2, α 3: out − base(x) = x·ΔWᵀ with ΔW by hand; merged W = W + ΔW; unmerge restores W", () => {
    T.manualSeed(60);
    const base = new Linear(6, 4);
    const w0 = values(base.weight);
    const layer = new LoHaLinear(base).eval();
    layer.updateLayer("default", settings({ r: 2, alpha: 3 }));
    const names = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"];
    assert.deepEqual(
      names.map((n) => layer.getTensor(`${n}.default`).shape),
      [
        [4, 2],
        [2, 6],
        [4, 2],
        [2, 6],
      ],
    );
    names.forEach((n, i) => {
      randomize(layer.getTensor(`${n}.default`), 80 + i);
    });
    const delta = lohaDelta(layer, "default", 3 / 2);
    assert.ok(maxAbs(delta) > 0.05, "a non-trivial ΔW");
    const baseOut = run(base, x());
    const got = run(layer, x()).map((v, i) => v - baseOut[i]!);
    assertClose(got, xDeltaT(values(x()), delta, 3, 6, 4), 1e-5, 1e-5, "out − base");
    const unmerged = run(layer, x());
    layer.merge();
    assertClose(
      values(base.weight),
      w0.map((w, i) => w + delta[i]!),
      1e-6,
      1e-6,
      "merged weight",
    );
    assertClose(run(layer, x()), unmerged, 1e-5, 1e-5, "merged output");
    layer.unmerge();
    assertClose(values(base.weight), w0, 4 * EPS * maxAbs(w0) + 4 * EPS * maxAbs(delta), 0, "unmerged weight");
  });

  it(
    "init_weights true: w2b = 0 so ΔW = 0 (a fresh adapter gives the base outputs exactly); " +
      "w1a, w1b, w2a Kaiming-uniform U(±1/√fan_in)",
    () => {
      T.manualSeed(61);
      const base = new Linear(6, 4);
      const layer = new LoHaLinear(base).eval();
      layer.updateLayer("default", settings({ r: 2, alpha: 3, initWeights: true }));
      const f = layer.factors("default");
      assert.ok(values(f.w2b).every((v) => v === 0));
      for (const [t, fanIn] of [
        [f.w1a, 2],
        [f.w1b, 6],
        [f.w2a, 2],
      ] as const) {
        const v = values(t);
        assert.ok(v.some((a) => a !== 0) && maxAbs(v) <= 1 / Math.sqrt(fanIn), `bound 1/√${fanIn}`);
      }
      assertSame(run(layer, x()), run(base, x()), "fresh LoHa output");
    },
  );

  it(
    "module_dropout 1 skips the adapter while training (never in eval); rank_dropout drops " +
      "whole rows of ΔW and rescales the kept ones",
    () => {
      T.manualSeed(62);
      const base = new Linear(6, 16);
      const layer = new LoHaLinear(base);
      layer.updateLayer("default", settings({ r: 2, alpha: 2, moduleDropout: 1 }));
      const baseOut = run(base, x());
      layer.train();
      assertSame(run(layer, x()), baseOut, "training with module_dropout 1");
      layer.eval();
      assert.ok(maxAbsDiff(run(layer, x()), baseOut) > 1e-3, "eval applies the adapter");

      layer.updateLayer("default", settings({ r: 2, alpha: 2, rankDropout: 0.5 }));
      const full = xDeltaT(values(x()), lohaDelta(layer, "default", 1), 3, 6, 16);
      layer.train();
      const diff = run(layer, x()).map((v, i) => v - baseOut[i]!);
      // Each output column o is ΔW's row o: dropped (0) or kept and divided by the kept fraction (LoHa always rescales).
      const kept = [...Array(16).keys()].filter((o) => [0, 1, 2].some((r) => Math.abs(diff[r * 16 + o]!) > 1e-6));
      assert.ok(kept.length > 0 && kept.length < 16, `${kept.length} of 16 rows kept`);
      const factor = 16 / kept.length;
      for (let r = 0; r < 3; r++)
        for (let o = 0; o < 16; o++) {
          const want = kept.includes(o) ? full[r * 16 + o]! * factor : 0;
          assert.ok(
            Math.abs(diff[r * 16 + o]! - want) <= 1e-5 * Math.max(1, Math.abs(want)),
            `row ${o}: ${diff[r * 16 + o]} vs ${want}`,
          );
        }
    },
  );
});

describe("LoKr: ΔW = kron(w1, w2) · α/r", () => {
  it("factorization matches peft's (LyCORIS's) examples and picks the split closest to a square", () => {
    assert.deepEqual(factorization(256), [16, 16]);
    assert.deepEqual(factorization(128), [8, 16]);
    assert.deepEqual(factorization(127), [1, 127]);
    assert.deepEqual(factorization(128, 4), [4, 32]);
    assert.deepEqual(factorization(64), [8, 8]);
    assert.deepEqual(factorization(32), [4, 8]);
    assert.deepEqual(factorization(6), [2, 3]);
    assert.deepEqual(factorization(12, 5), [3, 4], "a factor that does not divide bounds m instead");
    // The golden llama-lokr shapes: q_proj 64×64 → w1 [8, 8], w2 [8, 8]; v_proj 32×64 → w1 [4, 8], w2 [8, 8] (r 4: whole factors).
    assert.deepEqual(lokrShape(64, 64, 4, false, -1), { a: 8, b: 8, c: 8, d: 8, useW1: true, useW2: true });
    assert.deepEqual(lokrShape(32, 64, 4, false, -1), { a: 4, b: 8, c: 8, d: 8, useW1: true, useW2: true });
  });

  it("kron by hand: entry (i·b + j, k·d + l) = A[i, k]·B[j, l]", () => {
    const a = randTensor([2, 3], 1),
      b = randTensor([4, 2], 2);
    const av = values(a),
      bv = values(b);
    const got = values(kron(a, b));
    const want: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++)
        for (let k = 0; k < 3; k++) for (let l = 0; l < 2; l++) want.push(Math.fround(av[i * 3 + k]! * bv[j * 2 + l]!));
    assertSame(got, want, "kron");
  });

  /** ΔW [out, in] of a LoKr adapter by hand in float64 from its stored factors. */
  function lokrDelta(layer: LoKrLinear, name: string, scale: number): number[] {
    const { a, b, c, d } = layer.shapes.get(name)!;
    const p = (n: string) => layer.getTensor(`${n}.${name}`);
    const factor = (whole: string, fa: string, fb: string, rows: number, cols: number) => {
      const w = (layer as unknown as Record<string, Module>)[whole]!.ownParameter(name);
      if (w) return values(w);
      const A = p(fa),
        B = p(fb);
      return mm(values(A), values(B), rows, A.shape[1]!, cols);
    };
    const w1 = factor("lokr_w1", "lokr_w1_a", "lokr_w1_b", a, c);
    const w2 = factor("lokr_w2", "lokr_w2_a", "lokr_w2_b", b, d);
    const out = new Array<number>(a * b * c * d);
    for (let i = 0; i < a; i++)
      for (let j = 0; j < b; j++)
        for (let k = 0; k < c; k++)
          for (let l = 0; l < d; l++) {
            out[(i * b + j) * (c * d) + k * d + l] = w1[i * c + k]! * w2[j * d + l]! * scale;
          }
    return out;
  }

  const cases: {
    what: string;
    out: number;
    inF: number;
    s: Partial<LycorisSettings> & { r: number; alpha: number; decomposeBoth?: boolean; decomposeFactor?: number };
    params: Record<string, number[]>;
  }[] = [
    {
      what: "Linear 6 → 4, r 4: whole w1 [2, 2] and w2 [2, 3]",
      out: 4,
      inF: 6,
      s: { r: 4, alpha: 2 },
      params: { lokr_w1: [2, 2], lokr_w2: [2, 3] },
    },
    {
      what: "Linear 6 → 4, r 1: w2 = w2_a [2, 1]·w2_b [1, 3]",
      out: 4,
      inF: 6,
      s: { r: 1, alpha: 3 },
      params: { lokr_w1: [2, 2], lokr_w2_a: [2, 1], lokr_w2_b: [1, 3] },
    },
    {
      what: "Linear 16 → 8, r 1, decompose_both: w1 = w1_a [2, 1]·w1_b [1, 4], w2 = w2_a [4, 1]·w2_b [1, 4]",
      out: 8,
      inF: 16,
      s: { r: 1, alpha: 1, decomposeBoth: true },
      params: { lokr_w1_a: [2, 1], lokr_w1_b: [1, 4], lokr_w2_a: [4, 1], lokr_w2_b: [1, 4] },
    },
    {
      what: "Linear 12 → 8, decompose_factor 2: out 2×4, in 2×6",
      out: 8,
      inF: 12,
      s: { r: 8, alpha: 4, decomposeFactor: 2 },
      params: { lokr_w1: [2, 2], lokr_w2: [4, 6] },
    },
  ];
  for (const c of cases) {
    it(`${c.what}: out − base(x) = x·ΔWᵀ with ΔW by hand; merge adds ΔW, unmerge restores W`, () => {
      T.manualSeed(70);
      const base = new Linear(c.inF, c.out);
      const w0 = values(base.weight);
      const layer = new LoKrLinear(base).eval();
      layer.updateLayer("default", {
        ...settings(c.s),
        decomposeBoth: c.s.decomposeBoth ?? false,
        decomposeFactor: c.s.decomposeFactor ?? -1,
      } as LycorisSettings);
      const shapes = Object.fromEntries(
        layer
          .namedParameters()
          .filter(([n]) => n.startsWith("lokr_"))
          .map(([n, t]) => [n.replace(".default", ""), t.shape]),
      );
      assert.deepEqual(shapes, c.params);
      const x = () => randTensor([3, c.inF], 8);
      const delta = lokrDelta(layer, "default", c.s.alpha / c.s.r);
      assert.ok(maxAbs(delta) > 0.01, "a non-trivial ΔW");
      const baseOut = run(base, x());
      assertClose(
        run(layer, x()).map((v, i) => v - baseOut[i]!),
        xDeltaT(values(x()), delta, 3, c.inF, c.out),
        1e-5,
        1e-5,
        "out − base",
      );
      layer.merge();
      assertClose(
        values(base.weight),
        w0.map((w, i) => w + delta[i]!),
        1e-6,
        1e-6,
        "merged weight",
      );
      layer.unmerge();
      assertClose(values(base.weight), w0, 4 * EPS * (maxAbs(w0) + maxAbs(delta)), 0, "unmerged weight");
    });
  }

  it(
    'init_weights: true zeroes w1 (or w1_a), "lycoris" zeroes w2 (or w2_b) — both give ΔW = 0 ' +
      "— false leaves all random",
    () => {
      const zeroOf = (init: boolean | string, r: number) => {
        T.manualSeed(71);
        const base = new Linear(16, 8);
        const layer = new LoKrLinear(base).eval();
        layer.updateLayer("default", {
          ...settings({ r, alpha: 1, initWeights: init }),
          decomposeBoth: true,
          decomposeFactor: -1,
        } as LycorisSettings);
        const x = randTensor([2, 16], 9);
        const sameAsBase = maxAbsDiff(run(layer, x), run(base, x)) === 0;
        const zero = layer
          .namedParameters()
          .filter(([, t]) => values(t).every((v) => v === 0))
          .map(([n]) => n.replace(".default", ""))
          .sort();
        return { zero, sameAsBase };
      };
      assert.deepEqual(zeroOf(true, 8), { zero: ["lokr_w1"], sameAsBase: true });
      assert.deepEqual(zeroOf("lycoris", 8), { zero: ["lokr_w2"], sameAsBase: true });
      assert.deepEqual(zeroOf(true, 1), { zero: ["lokr_w1_a"], sameAsBase: true });
      assert.deepEqual(zeroOf("lycoris", 1), { zero: ["lokr_w2_b"], sameAsBase: true });
      assert.deepEqual(zeroOf(false, 1), { zero: [], sameAsBase: false });
    },
  );

  it("rank_dropout without rank_dropout_scale drops rows of ΔW and leaves the kept ones as they are", () => {
    T.manualSeed(72);
    const base = new Linear(6, 16);
    const layer = new LoKrLinear(base);
    layer.updateLayer("default", {
      ...settings({ r: 8, alpha: 8, rankDropout: 0.5 }),
      decomposeBoth: false,
      decomposeFactor: -1,
    } as LycorisSettings);
    const x = () => randTensor([3, 6], 10);
    const full = xDeltaT(values(x()), lokrDelta(layer, "default", 1), 3, 6, 16);
    const baseOut = run(base, x());
    layer.train();
    const diff = run(layer, x()).map((v, i) => v - baseOut[i]!);
    let kept = 0;
    for (let o = 0; o < 16; o++) {
      const col = [0, 1, 2].map((r) => diff[r * 16 + o]!);
      const want = [0, 1, 2].map((r) => full[r * 16 + o]!);
      const isKept = col.some((v) => Math.abs(v) > 1e-6);
      if (isKept) kept++;
      assertClose(col, isKept ? want : [0, 0, 0], 1e-5, 1e-5, `row ${o}`);
    }
    assert.ok(kept > 0 && kept < 16, `${kept} of 16 rows kept`);
  });
});

describe("LoHa / LoKr: injection", () => {
  it("LLaMA q/v: the golden shapes; rank_pattern / alpha_pattern per module (looked up on their own)", () => {
    const loha = getPeftModel(
      llama(),
      LoHaConfig({
        task_type: "CAUSAL_LM",
        r: 4,
        alpha: 8,
        target_modules: ["q_proj", "v_proj"],
        rank_pattern: { "layers\\.1\\.self_attn\\.q_proj": 2 },
        alpha_pattern: { v_proj: 3 },
      }),
    );
    const got = Object.fromEntries(
      adapterLayers(loha, LoHaLinear).map(([k, l]) => [
        k,
        [l.r.get("default"), l.alpha.get("default"), l.scaling.get("default"), l.factors("default").w1a.shape],
      ]),
    );
    assert.deepEqual(got, {
      "model.layers.0.self_attn.q_proj": [4, 8, 2, [32, 4]],
      "model.layers.0.self_attn.v_proj": [4, 3, 0.75, [16, 4]],
      "model.layers.1.self_attn.q_proj": [2, 8, 4, [32, 2]],
      "model.layers.1.self_attn.v_proj": [4, 3, 0.75, [16, 4]],
    });
    const lokr = getPeftModel(
      llama(),
      LoKrConfig({ task_type: "CAUSAL_LM", r: 4, alpha: 8, target_modules: ["q_proj", "v_proj"] }),
    );
    const lokrShapes = Object.fromEntries(
      lokr
        .namedParameters()
        .filter(([n]) => n.includes("lokr_"))
        .map(([n, t]) => [n, t.shape]),
    );
    // q_proj 32×32 → 4·8 × 4·8 (r 4 ≥ 8/2: whole factors); v_proj 16×32 → 4·4 × 4·8.
    assert.deepEqual(lokrShapes["base_model.model.model.layers.0.self_attn.q_proj.lokr_w1.default"], [4, 4]);
    assert.deepEqual(lokrShapes["base_model.model.model.layers.0.self_attn.q_proj.lokr_w2.default"], [8, 8]);
    assert.deepEqual(lokrShapes["base_model.model.model.layers.0.self_attn.v_proj.lokr_w1.default"], [4, 4]);
    assert.deepEqual(lokrShapes["base_model.model.model.layers.0.self_attn.v_proj.lokr_w2.default"], [4, 8]);
  });

  it(
    "fresh adapters give the base outputs exactly; GPT-2's Conv1D and missing target_modules " +
      "are clear errors that leave the model untouched",
    () => {
      for (const config of [
        LoHaConfig({ task_type: "CAUSAL_LM", r: 4, target_modules: "all-linear" }),
        LoKrConfig({ task_type: "CAUSAL_LM", r: 4, target_modules: "all-linear" }),
      ]) {
        const model = llama();
        const before = logits(model as unknown as Forwardable);
        const peft = getPeftModel(model, config);
        assert.equal(
          peft
            .getBaseModel()
            .namedModules()
            .filter(([, m]) => m instanceof LoHaLinear || m instanceof LoKrLinear).length,
          14,
          `${config.peft_type}: 7 linear layers × 2 (not lm_head)`,
        );
        assertSame(logits(peft), before, `${config.peft_type}: fresh adapter`);
      }
      for (const [config, name] of [
        [LoHaConfig({ target_modules: ["c_attn"] }), "LoHa"],
        [LoKrConfig({ target_modules: ["c_attn"] }), "LoKr"],
      ] as const) {
        const model = gpt2();
        assert.throws(
          () => getPeftModel(model, config),
          new RegExp(`transformer\\.h\\.0\\.attn\\.c_attn is GPT-2's Conv1D, which ${name} does not support`),
        );
        assert.ok(!model.namedModules().some(([, m]) => m instanceof LoHaLinear || m instanceof LoKrLinear));
        assert.throws(
          () => getPeftModel(llama(), { ...config, target_modules: null }),
          new RegExp(`Please specify \`target_modules\` in the ${name} config`),
        );
      }
      assert.throws(() => LoHaConfig({ r: 0 }), /`r` must be an integer ≥ 1, got 0/);
      assert.throws(() => LoKrConfig({ init_weights: "olora" as never }), /init_weights/);
      assert.throws(
        () => LoHaConfig({ layers_pattern: "layers" }),
        /When `layers_pattern` is specified, `layers_to_transform` must also be specified/,
      );
      assert.throws(
        () => LoKrConfig({ rank_pattern: { q_proj: 0 } }),
        /`rank_pattern` must be an object whose values are each an integer ≥ 1, got \{"q_proj":0\}/,
      );
    },
  );

  it(
    "configFromJson fills defaults and keeps unknown fields; several adapters switch; " + "deleteAdapter removes one",
    () => {
      const c = configFromJson({ peft_type: "LOKR", target_modules: ["q_proj"], future_field: 1 });
      assert.equal(c["decompose_factor"], -1);
      assert.equal(c["future_field"], 1);
      const peft = getPeftModel(
        llama(),
        LoHaConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: ["q_proj"], init_weights: false }),
        "a",
      );
      const onlyA = logits(peft);
      peft.addAdapter(
        "b",
        LoHaConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: ["q_proj", "v_proj"], init_weights: false }),
      );
      assertSame(logits(peft), onlyA, "b added inactive");
      peft.setAdapter("b");
      const onlyB = logits(peft);
      assert.ok(maxAbsDiff(onlyA, onlyB) > 1e-3);
      const trainable = peft
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([n]) => n);
      assert.ok(
        trainable.length === 16 && trainable.every((n) => n.includes("hada_") && n.endsWith(".b")),
        trainable.join(", "),
      );
      peft.deleteAdapter("b");
      assert.deepEqual(peft.activeAdapters, ["a"]);
      assertSame(logits(peft), onlyA, "after deleting b");
      assert.ok(!peft.namedParameters().some(([n]) => n.endsWith(".b")));
    },
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Training, saving, loading

const METHODS: {
  name: string;
  model: () => PreTrainedModel;
  config: () => PeftConfig;
  isAdapter: RegExp;
  trainable: number;
  lr: number;
  ratio: number;
}[] = [
  {
    // GPT-2: c_attn (32 → 96) [96, 1] and mlp.c_proj (128 → 32) [1, 128] in two blocks.
    name: "IA3",
    model: () => gpt2(21, { initializer_range: 0.2 }),
    config: () => IA3Config({ task_type: "CAUSAL_LM" }),
    isAdapter: /\.ia3_l\.default$/,
    trainable: 2 * (96 + 128),
    lr: 5e-2,
    ratio: 0.7,
  },
  {
    // LLaMA q_proj 32 → 32 and v_proj 32 → 16 at r 4: 2·r·(out + in) each, two layers.
    name: "LoHa",
    model: () => llama(22, { initializer_range: 0.2 }),
    config: () => LoHaConfig({ task_type: "CAUSAL_LM", r: 4, alpha: 8, target_modules: ["q_proj", "v_proj"] }),
    isAdapter: /\.hada_w[12]_[ab]\.default$/,
    trainable: 2 * (2 * 4 * (32 + 32) + 2 * 4 * (16 + 32)),
    lr: 1e-2,
    ratio: 0.5,
  },
  {
    // All 7 linear layers; w1 [a, c] + w2 [b, d] (32: 4·8, 64: 8·8): q 32×32: 16+64, k/v 16×32: 16+32, o 32×32: 80,
    // gate/up 64×32: 32+64, down 32×64: 32+64 → 80+48+48+80+96+96+96 per layer.
    name: "LoKr",
    model: () => llama(22, { initializer_range: 0.2 }),
    config: () => LoKrConfig({ task_type: "CAUSAL_LM", r: 4, alpha: 8, target_modules: "all-linear" }),
    isAdapter: /\.lokr_w[12]\.default$/,
    trainable: 2 * (80 + 48 + 48 + 80 + 96 + 96 + 96),
    lr: 1e-2,
    ratio: 0.5,
  },
];

describe("IA3, LoHa, LoKr: training", () => {
  for (const m of METHODS) {
    it(
      `${m.name}: only adapter parameters are trainable, get gradients and AdamW state; frozen ` +
        `weights stay bit-identical`,
      () => {
        const peft = getPeftModel(m.model(), m.config());
        const named = peft.namedParameters();
        for (const [name, p] of named) assert.equal(p.requiresGrad, m.isAdapter.test(name), `requiresGrad of ${name}`);
        assert.equal(peft.getNbTrainableParameters()[0], m.trainable);
        const all = named.reduce((s, [, p]) => s + p.size, 0);
        assert.equal(
          peft.trainableParametersLine(),
          `trainable params: ${m.trainable.toLocaleString("en-US")} || all params: ` +
            `${all.toLocaleString("en-US")} || trainable%: ${((100 * m.trainable) / all).toFixed(4)}`,
        );
        const before = new Map(named.map(([n, p]) => [n, values(p)]));
        const opt = new AdamW(peft.parameters(), { lr: 1e-2 });
        peft.train();
        T.tidy(() => peft.forward({ inputIds: IDS(), labels: IDS() }).loss!.backward());
        for (const [name, p] of named) assert.equal(p.grad !== null, m.isAdapter.test(name), `gradient of ${name}`);
        // The factors that start at zero (LoHa's w2_b, LoKr's w1) get a gradient through the others, so training starts.
        const zeroStart = named.filter(([n]) => m.isAdapter.test(n) && before.get(n)!.every((v) => v === 0));
        assert.equal(zeroStart.length, m.name === "IA3" ? 0 : m.name === "LoHa" ? 4 : 14);
        for (const [name, p] of zeroStart)
          assert.ok(
            values(p.grad!).some((v) => v !== 0),
            `non-zero gradient of ${name}`,
          );
        opt.step();
        for (const [name, p] of named) {
          assert.equal(opt.getState(p) !== undefined, m.isAdapter.test(name), `AdamW state of ${name}`);
          if (!m.isAdapter.test(name)) assertSame(values(p), before.get(name)!, `frozen ${name}`);
        }
        for (const [name, p] of zeroStart)
          assert.ok(
            values(p).some((v) => v !== 0),
            `${name} moved off zero`,
          );
        opt.zeroGrad();
        opt.dispose();
      },
    );

    it(
      `${m.name}: learns a fixed toy dataset (loss < ${m.ratio} of its start in 60 AdamW steps); ` +
        `disabled = base; merged ≈ adapter; saved adapter reloads to the same outputs`,
      () => {
        const base = m.model();
        const fresh = cloneModule(base);
        const baseLogits = logits(base as unknown as Forwardable);
        const peft = getPeftModel(base, m.config());
        peft.train();
        const ids = toyIds();
        const opt = new AdamW(peft.parameters(), { lr: m.lr });
        const losses = trainSteps(peft, opt, ids, 60);
        opt.dispose();
        assert.ok(losses.every(Number.isFinite));
        assert.ok(losses[59]! < m.ratio * losses[0]!, `loss ${losses[0]} → ${losses[59]}`);
        peft.eval();
        const trained = logits(peft);
        assert.ok(maxAbsDiff(trained, baseLogits) > 0.1);
        assertSame(
          peft.withAdapterDisabled(() => logits(peft)),
          baseLogits,
          "disabled",
        );

        const dir = mkdtempSync(join(tmpdir(), `peft-ts-${m.name}-`));
        peft.savePretrained(dir);
        const saved = loadSafetensors(join(dir, "adapter_model.safetensors"));
        assert.equal([...saved.keys()].length, peft.namedParameters().filter(([n]) => m.isAdapter.test(n)).length);
        for (const k of saved.keys())
          assert.ok(k.startsWith("base_model.model.") && !k.includes(".default") && !k.endsWith(".weight"), k);
        const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
        assert.equal(config["peft_type"], m.config().peft_type);
        assert.equal(config["inference_mode"], true);
        const loaded = PeftModel.fromPretrained(cloneModule(fresh), dir);
        assertSame(logits(loaded), trained, "reloaded adapter");
        assert.equal(loaded.getNbTrainableParameters()[0], 0, "loaded frozen");
        assert.equal(
          PeftModel.fromPretrained(cloneModule(fresh), dir, { isTrainable: true }).getNbTrainableParameters()[0],
          m.trainable,
        );

        // Merged: the same products in another rounding order (IA3: (x·W)⊙l vs x·(W⊙l)); the logits' scale is O(10).
        peft.mergeAdapter();
        assertClose(logits(peft), trained, 1e-5 * Math.max(1, maxAbs(trained)), 1e-4, "merged");
        // Disabling a merged model unmerges it first (as in HF): the base outputs up to the unmerge's rounding.
        assertClose(
          peft.withAdapterDisabled(() => logits(peft)),
          baseLogits,
          1e-5 * Math.max(1, maxAbs(baseLogits)),
          1e-4,
          "disabled after merging",
        );
        assertClose(logits(peft), trained, 1e-5 * Math.max(1, maxAbs(trained)), 1e-4, "unmerged again");
        const plain = loaded.mergeAndUnload();
        assert.ok(
          !plain
            .namedModules()
            .some(([, mod]) => mod instanceof IA3Linear || mod instanceof LoHaLinear || mod instanceof LoKrLinear),
        );
        assert.deepEqual(
          [...plain.stateDict().keys()].sort(),
          [...fresh.stateDict().keys()].sort(),
          "merged model has the base's keys",
        );
        assertClose(
          logits(plain as unknown as Forwardable),
          trained,
          1e-5 * Math.max(1, maxAbs(trained)),
          1e-4,
          "mergeAndUnload",
        );
      },
    );
  }

  it("IA3Model is the tuner of an IA3 PeftModel (HF's base_model)", () => {
    assert.ok(getPeftModel(llama(), IA3Config({ task_type: "CAUSAL_LM" })).base_model instanceof IA3Model);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The peft command

describe("peft CLI with IA3, LoHa, LoKr", () => {
  it("`peft train` accepts each method's config, `peft generate` uses the adapter and `peft merge` folds it in", () => {
    const ws = cliWorkspace("peft-ts-ia3-lycoris-cli-", LLAMA);
    const methods: Record<string, { fields: Record<string, unknown>; key: RegExp }> = {
      IA3: { fields: {}, key: /\.(q_proj|v_proj|down_proj)\.ia3_l$/ },
      LOHA: {
        fields: { r: 2, alpha: 4, target_modules: ["q_proj", "v_proj"] },
        key: /\.(q_proj|v_proj)\.hada_w[12]_[ab]$/,
      },
      LOKR: {
        fields: { r: 2, alpha: 4, target_modules: ["q_proj", "v_proj"], init_weights: "lycoris" },
        key: /\.(q_proj|v_proj)\.lokr_w[12](_[ab])?$/,
      },
    };
    trainGenerateMerge(ws, methods);
  });
});
