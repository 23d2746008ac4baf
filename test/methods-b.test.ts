/**
 * HRA, Bone (and Bat) and LN tuning against the goldens of scripts/make_method_fixtures_b.py (peft 0.15.2): Python's
 * adapters reproduce their logits here (on, disabled, merged, greedy), adapters made here save Python's tensor names,
 * shapes and config fields and load back (and in Python, with `--check-ts-adapters`); plus the math checked
 * independently (orthogonality, exact unmerge, finite-difference gradients), peft's refusals, and training.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../src/errors.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { writeSafetensors, loadSafetensors } from "../src/io/safetensors.js";
import { Linear } from "../src/nn/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { BaseTunerLayer } from "../src/peft/tuners/tuner-layer.js";
import { AdamW } from "../src/optim/index.js";
import {
  BoneConfig,
  BoneLinear,
  HRAConfig,
  HRALinear,
  LNTuningConfig,
  LNTuningLayer,
  PeftModel,
  PolyConfig,
  PolyRouter,
  FourierFTConfig,
  VeraConfig,
  OFTConfig,
  BOFTConfig,
  configFromJson,
  getPeftModel,
  type PeftConfig,
} from "../src/peft/index.js";
import * as T from "../src/tensor/index.js";
import { inverseF64 } from "../src/tensor/linalg.js";
import { GoldenSet, maxAbsDiff } from "./golden.js";
import { gradCheck, randTensor } from "./helpers.js";
import { baseModel, casesOf, checkFreshCase, checkLoadedCase, forwardInputs, inputsFor } from "./peft-cases.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";
import { IDS, LLAMA, gpt2, llama, logits, toyIds, trainSteps } from "./tiny-models.js";

const set = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-b/", import.meta.url)));
const TYPES = ["LN_TUNING", "HRA", "BONE", "POLY"];

/** Overwrite every trainable tensor with a fixed wave, so that a fresh adapter acts. */
function wave(peft: PeftModel): void {
  T.noGrad(() => {
    for (const [, p] of peft.namedParameters()) {
      if (p.requiresGrad)
        p.copy_(
          T.tensor(
            Float32Array.from(p.dataSync(), (v, i) => v + Math.sin(i + 1) * 0.1),
            p.shape,
          ),
        );
    }
  });
}

describe(
  "HRA, Bone, LN tuning and Poly against Python peft 0.15.2 (Poly through the script's " + "hand-written forward)",
  () => {
    const cases = casesOf(TYPES, set);
    it("every method has golden cases", () =>
      assert.deepEqual([...new Set(cases.map(([, c]) => c.peft_type))].sort(), [...TYPES].sort()));
    for (const [name, c] of cases) {
      it(`${name}: Python's adapter reproduces its outputs here (on, disabled, merged, greedy)`, () =>
        checkLoadedCase(name, c, { set }));
      it(`${name}: an adapter made here saves Python's tensor names, shapes and config fields`, () =>
        checkFreshCase(name, c, { set }));
    }

    it(
      "adapters made here reload to the same outputs and merge to them; they go to " +
        "$PEFT_TS_ADAPTERS for `make_method_fixtures_b.py --check-ts-adapters`",
      () => {
        const out = process.env["PEFT_TS_ADAPTERS"] ?? mkdtempSync(join(tmpdir(), "peft-ts-methods-b-"));
        for (const [name, c] of cases) {
          const peft = getPeftModel(baseModel(c, set), configFromJson({ ...c.config, peft_type: c.peft_type }));
          wave(peft);
          const dir = join(out, name);
          peft.eval().savePretrained(dir);
          const inputs = forwardInputs(inputsFor(name, c, set), false);
          const got = T.noGrad(() => peft.forward(inputs)).logits;
          const reloaded = PeftModel.fromPretrained(baseModel(c, set), dir);
          assert.equal(
            maxAbsDiff(T.noGrad(() => reloaded.forward(inputs)).logits, got),
            0,
            `${name}: reloaded adapter`,
          );
          assert.ok(
            maxAbsDiff(got, T.noGrad(() => reloaded.withAdapterDisabled(() => reloaded.forward(inputs))).logits) > 1e-3,
            `${name}: the adapter acts`,
          );
          if (c.peft_type !== "POLY") {
            const merged = (T.noGrad(() => reloaded.mergeAndUnload().forward(inputs)) as ModelOutput).logits;
            assert.ok(maxAbsDiff(merged, got) < 1e-4, `${name}: merged logits`);
          }
          writeSafetensors(join(dir, "logits.safetensors"), new Map([["logits", got]]), { format: "pt" });
        }
      },
    );
  },
);

