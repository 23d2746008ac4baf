/**
 * DiffPruning: the hard-concrete gate and its expected-L0 penalty against the formulas of Louizos et al. written
 * out here in float64 (and a few values worked by hand), the penalty's gradient against finite differences, the
 * layer's forward against a float64 product, magnitude pruning on a hand-made example, learning, save/load and the CLI.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Linear } from "../src/nn/index.js";
import {
  DiffPruningConfig,
  DiffPruningLinear,
  type DiffPruningModel,
  PeftModel,
  expectedL0,
  getPeftModel,
  hardConcreteGate,
} from "../src/peft/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { AdamW } from "../src/optim/index.js";
import { ConfigError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { assertClose, assertSame, gradCheck, mm, tempDirs, transposed, values } from "./helpers.js";
import { IDS, LLAMA, gpt2, logits, trainSteps } from "./tiny-models.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";

const dirs = tempDirs("peft-ts-diffprune-");
after(() => dirs.removeAll());

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
/** Louizos et al.'s hard-concrete gate in float64: β = 2/3, stretched to (−0.1, 1.1), clamped to [0, 1]. */
const gate = (logAlpha: number, u: number | null) =>
  clamp01((u === null ? sigmoid(logAlpha) : sigmoid((Math.log(u / (1 - u)) + logAlpha) * 1.5)) * 1.2 - 0.1);

function cycleIds(): T.Tensor {
  const cycle = [5, 9, 13, 21];
  return T.tensor(
    Int32Array.from({ length: 4 * 16 }, (_, i) => cycle[(Math.floor(i / 16) + i) % 4]!),
    [4, 16],
  );
}

describe("hard-concrete gate", () => {
  it("evaluation gates: clamp(σ(log α)·1.2 − 0.1, 0, 1)", () => {
    const la = [-3, 0, 1, 4];
    const z = values(hardConcreteGate(T.tensor(la, [4]), null));
    // By hand: σ(−3)·1.2 − 0.1 < 0 → 0; σ(0) = 0.5 → 0.5; σ(1) = 0.7310586 → 0.7772703; σ(4)·1.2 − 0.1 > 1 → 1.
    assertClose(z, [0, 0.5, 0.7772703, 1], 1e-6);
    assertClose(
      z,
      la.map((a) => gate(a, null)),
      1e-6,
    );
  });

  it("training gates for given uniform draws", () => {
    const la = [0, 1, -1, 3, -4],
      u = [0.25, 0.5, 0.9, 0.01, 0.99];
    const z = values(hardConcreteGate(T.tensor(la, [5]), T.tensor(u, [5])));
    // By hand for the first: log(0.25/0.75) = −1.0986, ×1.5 = −1.6479, σ = 0.16139, ×1.2 − 0.1 = 0.09367.
    assert.ok(Math.abs(z[0]! - 0.09367) < 1e-4);
    assertClose(
      z,
      la.map((a, i) => gate(a, u[i]!)),
      1e-6,
    );
  });

  it("expected L0 = Σ σ(log α − β·log(−γ/ζ)), and its gradient matches finite differences", () => {
    const la = [-2, 0, 0.5, 3];
    // By hand: −β·log(−γ/ζ) = (2/3)·log(11) = 1.5986; σ(0 + 1.5986) = 1 / (1 + 0.20218) = 0.83182.
    assertClose(values(expectedL0(T.tensor([0], [1]))), [0.83182], 1e-5);
    assertClose(
      values(expectedL0(T.tensor(la, [4]))),
      [la.reduce((s, a) => s + sigmoid(a + (2 / 3) * Math.log(11)), 0)],
      1e-5,
    );
    gradCheck((x) => expectedL0(x), [T.tensor(la, [4])]);
    gradCheck((x) => hardConcreteGate(x, T.tensor([0.3, 0.6, 0.45, 0.2], [4])), [T.tensor([-0.2, 0.1, 0.4, 0.7], [4])]);
  });
});

