/**
 * FourierFT, VeRA, OFT and BOFT behaviour on tiny models built here (the Python goldens are in methods-a-golden.test.ts).
 * Expected values come from independent computations: a plain float64 inverse 2-D DFT of the dense spectrum, the
 * positions of torch's randperm recorded by Python (torch-generator.json), the base layer's own outputs, finite
 * differences of the loss.
 *
 * Tolerances: float32 products of O(1) values over ≤ 64 terms against float64 references: 1e-5 absolute.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { CheckpointError, ConfigError } from "../src/errors.js";
import { Conv1D, Linear } from "../src/nn/index.js";
import {
  BOFTConfig,
  BOFTLinear,
  FourierFTConfig,
  FourierFTLinear,
  OFTConfig,
  OFTLinear,
  VeraConfig,
  VeraLinear,
  type VeraModel,
  getPeftModel,
  PeftModel,
} from "../src/peft/index.js";
import { blockButterflyPerm } from "../src/peft/tuners/boft/index.js";
import { cayley, nearestDivisor } from "../src/peft/tuners/oft/index.js";
import { inverse } from "../src/tensor/linalg.js";
import { frequencyPositions } from "../src/peft/tuners/fourierft/index.js";
import { loadSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import * as T from "../src/tensor/index.js";
import { assertClose, gradCheck, maxAbsDiff, mm, randTensor, transposed, values } from "./helpers.js";
import { IDS, LLAMA, gpt2, llama, logits, trainToy } from "./tiny-models.js";
import { cliWorkspace, trainGenerateMerge } from "./cli-workspace.js";

const GENERATOR_GOLDEN = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../test/fixtures/methods-a/torch-generator.json", import.meta.url)), "utf8"),
);

/** Re(ifft2(S)) of a dense [rows, cols] complex-free spectrum, by the definition, in float64. */
function inverseDft2Real(dense: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let p = 0; p < rows; p++) {
    for (let q = 0; q < cols; q++) {
      let re = 0;
      for (let u = 0; u < rows; u++) {
        for (let v = 0; v < cols; v++) {
          const s = dense[u * cols + v]!;
          if (s !== 0) re += s * Math.cos(2 * Math.PI * ((u * p) / rows + (v * q) / cols));
        }
      }
      out[p * cols + q] = re / (rows * cols);
    }
  }
  return out;
}

/** A FourierFT layer on a fresh Linear(inF → outF) with a random spectrum. */
function fourierLayer(inF: number, outF: number, n: number, scaling: number, seed: number): FourierFTLinear {
  T.manualSeed(seed);
  const layer = new FourierFTLinear(new Linear(inF, outF));
  layer.updateLayer("default", n, scaling, false, seed);
  T.noGrad(() => layer.spectrum("default").copy_(randTensor([n], seed + 1, -1, 1)));
  return layer;
}