/** The gradient of a layer's output with respect to its adapter's parameter matches finite differences. */
function checkAdapterGradient(layer: HRALinear | BoneLinear, x: T.Tensor): void {
  gradCheck(
    (v) => {
      layer.adapterWeights.registerParameter("default", v);
      return layer.forward(x);
    },
    [T.contiguous(layer.param("default"), true)],
  );
}

describe("HRA: the math", () => {
  const hra = (r: number, applyGS: boolean, seed: number) => {
    T.manualSeed(seed);
    const layer = new HRALinear(new Linear(6, 5));
    layer.updateLayer("default", r, applyGS, false);
    return layer;
  };

  it("H is orthogonal (H·Hᵀ = I) and equals the product of the reflections I − 2ûûᵀ computed by hand", () => {
    for (const applyGS of [false, true]) {
      const layer = hra(3, applyGS, 1);
      const h = layer.orthogonal("default");
      const hht = T.matmul(h, T.transpose(h)).dataSync();
      for (let i = 0; i < 6; i++)
        for (let j = 0; j < 6; j++)
          assert.ok(Math.abs(hht[i * 6 + j]! - (i === j ? 1 : 0)) < 1e-5, `GS ${applyGS}: H·Hᵀ[${i},${j}]`);
      if (applyGS) continue;
      const u = layer.param("default").dataSync();
      let want: number[] = Array.from({ length: 36 }, (_, k) => (Math.floor(k / 6) === k % 6 ? 1 : 0));
      for (let col = 0; col < 3; col++) {
        const v = Array.from({ length: 6 }, (_, i) => u[i * 3 + col]!);
        const n = Math.hypot(...v);
        const refl = Array.from(
          { length: 36 },
          (_, k) => (Math.floor(k / 6) === k % 6 ? 1 : 0) - (2 * v[Math.floor(k / 6)]! * v[k % 6]!) / (n * n),
        );
        want = want.map((_, k) => {
          const i = Math.floor(k / 6),
            j = k % 6;
          let s = 0;
          for (let l = 0; l < 6; l++) s += want[i * 6 + l]! * refl[l * 6 + j]!;
          return s;
        });
      }
      assert.ok(maxAbsDiff(h, T.tensor(want, [6, 6])) < 1e-5);
    }
  });

  it("init_weights with an even r starts at H = I (the adapter changes nothing); merge then unmerge restores W", () => {
    T.manualSeed(3);
    const layer = new HRALinear(new Linear(6, 5));
    layer.updateLayer("default", 4, false, true);
    assert.ok(
      maxAbsDiff(
        layer.orthogonal("default"),
        T.tensor(
          Array.from({ length: 36 }, (_, k) => (Math.floor(k / 6) === k % 6 ? 1 : 0)),
          [6, 6],
        ),
      ) < 1e-5,
    );
    const random = hra(3, false, 4);
    const w0 = T.contiguous(random.weight, true);
    const x = randTensor([2, 6], 5, -1, 1);
    const y = random.forward(x);
    random.merge();
    assert.ok(maxAbsDiff((random.base_layer as Linear).forward(x), y) < 1e-5, "merged forward");
    random.unmerge();
    assert.ok(maxAbsDiff(random.weight, w0) < 1e-5, "unmerged weight");
  });

  it("gradients of the reflection vectors match finite differences (plain and Gram–Schmidt)", () => {
    for (const applyGS of [false, true]) {
      const layer = hra(2, applyGS, 6);
      checkAdapterGradient(layer, randTensor([3, 6], 7, -1, 1));
    }
  });
});