describe("DiffPruningLinear", () => {
  it("y = x·(W + z ⊙ δ)ᵀ + b with evaluation gates", () => {
    T.manualSeed(3);
    const base = new Linear(4, 3);
    const layer = new DiffPruningLinear(base);
    layer.updateLayer("default", 0);
    const { delta, logAlpha } = layer.parts("default");
    const d = [0.5, -1, 0.25, 2, 0, 1.5, -0.75, 0.1, 0.3, -0.2, 0.9, -1.1];
    const la = [-3, 0, 1, 4, 2, -1, 0.5, 0, 3, -0.5, 1.5, 0];
    T.noGrad(() => {
      delta.copy_(T.tensor(d, [3, 4]));
      logAlpha.copy_(T.tensor(la, [3, 4]));
    });
    layer.eval();
    const x = [0.1, -0.4, 0.7, 0.2, 1.0, 0.5, -0.3, 0.8];
    const w = values(base.weight),
      b = values(base.bias!);
    const effective = w.map((v, i) => v + gate(la[i]!, null) * d[i]!);
    const expected = Array.from(mm(x, transposed(effective, 3, 4), 2, 4, 3), (v, i) => v + b[i % 3]!);
    assertClose(values(layer.forward(T.tensor(x, [2, 4]))), expected, 1e-5);
    layer.merge();
    assertClose(values(base.weight), effective, 1e-6);
    layer.unmerge();
    assertClose(values(base.weight), w, 1e-6);
  });
});