describe("FourierFT", () => {
  it(
    "places the coefficients at torch's randperm(out·in)[:n] positions (row = index // in, " + "column = index % in)",
    () => {
      const golden = (GENERATOR_GOLDEN.randperm as { seed: number; n: number; head: number[] }[]).find(
        (g) => g.seed === 777 && g.n === 3072,
      )!;
      const { rows, cols } = frequencyPositions(64, 48, 64, 777); // out 64 · in 48 = 3072
      assert.deepEqual(
        rows,
        golden.head.map((i) => Math.floor(i / 48)),
      );
      assert.deepEqual(
        cols,
        golden.head.map((i) => i % 48),
      );
    },
  );

  it("ΔW is the real part of the inverse 2-D DFT of the scattered spectrum, times scaling", () => {
    for (const [inF, outF, n, scaling] of [
      [12, 8, 10, 3],
      [7, 9, 63, 150],
      [16, 16, 5, 0.5],
    ] as const) {
      const layer = fourierLayer(inF, outF, n, scaling, inF * 100 + n);
      const { rows, cols } = layer.indices.get("default")!;
      const s = values(layer.spectrum("default"));
      const dense = new Float64Array(outF * inF);
      s.forEach((v, k) => {
        dense[rows[k]! * inF + cols[k]!] = v;
      });
      const want = Array.from(inverseDft2Real(dense, outF, inF), (v) => v * scaling);
      assertClose(
        values(layer.getDeltaWeight("default")),
        want,
        1e-5 * Math.max(1, scaling / 10),
        0,
        `ΔW ${outF}x${inF} n=${n}`,
      );
    }
  });

  it(
    "forward adds x·ΔWᵀ; merge folds ΔW into the weight (transposed for GPT-2's Conv1D) and " + "unmerge restores it",
    () => {
      for (const base of [new Linear(12, 8), new Conv1D(8, 12)]) {
        const layer = new FourierFTLinear(base);
        layer.updateLayer("default", 20, 40, false, 3);
        const x = randTensor([3, 12], 9, -1, 1);
        const plain = values(T.noGrad(() => base.forward(x)));
        const delta = values(layer.getDeltaWeight("default"));
        const xs = values(x);
        const want = plain.map((v, i) => {
          const [r, o] = [Math.floor(i / 8), i % 8];
          let acc = v;
          for (let k = 0; k < 12; k++) acc += xs[r * 12 + k]! * delta[o * 12 + k]!;
          return acc;
        });
        const adapted = values(T.noGrad(() => layer.forward(x)));
        assertClose(adapted, want, 1e-5, 0, `${base.constructor.name} forward`);
        const before = values(base.getTensor("weight"));
        layer.merge();
        assertClose(values(T.noGrad(() => layer.forward(x))), adapted, 1e-5, 0, `${base.constructor.name} merged`);
        layer.unmerge();
        assertClose(values(base.getTensor("weight")), before, 1e-6, 0, `${base.constructor.name} unmerged weight`);
      }
    },
  );

  it("the spectrum's gradient matches finite differences of the loss", () => {
    const peft = getPeftModel(
      llama(3),
      FourierFTConfig({ n_frequency: 12, scaling: 20, target_modules: ["q_proj", "v_proj"] }),
    );
    const ids = IDS();
    const loss = () => T.tidy(() => T.noGrad(() => peft.forward({ inputIds: ids, labels: ids }).loss!.dataSync()[0]!));
    const p = peft.namedParameters().find(([k]) => k.endsWith("q_proj.fourierft_spectrum.default"))![1];
    T.tidy(() => peft.forward({ inputIds: ids, labels: ids }).loss!.backward());
    const grad = values(p.grad!);
    const eps = 1e-2;
    for (const k of [0, 5, 11]) {
      const orig = p.dataSync()[k]!;
      const set = (v: number) =>
        T.noGrad(() => {
          const d = Float32Array.from(p.dataSync());
          d[k] = v;
          p.copy_(T.tensor(d, p.shape));
        });
      set(orig + eps);
      const up = loss();
      set(orig - eps);
      const down = loss();
      set(orig);
      assert.ok(
        Math.abs((up - down) / (2 * eps) - grad[k]!) <= 2e-3 + 2e-2 * Math.abs(grad[k]!),
        `∂loss/∂s[${k}]: ${grad[k]} vs ${(up - down) / (2 * eps)}`,
      );
    }
  });

  it("a default config changes the model (spectrum N(0, 1)); init_weights true starts as the base model", () => {
    const base = logits(gpt2(4));
    assert.ok(maxAbsDiff(logits(getPeftModel(gpt2(4), FourierFTConfig({ n_frequency: 50 }))), base) > 1e-4);
    assert.ok(
      maxAbsDiff(logits(getPeftModel(gpt2(4), FourierFTConfig({ n_frequency: 50, init_weights: true }))), base) === 0,
    );
  });

  it("trains: a few AdamW steps on a toy batch lower the loss, only the spectra change", () => {
    const peft = getPeftModel(llama(5), FourierFTConfig({ n_frequency: 64, scaling: 100, init_weights: true }));
    const frozen = peft
      .namedParameters()
      .filter(([, p]) => !p.requiresGrad)
      .map(([k, p]) => [k, values(p)] as const);
    const losses = trainToy(peft, 6);
    assert.ok(losses[5]! < losses[0]! - 0.05, `losses ${losses.join(", ")}`);
    for (const [k, v] of frozen.slice(0, 5))
      assert.deepEqual(values(peft.namedParameters().find(([n]) => n === k)![1]), v, `${k} frozen`);
  });

  it("refuses bad settings with ConfigErrors naming the field", () => {
    assert.throws(
      () => getPeftModel(llama(1), FourierFTConfig({ n_frequency: 32 * 32 + 1, target_modules: ["q_proj"] })),
      (e: unknown) => e instanceof ConfigError && /n_frequency/.test(e.message),
    );
    assert.throws(
      () => getPeftModel(llama(1), FourierFTConfig({ random_loc_seed: null, target_modules: ["q_proj"] })),
      (e: unknown) => e instanceof ConfigError && /random_loc_seed/.test(e.message),
    );
    assert.throws(() => FourierFTConfig({ n_frequncy: 3 } as never), ConfigError);
    assert.throws(() => FourierFTConfig({ target_modules: "q_proj", layers_to_transform: [0] }), /layers_to_transform/);
  });
});