describe("Bone: the math", () => {
  const bone = (r: number, init: boolean | "bat", inF: number, outF: number, seed: number) => {
    T.manualSeed(seed);
    const layer = new BoneLinear(new Linear(inF, outF));
    layer.updateLayer("default", r, init);
    T.noGrad(() => layer.param("default").copy_(randTensor([...layer.param("default").shape], seed + 1, -0.5, 0.5)));
    return layer;
  };

  it("Bone's forward is x·(W + tiled Bᵀ)ᵀ + b computed by hand, also when r does not divide in_features", () => {
    for (const [r, inF] of [
      [2, 6],
      [4, 6],
    ] as const) {
      const layer = bone(r, true, inF, 3, 10 + r);
      const w = layer.weight.dataSync(),
        b = layer.param("default").dataSync(),
        bias = (layer.base_layer as Linear).bias!.dataSync();
      const x = randTensor([2, inF], 12, -1, 1);
      const xs = x.dataSync();
      const want = Array.from({ length: 2 * 3 }, (_, k) => {
        const row = Math.floor(k / 3),
          o = k % 3;
        let s = bias[o]!;
        for (let c = 0; c < inF; c++) s += xs[row * inF + c]! * (w[o * inF + c]! + b[(c % r) * 3 + o]!);
        return s;
      });
      assert.ok(maxAbsDiff(layer.forward(x), T.tensor(want, [2, 3])) < 1e-5, `r ${r}, in ${inF}`);
    }
  });

  it("Bat: W'_IJ = W_IJ + W_IJ·B_I + B_I by hand; merge then unmerge restores W through (I + B_I)⁻¹", () => {
    const r = 2,
      inF = 4,
      outF = 4;
    const layer = bone(r, "bat", inF, outF, 20);
    const w = layer.weight.dataSync(),
      b = layer.param("default").dataSync();
    const want = new Float32Array(outF * inF);
    for (let row = 0; row < outF; row++) {
      for (let col = 0; col < inF; col++) {
        const I = Math.floor(row / r),
          a = row % r,
          J = Math.floor(col / r),
          c = col % r;
        let s = w[row * inF + col]! + b[I * r * r + a * r + c]!;
        for (let l = 0; l < r; l++) s += w[row * inF + J * r + l]! * b[I * r * r + l * r + c]!;
        want[row * inF + col] = s;
      }
    }
    const w0 = T.contiguous(layer.weight, true);
    const x = randTensor([3, inF], 21, -1, 1);
    const y = layer.forward(x);
    layer.merge();
    assert.ok(maxAbsDiff(layer.weight, T.tensor(want, [outF, inF])) < 1e-5, "merged weight");
    assert.ok(maxAbsDiff((layer.base_layer as Linear).forward(x), y) < 1e-5, "merged forward");
    layer.unmerge();
    assert.ok(maxAbsDiff(layer.weight, w0) < 1e-5, "unmerged weight");
  });

  it("inverseF64 inverts a matrix (A·A⁻¹ = I) and refuses a singular one", () => {
    const a = [4, 7, 2, 6, 1, 3, 5, 2, 9];
    const inv = inverseF64(a, 3);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) {
        let s = 0;
        for (let l = 0; l < 3; l++) s += a[i * 3 + l]! * inv[l * 3 + j]!;
        assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12);
      }
    assert.throws(() => inverseF64([1, 2, 2, 4], 2), /singular/);
  });

  it("gradients of the blocks match finite differences (Bone with padding, Bat)", () => {
    for (const [r, init, inF, outF] of [
      [4, true, 6, 3],
      [2, "bat", 4, 4],
    ] as const) {
      const layer = bone(r, init, inF, outF, 30);
      checkAdapterGradient(layer, randTensor([3, inF], 31, -1, 1));
    }
  });
});