describe("DiffPruning on a model", () => {
  it("starts as the base model; in training the loss carries l0_lambda · E[L0] / gates", () => {
    const base = gpt2();
    const baseOut = T.noGrad(() => base.forward({ inputIds: IDS(), labels: IDS() }) as ModelOutput);
    const baseLoss = baseOut.loss!.item();
    const baseLogits = values(baseOut.logits);
    const peft = getPeftModel(
      base,
      DiffPruningConfig({ target_modules: ["c_attn"], log_alpha_init: 1, l0_lambda: 0.5 }),
    );
    assertSame(logits(peft), baseLogits, "δ = 0");
    peft.train();
    const loss = T.noGrad(() => peft.forward({ inputIds: IDS(), labels: IDS() }).loss!.item());
    // Every gate has log α = 1, so the mean open probability is σ(1 + (2/3)·log 11).
    assertClose([loss], [baseLoss + 0.5 * sigmoid(1 + (2 / 3) * Math.log(11))], 1e-5);
    // c_attn of 2 layers: δ and log α, each [32, 96].
    assert.equal(peft.getNbTrainableParameters()[0], 2 * 2 * 32 * 96);
  });

  it("magnitude pruning keeps the largest gated differences across layers", () => {
    const peft = getPeftModel(
      gpt2(),
      DiffPruningConfig({ target_modules: ["c_proj"], layers_to_transform: [0], layers_pattern: "h" }),
    );
    const host = peft.base_model as DiffPruningModel;
    const layers = host.tunerLayers().map(([, l]) => l as DiffPruningLinear);
    assert.equal(layers.length, 2); // attn.c_proj [32, 32] and mlp.c_proj [128, 32] of layer 0
    const sizes = layers.map((l) => l.parts("default").delta.size);
    T.noGrad(() =>
      layers.forEach((l, li) => {
        const { delta } = l.parts("default");
        delta.copy_(
          T.tensor(
            Float32Array.from({ length: delta.size }, (_, i) => ((i * 7 + li * 3) % 101) / 100 - 0.5),
            delta.shape,
          ),
        );
      }),
    );
    const before = layers.map((l) => values(T.noGrad(() => l.gatedDelta("default", false))));
    const all = before
      .flat()
      .map(Math.abs)
      .sort((a, b) => b - a);
    const kept = host.pruneToSparsity(0.9);
    assert.equal(kept, Math.round(0.1 * (sizes[0]! + sizes[1]!)));
    const threshold = all[kept - 1]!;
    layers.forEach((l, li) => {
      const after = values(T.noGrad(() => l.gatedDelta("default", false)));
      after.forEach((v, i) => {
        const was = before[li]![i]!;
        if (Math.abs(was) > threshold) assert.equal(v, Math.fround(was), "a large entry is kept with an open gate");
        else if (Math.abs(was) < threshold) assert.equal(v, 0, "a small entry is pruned");
      });
    });
    const nonzero = layers.reduce(
      (s, l) => s + values(T.noGrad(() => l.gatedDelta("default", false))).filter((v) => v !== 0).length,
      0,
    );
    assert.equal(nonzero, kept);
  });

  it("learns a toy task, prunes at total_step, and survives save/load", () => {
    const base = gpt2(11, { initializer_range: 0.3 });
    const peft = getPeftModel(
      base,
      DiffPruningConfig({ target_modules: ["c_attn", "c_fc"], l0_lambda: 0.1, target_sparsity: 0.5, total_step: 30 }),
    );
    peft.train();
    const opt = new AdamW(
      peft.parameters().filter((p) => p.requiresGrad),
      { lr: 0.02 },
    );
    let step = 0;
    const losses = trainSteps(peft, opt, cycleIds(), 30, () => peft.afterOptimizerStep(step++));
    assert.ok(losses[29]! < 0.5 * losses[0]!, `loss ${losses[0]} → ${losses[29]}`);
    peft.eval();
    const host = peft.base_model as DiffPruningModel;
    const deltas = host.tunerLayers().map(([, l]) => values((l as DiffPruningLinear).parts("default").delta));
    const total = deltas.reduce((s, d) => s + d.length, 0),
      nonzero = deltas.reduce((s, d) => s + d.filter((v) => v !== 0).length, 0);
    assert.equal(nonzero, Math.round(0.5 * total), "pruned to 50 % after step 30");
    const pruned = logits(peft);
    const dir = dirs.make();
    peft.savePretrained(dir);
    const file = loadSafetensors(join(dir, "adapter_model.safetensors"));
    assert.deepEqual([...file.keys()].sort().slice(0, 2), [
      "base_model.model.transformer.h.0.attn.c_attn.diff_delta",
      "base_model.model.transformer.h.0.attn.c_attn.diff_log_alpha",
    ]);
    assert.equal(file.size, 8);
    const loaded = PeftModel.fromPretrained(gpt2(11, { initializer_range: 0.3 }), dir);
    assertSame(logits(loaded), pruned, "reloaded");
  });

  it("refuses a config without targets", () => {
    assert.throws(
      () => getPeftModel(gpt2(), DiffPruningConfig({})),
      (e: Error) => e instanceof ConfigError && /needs target_modules/.test(e.message),
    );
    assert.throws(() => DiffPruningConfig({ target_sparsity: 1.5 }), ConfigError);
  });
});

describe("peft CLI with DiffPruning", () => {
  it("`peft train` trains and prunes, and `peft generate` uses the adapter it wrote", () => {
    const ws = cliWorkspace("peft-ts-diffprune-cli-", LLAMA);
    trainMethod(ws, "DIFF_PRUNING", { target_modules: ["q_proj", "v_proj"], target_sparsity: 0.9, total_step: 2 });
    const file = loadSafetensors(join(ws.root, "out-DIFF_PRUNING", "adapter_model.safetensors"));
    const deltas = [...file].filter(([k]) => k.endsWith("diff_delta")).map(([, t]) => values(t));
    const total = deltas.reduce((s, d) => s + d.length, 0),
      nonzero = deltas.reduce((s, d) => s + d.filter((v) => v !== 0).length, 0);
    assert.equal(nonzero, Math.round(0.1 * total));
    const gen = ws.run(
      "generate",
      "--model",
      "model",
      "--adapter",
      "out-DIFF_PRUNING",
      "--prompt",
      "say hello",
      "--max-new-tokens",
      "3",
    );
    assert.equal(gen.status, 0, `peft generate failed:\n${gen.stderr}`);
  });
});