const VERA_GOLDEN = fileURLToPath(new URL("../../test/fixtures/methods-a/peft/llama-vera/adapter/", import.meta.url));

describe("VeRA", () => {
  it(
    "draws vera_A then vera_B from torch's generator seeded with projection_prng_key exactly " +
      "as Python peft saved them",
    () => {
      const saved = loadSafetensors(join(VERA_GOLDEN, "adapter_model.safetensors"));
      const fields = JSON.parse(readFileSync(join(VERA_GOLDEN, "adapter_config.json"), "utf8"));
      const peft = getPeftModel(
        llama(1, { intermediate_size: 48 }),
        VeraConfig({
          r: fields.r,
          target_modules: fields.target_modules,
          projection_prng_key: fields.projection_prng_key,
        }),
      );
      const host = peft.base_model as unknown as VeraModel;
      for (const [holder, key] of [
        [host.vera_A, "base_model.vera_A"],
        [host.vera_B, "base_model.vera_B"],
      ] as const) {
        const ours = holder.namedBuffers().find(([k]) => k === "default")![1];
        assert.deepEqual(ours.shape, saved.get(key)!.shape, key);
        assert.deepEqual(values(ours), values(saved.get(key)!), `${key} bit-identical`);
      }
    },
  );

  it(
    "forward adds λ_b ⊙ B[:out]·(λ_d ⊙ A[:, :in]·x) (float64 reference); merge folds it in " +
      "(transposed for Conv1D) and unmerge restores",
    () => {
      const peft = getPeftModel(
        gpt2(6),
        VeraConfig({ r: 4, init_weights: false, target_modules: ["c_attn", "c_proj"] }),
      );
      const host = peft.base_model as unknown as VeraModel;
      const [, layer] = host.veraLayers().find(([k]) => k.endsWith("0.attn.c_proj"))!;
      const a = values(host.vera_A.namedBuffers()[0]![1]),
        b = values(host.vera_B.namedBuffers()[0]![1]);
      const [maxIn] = [host.vera_A.namedBuffers()[0]![1].shape[1]!];
      T.noGrad(() => layer.vera_lambda_b.ownParameter("default")!.copy_(randTensor([32], 3, -1, 1)));
      const lb = values(layer.vera_lambda_b.ownParameter("default")!),
        ld = values(layer.vera_lambda_d.ownParameter("default")!);
      const x = randTensor([2, 32], 4, -1, 1),
        xs = values(x);
      const base = values(T.noGrad(() => (layer.base_layer as Conv1D).forward(x)));
      const want = base.map((v, i) => {
        const [row, o] = [Math.floor(i / 32), i % 32];
        let acc = 0;
        for (let k = 0; k < 4; k++) {
          let ax = 0;
          for (let j = 0; j < 32; j++) ax += a[k * maxIn + j]! * xs[row * 32 + j]!;
          acc += b[o * 4 + k]! * ld[k]! * ax;
        }
        return v + lb[o]! * acc;
      });
      const adapted = values(T.noGrad(() => layer.forward(x)));
      assertClose(adapted, want, 1e-5, 0, "VeRA forward");
      const before = values(layer.base_layer.getTensor("weight"));
      layer.merge();
      assertClose(values(T.noGrad(() => layer.forward(x))), adapted, 1e-5, 0, "merged");
      layer.unmerge();
      assertClose(values(layer.base_layer.getTensor("weight")), before, 1e-6, 0, "unmerged weight");
      assert.ok(layer instanceof VeraLinear);
    },
  );

  it(
    "starts as the base model with init_weights, trains (only the λ vectors change) and " +
      "refuses mismatched adapters",
    () => {
      const base = logits(llama(5));
      const peft = getPeftModel(llama(5), VeraConfig({ r: 8, target_modules: ["q_proj", "v_proj", "down_proj"] }));
      assert.equal(maxAbsDiff(logits(peft), base), 0);
      const losses = trainToy(peft, 6);
      // λ_b starts at 0, so the first steps move the loss little: it must fall at every step.
      assert.ok(
        losses.every((l, i) => i === 0 || l < losses[i - 1]!) && losses[5]! < losses[0]! - 0.01,
        `losses ${losses.join(", ")}`,
      );
      assert.ok(
        peft
          .namedParameters()
          .filter(([, p]) => p.requiresGrad)
          .every(([k]) => /vera_lambda_[bd]/.test(k)),
      );
      assert.throws(
        () => peft.addAdapter("other", VeraConfig({ r: 8, target_modules: ["q_proj"], projection_prng_key: 3 })),
        (e: unknown) => e instanceof ConfigError && /PRNG/.test(e.message),
      );
      assert.throws(
        () => peft.addAdapter("other", VeraConfig({ r: 8, target_modules: ["q_proj"], save_projection: false })),
        (e: unknown) => e instanceof ConfigError && /save_projection/.test(e.message),
      );
    },
  );

  it("a save_projection adapter whose file lacks vera_A / vera_B is refused with a CheckpointError", () => {
    const dir = mkdtempSync(join(tmpdir(), "peft-ts-vera-noproj-"));
    writeFileSync(join(dir, "adapter_config.json"), readFileSync(join(VERA_GOLDEN, "adapter_config.json")));
    const saved = loadSafetensors(join(VERA_GOLDEN, "adapter_model.safetensors"));
    writeSafetensors(
      join(dir, "adapter_model.safetensors"),
      new Map([...saved].filter(([k]) => !/vera_[AB]$/.test(k))),
      { format: "pt" },
    );
    assert.throws(
      () => PeftModel.fromPretrained(llama(1, { intermediate_size: 48 }), dir),
      (e: unknown) => e instanceof CheckpointError && /vera_A and vera_B/.test(e.message),
    );
  });
});