describe("the Linear-layer methods share one host's rules", () => {
  const configs = (targets: string | string[]): [string, PeftConfig][] => [
    ["FourierFT", FourierFTConfig({ n_frequency: 64, target_modules: targets })],
    ["VeRA", VeraConfig({ r: 4, target_modules: targets })],
    ["OFT", OFTConfig({ r: 4, target_modules: targets })],
    ["BOFT", BOFTConfig({ boft_block_size: 4, target_modules: targets })],
    ["HRA", HRAConfig({ r: 2, target_modules: targets })],
    ["Bone", BoneConfig({ r: 4, target_modules: targets })],
    ["Poly", PolyConfig({ r: 2, n_tasks: 2, target_modules: targets })],
  ];

  it('"all-linear" adapts every Linear but the output head, for each of them', () => {
    const linears = [...llama().namedModules()].filter(([k, m]) => m instanceof Linear && k !== "lm_head");
    assert.equal(linears.length, 14, "7 projections in each of 2 layers");
    for (const [name, config] of configs("all-linear")) {
      const peft = getPeftModel(llama(), config);
      const adapted = [...peft.namedModules()].filter(([, m]) => m instanceof BaseTunerLayer);
      assert.equal(adapted.length, linears.length, name);
    }
  });

  it("each refuses a quantised Linear by name, leaving the model untouched", () => {
    const nf4 = { load_in_4bit: true, bnb_4bit_quant_type: "nf4" } as const;
    for (const [name, config] of configs(["q_proj"])) {
      const model = AutoModelForCausalLM.fromConfig(LLAMA, { quantizationConfig: nf4 });
      const before = [...model.namedModules()].length;
      // VeRA sizes its shared projections first, and finds no layer it can take (peft's message).
      const refusal = name === "VeRA" ? /No layers types compatible with VeRA/ : /q_proj is quantised/;
      assert.throws(() => getPeftModel(model, config), refusal, name);
      assert.equal([...model.namedModules()].length, before, `${name} changed the model`);
    }
  });
});