/** blockdiag of blocks [n, b, b] (or one block repeated `times`) as a dense float64 [n·b, n·b] matrix. */
function blockDiag(blocks: number[], b: number, n: number, shared = false): Float64Array {
  const d = new Float64Array(n * b * n * b);
  for (let k = 0; k < n; k++) {
    const src = shared ? 0 : k;
    for (let i = 0; i < b; i++)
      for (let j = 0; j < b; j++) d[(k * b + i) * n * b + k * b + j] = blocks[src * b * b + i * b + j]!;
  }
  return d;
}

/** The permutation matrix of `perm` (row k has its 1 in column perm[k]) as dense float64. */
function permMatrix(perm: number[]): Float64Array {
  const n = perm.length,
    m = new Float64Array(n * n);
  perm.forEach((v, k) => {
    m[k * n + v] = 1;
  });
  return m;
}

describe("OFT and BOFT", () => {
  it("inverse: A·A⁻¹ = I, and its gradient matches finite differences", () => {
    const a = T.add(
      randTensor([2, 4, 4], 5, -0.5, 0.5),
      T.mul(
        T.tensor(
          Float32Array.from({ length: 32 }, (_, i) => (i % 5 === 0 ? 1 : 0)),
          [2, 4, 4],
        ),
        2,
      ),
    );
    const prod = values(T.matmul(a, inverse(a)));
    assertClose(
      prod,
      Array.from({ length: 32 }, (_, i) => ((i % 16) % 5 === 0 ? 1 : 0)),
      1e-5,
      0,
      "A·A⁻¹",
    );
    gradCheck((x) => inverse(x), [a]);
    assert.throws(() => inverse(T.zeros([2, 2])), /singular/);
  });

  it("Cayley blocks are orthogonal, and the identity for a zero (or symmetric) matrix", () => {
    const q = cayley(randTensor([3, 5, 5], 8, -1, 1));
    const qtq = values(T.matmul(T.transpose(q), q));
    assertClose(
      qtq,
      Array.from({ length: 75 }, (_, i) => ((i % 25) % 6 === 0 ? 1 : 0)),
      1e-5,
      0,
      "QᵀQ",
    );
    const sym = randTensor([1, 4, 4], 9);
    assertClose(
      values(cayley(T.add(sym, T.transpose(sym)))),
      Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0)),
      1e-6,
      0,
      "symmetric → I",
    );
  });

  it(
    "OFT's weight is (W·blockdiag(Q)ᵀ) ⊙ s (float64 reference); merge and unmerge round-trip; " +
      "r is moved to a divisor",
    () => {
      for (const [r, share] of [
        [4, false],
        [2, true],
      ] as const) {
        const layer = new OFTLinear(new Linear(8, 6));
        layer.updateLayer("default", {
          r,
          blockSize: 0,
          moduleDropout: 0,
          coft: false,
          eps: 6e-5,
          blockShare: share,
          initWeights: false,
        });
        const b = 8 / r;
        const q = values(layer.rotationBlocks("default"));
        const s = values(layer.oft_s.ownParameter("default")!);
        const w = values(layer.base_layer.getTensor("weight"));
        const rotated = mm(w, transposed(blockDiag(q, b, r, share), 8, 8), 6, 8, 8);
        const x = randTensor([3, 8], 2, -1, 1);
        const bias = values(layer.base_layer.ownParameter("bias")!);
        const want = Array.from({ length: 18 }, (_, i) => {
          const [row, o] = [Math.floor(i / 6), i % 6];
          let acc = bias[o]!;
          for (let k = 0; k < 8; k++) acc += values(x)[row * 8 + k]! * rotated[o * 8 + k]! * s[o]!;
          return acc;
        });
        const adapted = values(T.noGrad(() => layer.forward(x)));
        assertClose(adapted, want, 1e-5, 0, `OFT r=${r} share=${share}`);
        layer.merge();
        assertClose(values(T.noGrad(() => layer.forward(x))), adapted, 1e-5, 0, "merged");
        layer.unmerge();
        assertClose(values(layer.base_layer.getTensor("weight")), w, 1e-5, 0, "unmerged");
      }
      assert.deepEqual(
        [nearestDivisor(32, 5), nearestDivisor(32, 6), nearestDivisor(48, 7), nearestDivisor(12, 40)],
        [4, 4, 6, 12],
      ); // ties go to the lower divisor
    },
  );

  it(
    "BOFT's butterfly permutations follow peft (hand-worked n = 8) and its rotation is Π " +
      "P_i·blockdiag(Q_i)·P_iᵀ (dense float64 reference)",
    () => {
      // n 8, 2 blocks of 4 halves: within each run of 8 / 2 = 4 indices, pairs (r = 1) are ordered evens then odds.
      assert.deepEqual(blockButterflyPerm(8, 2, 1, 1), [0, 2, 1, 3, 4, 6, 5, 7]);
      assert.deepEqual(blockButterflyPerm(8, 1, 2, 2), [0, 1, 4, 5, 2, 3, 6, 7]);
      assert.deepEqual(blockButterflyPerm(8, 4, 1, 0), [0, 1, 2, 3, 4, 5, 6, 7]);
      const layer = new BOFTLinear(new Linear(16, 5));
      layer.updateLayer("default", { blockSize: 2, blockNum: 0, nButterflyFactor: 3, dropout: 0, initWeights: false });
      const blocks = layer.rotationBlocks("default").map(values);
      let m: Float64Array | null = null;
      blocks.forEach((q, i) => {
        const p = permMatrix(blockButterflyPerm(16, 8 / 2 ** i, 1, 2));
        const factor = mm(mm(p, blockDiag(q, 2, 8), 16, 16, 16), transposed(p, 16, 16), 16, 16, 16);
        m = m === null ? factor : mm(factor, m, 16, 16, 16);
      });
      const w = values(layer.base_layer.getTensor("weight"));
      const s = values(layer.boft_s.ownParameter("default")!);
      const want = Array.from(mm(w, transposed(m!, 16, 16), 5, 16, 16), (v, i) => v * s[Math.floor(i / 16)]!);
      layer.merge();
      assertClose(values(layer.base_layer.getTensor("weight")), want, 1e-5, 0, "merged BOFT weight");
      layer.unmerge();
      assertClose(values(layer.base_layer.getTensor("weight")), w, 1e-5, 0, "unmerged");
      assert.throws(
        () =>
          new BOFTLinear(new Linear(12, 4)).updateLayer("x", {
            blockSize: 4,
            blockNum: 0,
            nButterflyFactor: 2,
            dropout: 0,
            initWeights: true,
          }),
        ConfigError,
      );
    },
  );

  it("refuse GPT-2's Conv1D as peft 0.15.2 does, and configs giving both r and oft_block_size", () => {
    assert.throws(
      () => getPeftModel(gpt2(1), OFTConfig({ target_modules: ["c_attn"] })),
      /Conv1D, which OFT does not support/,
    );
    assert.throws(
      () => getPeftModel(gpt2(1), BOFTConfig({ target_modules: ["c_attn"] })),
      /Conv1D, which BOFT does not support/,
    );
    assert.throws(() => OFTConfig({ r: 4, oft_block_size: 8 }), ConfigError);
    assert.throws(() => BOFTConfig({ boft_block_size: 0, boft_block_num: 0 }), ConfigError);
  });

  it("start as the base model and train (loss falls, only their parameters change)", () => {
    const base = logits(llama(5));
    for (const config of [
      OFTConfig({ r: 4, target_modules: ["q_proj", "v_proj", "up_proj"] }),
      BOFTConfig({ boft_block_size: 4, boft_n_butterfly_factor: 2, target_modules: ["q_proj", "v_proj", "up_proj"] }),
    ]) {
      const peft = getPeftModel(llama(5), config);
      assert.ok(maxAbsDiff(logits(peft), base) < 1e-6, `${config.peft_type}: identity at init`);
      const losses = trainToy(peft, 6);
      assert.ok(
        losses.every((l, i) => i === 0 || l < losses[i - 1]!) && losses[5]! < losses[0]! - 0.03,
        `${config.peft_type} losses ${losses.join(", ")}`,
      );
      assert.ok(
        peft
          .namedParameters()
          .filter(([, p]) => p.requiresGrad)
          .every(([k]) => /\.(oft_[rs]|boft_[Rs])\./.test(k)),
      );
    }
  });
});

describe("peft CLI with the methods of issue 16", () => {
  it("`peft train` trains each method's adapter, `peft generate` uses it and `peft merge` folds it in", () => {
    const ws = cliWorkspace("peft-ts-methods-a-cli-", LLAMA);
    const methods: Record<string, { fields: Record<string, unknown>; key: RegExp }> = {
      FOURIERFT: {
        fields: { n_frequency: 30, scaling: 50, target_modules: ["q_proj", "v_proj"] },
        key: /\.(q_proj|v_proj)\.fourierft_spectrum$/,
      },
      OFT: { fields: { r: 4, target_modules: ["q_proj", "v_proj"] }, key: /\.(q_proj|v_proj)\.oft_[rs]$/ },
      BOFT: {
        fields: { boft_block_size: 4, boft_n_butterfly_factor: 2, target_modules: ["q_proj", "v_proj"] },
        key: /\.(q_proj|v_proj)\.boft_[Rs]$/,
      },
      VERA: {
        fields: { r: 4, target_modules: ["q_proj", "v_proj"] },
        key: /(\.(q_proj|v_proj)\.vera_lambda_[bd]|^base_model\.vera_[AB])$/,
      },
    };
    trainGenerateMerge(ws, methods);
  });
});