describe("HRA, Bone and LN tuning: what peft refuses, and other rules", () => {
  it("HRA and Bone refuse GPT-2's Conv1D as peft does, leaving the model untouched", () => {
    for (const config of [
      HRAConfig({ r: 2, target_modules: ["c_attn"] }),
      BoneConfig({ r: 4, target_modules: ["c_attn"] }),
    ]) {
      assert.throws(() => getPeftModel(gpt2(), config), /Conv1D, which (HRA|Bone) does not support/);
    }
  });

  it(
    'bias other than "none" is refused (peft 0.15.2 would train the biases but not save them); ' + "so are bad fields",
    () => {
      assert.throws(
        () => HRAConfig({ bias: "all" }),
        (e) => e instanceof ConfigError && /bias/.test(e.message),
      );
      assert.throws(
        () => BoneConfig({ bias: "bone_only" }),
        (e) => e instanceof ConfigError && /bias/.test(e.message),
      );
      assert.throws(() => BoneConfig({ init_weights: "pissa" as never }), ConfigError);
      assert.throws(() => HRAConfig({ r: 0 }), ConfigError);
      assert.throws(() => HRAConfig({ layers_pattern: "layers" }), /layers_to_transform` must also be specified/);
      assert.throws(
        () => BoneConfig({ target_modules: ".*q_proj", layers_to_transform: [0] }),
        /cannot be used when `target_modules` is a str/,
      );
      assert.throws(() => LNTuningConfig({ r: 2 } as never), ConfigError);
    },
  );

  it("Bat needs r dividing both sides of the weight; Bone and Bat adapters cannot share a layer", () => {
    assert.throws(
      () => getPeftModel(llama(), BoneConfig({ r: 5, init_weights: "bat", target_modules: ["q_proj"] })),
      /fully divisible into \[r, r\] blocks/,
    );
    const peft = getPeftModel(llama(), BoneConfig({ r: 4, target_modules: ["q_proj"] }));
    assert.throws(
      () => peft.addAdapter("bat", BoneConfig({ r: 4, init_weights: "bat", target_modules: ["q_proj"] })),
      /cannot be added/,
    );
  });

  it(
    "LN tuning: fresh copies change nothing; one adapter at a time in forward and merge; " +
      "unload restores the original norms",
    () => {
      const model = llama();
      const before = logits(model);
      const peft = getPeftModel(model, LNTuningConfig({ task_type: "CAUSAL_LM" }));
      assert.deepEqual(logits(peft), before);
      assert.ok(
        peft.base_model.model.namedModules().some(([k, m]) => k.endsWith("model.norm") && m instanceof LNTuningLayer),
      );
      peft.addAdapter("other", LNTuningConfig({ task_type: "CAUSAL_LM" }) as PeftConfig);
      wave(peft);
      const one = logits(peft);
      peft.base_model.setAdapter(["default", "other"]);
      assert.throws(() => logits(peft), /more than one adapter at a time/);
      assert.throws(
        () => peft.base_model.capabilities.merge!.merge(["default", "other"]),
        /merging more than one adapter/,
      );
      peft.base_model.setAdapter("default");
      assert.deepEqual(logits(peft), one);
      assert.deepEqual(logits(peft.unload()), before);
    },
  );

  it("an LN tuning default exists only for known model types", () => {
    assert.throws(() => getPeftModel(llama(), LNTuningConfig({ target_modules: ["nope"] })), /nope/);
  });
});

describe("Poly: routing by task", () => {
  const poly = () => {
    const peft = getPeftModel(
      llama(),
      PolyConfig({ task_type: "CAUSAL_LM", r: 2, n_tasks: 3, n_skills: 2, n_splits: 2, init_weights: false }),
    );
    return peft.eval();
  };
  const tasks = (...ids: number[]) => T.tensor(Int32Array.from(ids), [ids.length], "int32");

  it("the router's eval weights are σ(logits) normalised over the skills, computed by hand", () => {
    T.manualSeed(40);
    const router = new PolyRouter(3, 2, 2).eval();
    T.noGrad(() => router.module_logits.copy_(randTensor([3, 4], 41, -2, 2)));
    const logitsOf = router.module_logits.dataSync();
    const got = router.forward(tasks(2, 0)).dataSync();
    [2, 0].forEach((task, row) => {
      for (let split = 0; split < 2; split++) {
        const g = [0, 1].map((s) => 1 / (1 + Math.exp(-logitsOf[task * 4 + split * 2 + s]!)));
        for (let s = 0; s < 2; s++)
          assert.ok(Math.abs(got[row * 4 + split * 2 + s]! - g[s]! / (g[0]! + g[1]! + 1e-12)) < 1e-6);
      }
    });
    assert.throws(() => router.forward(tasks(3)), /Only 3 tasks available\. Found task id = 3/);
  });

  it("each batch row is routed by its own task: a batch equals its rows run alone, and tasks differ", () => {
    const peft = poly();
    wave(peft);
    const ids = IDS();
    const run = (inputIds: T.Tensor, taskIds: T.Tensor) => T.noGrad(() => peft.forward({ inputIds, taskIds })).logits;
    const both = run(ids, tasks(2, 0));
    for (const [row, task] of [
      [0, 2],
      [1, 0],
    ] as const) {
      const alone = run(T.tensor(ids.dataSync().slice(row * 8, row * 8 + 8), [1, 8], "int32"), tasks(task));
      assert.ok(maxAbsDiff(T.contiguous(T.narrow(both, 0, row, 1)), alone) < 1e-5, `row ${row}`);
    }
    assert.ok(maxAbsDiff(run(ids, tasks(1, 1)), run(ids, tasks(2, 2))) > 1e-3, "different tasks, different outputs");
  });

  it("forward and generate need taskIds; Poly adapters cannot be merged", () => {
    const peft = poly();
    assert.throws(() => peft.forward({ inputIds: IDS() }), /Poly needs the task of each batch row: pass taskIds/);
    assert.throws(() => peft.generate({ inputIds: IDS(), maxNewTokens: 2 }), /pass taskIds/);
    assert.equal(peft.generate({ inputIds: IDS(), maxNewTokens: 2, taskIds: tasks(0, 1) }).shape.join(), "2,10");
    assert.throws(() => peft.mergeAndUnload(), /POLY adapters cannot be merged|cannot be merged/);
  });

  it(
    "AdamW steps with per-row tasks lower the loss, also with gradient checkpointing (layers " + "rerun in backward)",
    () => {
      const peft = getPeftModel(
        llama().gradientCheckpointingEnable(),
        PolyConfig({ task_type: "CAUSAL_LM", r: 2, n_tasks: 2, n_skills: 2 }),
      ).train();
      const trainable = peft
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([, p]) => p);
      const opt = new AdamW(trainable, { lr: 0.05 });
      const ids = toyIds();
      const taskIds = tasks(0, 1, 0, 1, 0, 1, 0, 1);
      const losses: number[] = [];
      for (let step = 0; step < 8; step++) {
        losses.push(
          T.tidy(() => {
            const loss = peft.forward({ inputIds: ids, labels: ids, taskIds }).loss!;
            loss.backward();
            opt.step();
            opt.zeroGrad();
            return loss.item();
          }),
        );
      }
      assert.ok(losses[losses.length - 1]! < losses[0]! - 0.01, losses.map((l) => l.toFixed(4)).join(" "));
    },
  );
});

describe("HRA, Bone, LN tuning and Poly train", () => {
  for (const [name, config] of [
    ["HRA", HRAConfig({ task_type: "CAUSAL_LM", r: 4, init_weights: false })],
    ["Bone", BoneConfig({ task_type: "CAUSAL_LM", r: 4, target_modules: ["q_proj", "v_proj", "down_proj"] })],
    ["Bat", BoneConfig({ task_type: "CAUSAL_LM", r: 4, init_weights: "bat", target_modules: ["q_proj", "v_proj"] })],
    ["LN tuning", LNTuningConfig({ task_type: "CAUSAL_LM" })],
  ] as const) {
    it(`${name}: AdamW steps on a toy batch lower the loss and touch only the adapter`, () => {
      const peft = getPeftModel(llama(), config as PeftConfig);
      const frozen = peft
        .namedParameters()
        .filter(([, p]) => !p.requiresGrad)
        .map(([k, p]) => [k, p, Array.from(p.dataSync())] as const);
      const trainable = peft
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([, p]) => p);
      assert.ok(trainable.length > 0);
      const losses = trainSteps(peft.train(), new AdamW(trainable, { lr: 0.05 }), toyIds(), 8);
      // The tiny random model starts near the uniform loss ln 64; each step must lower it.
      const shown = losses.map((l) => l.toFixed(4)).join(" ");
      assert.ok(
        losses.every((l, i) => i === 0 || l < losses[i - 1]!) && losses[losses.length - 1]! < losses[0]! - 0.01,
        `${name}: ${shown}`,
      );
      for (const [k, p, v] of frozen) assert.deepEqual(Array.from(p.dataSync()), v, `${name}: ${k} changed`);
      assert.ok(logits(peft.eval(), () => ({ inputIds: IDS() })).every(Number.isFinite));
    });
  }

  it(
    "`peft train` accepts each method's config and saves its adapter; `peft merge` folds in " + "the mergeable ones",
    () => {
      const ws = cliWorkspace("peft-ts-methods-b-cli-", LLAMA);
      // Poly routes each record by its task_ids; the other methods ignore the field.
      const records = [
        { instruction: "say hello", output: "hello world!", task_ids: 0 },
        { instruction: "whisper", output: "hello", task_ids: 1 },
      ];
      writeFileSync(join(ws.root, "train.json"), JSON.stringify(records));
      const methods: Record<string, { fields: Record<string, unknown>; key: RegExp }> = {
        HRA: { fields: { r: 2 }, key: /\.(q_proj|v_proj)\.hra_u$/ },
        BONE: {
          fields: { r: 4, init_weights: "bat", target_modules: ["q_proj", "v_proj"] },
          key: /\.(q_proj|v_proj)\.bone_block$/,
        },
        LN_TUNING: { fields: {}, key: /\.post_attention_layernorm\.ln_tuning_layers\.weight$/ },
        POLY: {
          fields: { r: 2, n_tasks: 2, n_skills: 2 },
          key: /\.(q_proj|v_proj)\.(poly_lora_[AB]|poly_router\.module_logits)$/,
        },
      };
      for (const [type, { fields, key }] of Object.entries(methods)) {
        trainMethod(ws, type, fields);
        const tensors = [...loadSafetensors(join(ws.root, `out-${type}`, "adapter_model.safetensors")).keys()];
        assert.ok(tensors.length > 0 && tensors.every((k) => key.test(k)), `${type}: ${tensors.join(", ")}`);
        if (type === "POLY") continue; // not mergeable
        const merged = ws.run("merge", "--model", "model", "--adapter", `out-${type}`, "--out", `merged-${type}`);
        assert.equal(merged.status, 0, `${type}: peft merge failed:\n${merged.stderr}`);
      }
    },
  );
});
