/**
 * LoRA's base-weight initialisers (init_lora_weights "pissa", "pissa_niter_<n>", "olora"), lora_bias,
 * layer_replication and the TRAINABLE_TOKENS method: against the
 * goldens of scripts/make_method_fixtures_lora_init.py (peft 0.15.2), against hand-computed values, and their errors.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CheckpointError, ConfigError } from "../src/errors.js";
import { writeSafetensors, loadSafetensors } from "../src/io/safetensors.js";
import {
  AdaLoraConfig,
  LoraConfig,
  PeftModel,
  TrainableTokensConfig,
  TrainableTokensLayer,
  configFromJson,
  getPeftModel,
} from "../src/peft/index.js";
import { LoraLinear } from "../src/peft/tuners/lora/layer.js";
import { oloraFactors, pissaFactors } from "../src/peft/tuners/lora/init.js";
import { qrLeadingF64, svdF64, svdLowRankF64 } from "../src/tensor/linalg.js";
import { manualSeed, noGrad, tensor } from "../src/tensor/index.js";
import { GoldenSet, compareWithSaved, maxAbsDiff, readExpected, readInputs } from "./golden.js";
import { assertClose, maxAbs, mm, randValues, transposed } from "./helpers.js";
import { baseModel, casesOf, checkFreshCase, checkLoadedCase, forwardInputs, type PeftCase } from "./peft-cases.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";
import { LLAMA, gpt2, llama } from "./tiny-models.js";

const set = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-lora-init/", import.meta.url)));
const cases = casesOf(["LORA", "TRAINABLE_TOKENS"], set);

/** The base model's folder name of a case. */
const baseName = (c: PeftCase) => c.base.replace(/^models\//, "");

/** A fresh adapter made here from a case's config (same seed-independent init as Python's for these inits). */
const freshModel = (c: PeftCase) =>
  getPeftModel(baseModel(c, set), configFromJson({ ...c.config, peft_type: c.peft_type }));

describe("LoRA initialisers and lora_bias against Python peft 0.15.2", () => {
  for (const [name, c] of cases) {
    it(`${name}: Python's adapter reproduces its outputs here (on, disabled = residual model, merged, greedy)`, () =>
      checkLoadedCase(name, c, { set }));
    it(`${name}: an adapter made here saves Python's tensor names, shapes and config fields`, () =>
      checkFreshCase(name, c, { set }));
  }

  for (const [name, c] of cases.filter(([, c]) => c.config["init_lora_weights"] !== undefined)) {
    it(
      `${name}: a fresh adapter has Python's A, B (PiSSA: up to the sign of each singular pair) ` +
        `and residual weights, and changes nothing`,
      () => {
        const model = freshModel(c);
        const init = loadSafetensors(join(set.peftDir(name), "init.safetensors"));
        const pissa = String(c.config["init_lora_weights"]).startsWith("pissa");
        const { factors } = compareWithSaved(model, init, pissa, 2e-5);
        assert.ok(factors >= 4, "A and B of at least two layers were compared");
        // residual + scaling·B·A is the original weight: the fresh model gives the base model's logits.
        const inputs = forwardInputs(readInputs(set.modelDir(baseName(c))), false);
        const diff = maxAbsDiff(
          noGrad(() => model.forward(inputs)).logits!,
          readExpected(set.modelDir(baseName(c))).get("logits")!,
        );
        assert.ok(diff < 1e-4, `fresh adapter on the residual = base model: ${diff}`);
      },
    );
  }

  it(
    "adapters made here reload to the same outputs; they go to $PEFT_TS_ADAPTERS for " +
      "`make_method_fixtures_lora_init.py --check-ts-adapters`",
    () => {
      const out = process.env["PEFT_TS_ADAPTERS"] ?? mkdtempSync(join(tmpdir(), "peft-ts-lora-init-adapters-"));
      for (const [name, c] of cases) {
        const peft = freshModel(c);
        const mutatesBase = c.config["init_lora_weights"] !== undefined;
        const initialDir = join(mkdtempSync(join(tmpdir(), "peft-ts-lora-init-initial-")), name);
        if (mutatesBase) peft.savePretrained(initialDir);
        noGrad(() => {
          for (const [, p] of peft.namedParameters())
            if (p.requiresGrad)
              p.copy_(
                tensor(
                  Float32Array.from(p.dataSync(), (v, i) => v + Math.sin(i + 1) * 0.1),
                  p.shape,
                ),
              );
        });
        const dir = join(out, name);
        peft.eval().savePretrained(dir);
        const inputs = forwardInputs(readInputs(set.modelDir(baseName(c))), false);
        const logits = noGrad(() => peft.forward(inputs)).logits!;
        const reloaded = PeftModel.fromPretrained(baseModel(c, set), dir);
        assert.ok(
          maxAbsDiff(noGrad(() => reloaded.forward(inputs)).logits!, logits) < 1e-5,
          `${name}: reloaded adapter (the residual is recomputed on load)`,
        );
        assert.ok(
          maxAbsDiff(logits, noGrad(() => reloaded.withAdapterDisabled(() => reloaded.forward(inputs))).logits!) > 1e-3,
          `${name}: the adapter acts`,
        );
        writeSafetensors(join(dir, "logits.safetensors"), new Map([["logits", logits]]), { format: "pt" });
        // peft refuses to convert rsLoRA with rank_pattern (tested below).
        if (!mutatesBase || (c.config["use_rslora"] && c.config["rank_pattern"])) continue;
        // Converted to a plain LoRA of rank 2r: the same logits on the original base (Python checks it as <case>-as-lora).
        const asLora = join(out, `${name}-as-lora`);
        peft.savePretrained(asLora, { pathInitialModelForWeightConversion: initialDir });
        const saved = JSON.parse(readFileSync(join(asLora, "adapter_config.json"), "utf8")) as Record<string, unknown>;
        assert.deepEqual(
          [saved["init_lora_weights"], saved["r"]],
          [true, 2 * (c.config["r"] as number)],
          `${name}: converted config`,
        );
        assert.equal(
          (JSON.parse(readFileSync(join(initialDir, "adapter_config.json"), "utf8")) as Record<string, unknown>)[
            "init_lora_weights"
          ],
          true,
          "the initial folder's config is rewritten, as peft does",
        );
        const plain = PeftModel.fromPretrained(baseModel(c, set), asLora);
        const diff = maxAbsDiff(noGrad(() => plain.forward(inputs)).logits!, logits);
        assert.ok(
          diff < 1e-4,
          `${name}: the converted adapter on the original base gives the trained logits (${diff})`,
        );
        const original = readExpected(set.modelDir(baseName(c))).get("logits")!;
        assert.ok(
          maxAbsDiff(noGrad(() => plain.withAdapterDisabled(() => plain.forward(inputs))).logits!, original) < 1e-5,
          `${name}: converted adapter leaves the base untouched`,
        );
        writeSafetensors(join(asLora, "logits.safetensors"), new Map([["logits", logits]]), { format: "pt" });
      }
    },
  );

  it("the conversion refuses rsLoRA with rank_pattern (as peft) and a missing initial adapter", () => {
    const [, c] = cases.find(([n]) => n === "llama-pissa-rslora")!;
    const model = freshModel(c);
    const dir = mkdtempSync(join(tmpdir(), "peft-ts-lora-init-conv-"));
    model.savePretrained(join(dir, "init"));
    assert.throws(
      () => model.savePretrained(join(dir, "out"), { pathInitialModelForWeightConversion: join(dir, "init") }),
      (e) =>
        e instanceof ConfigError &&
        /not supported when using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`/.test(
          e.message,
        ),
    );
    const pissa = freshModel(cases.find(([n]) => n === "llama-pissa")![1]);
    assert.throws(
      () => pissa.savePretrained(join(dir, "out2"), { pathInitialModelForWeightConversion: join(dir, "nothing") }),
      (e) => e instanceof CheckpointError && /has no adapter_model\.safetensors/.test(e.message),
    );
  });
});

describe("PiSSA and OLoRA algebra (hand-checked)", () => {
  const out = 12,
    inF = 9,
    r = 3,
    scaling = 2.5;
  const w = randValues(out * inF, 11, -1, 1);

  it("PiSSA: scaling·B·A is the best rank-r part of W (its top singular triplets) and the residual is the rest", () => {
    const { a, b, residual } = pissaFactors(w, out, inF, r, scaling, null);
    const d = svdF64(w, out, inF);
    const best = new Float64Array(out * inF);
    for (let l = 0; l < r; l++)
      for (let i = 0; i < out; i++)
        for (let j = 0; j < inF; j++) best[i * inF + j]! += d.u[i * d.k + l]! * d.s[l]! * d.vh[l * inF + j]!;
    assertClose(
      Array.from(mm(b, a, out, r, inF), (v) => v * scaling),
      best,
      1e-12,
      0,
      "scaling·B·A",
    );
    assertClose(
      Array.from(residual, (v, i) => v + best[i]!),
      w,
      1e-12,
      0,
      "residual + scaling·B·A = W",
    );
    // A·Aᵀ = B ᵀ·B = diag(S_r / scaling): orthogonal factors sharing √S.
    const aat = mm(a, transposed(a, r, inF), r, inF, r),
      btb = mm(transposed(b, out, r), b, r, out, r);
    for (let i = 0; i < r; i++)
      for (let j = 0; j < r; j++) {
        const want = i === j ? d.s[i]! / scaling : 0;
        assert.ok(
          Math.abs(aat[i * r + j]! - want) < 1e-12 && Math.abs(btb[i * r + j]! - want) < 1e-12,
          `A·Aᵀ and Bᵀ·B at [${i}, ${j}]`,
        );
      }
  });

  it(
    "pissa_niter: torch.svd_lowrank's algorithm recovers a matrix of rank q exactly and " +
      "converges to the exact PiSSA with a spectral gap",
    () => {
      manualSeed(3);
      const gauss = (rows: number, cols: number) => Float64Array.from(randValues(rows * cols, rows * 31 + cols, -1, 1));
      // W = U·diag(10, 8, 6, 0.01 …)·Vᵀ from the exact SVD of a random matrix, so the top-3 subspace is well separated.
      const d = svdF64(w, out, inF);
      const spectrum = [10, 8, 6, 0.01, 0.008, 0.006, 0.004, 0.002, 0.001];
      const gapped = new Float64Array(out * inF);
      for (let l = 0; l < d.k; l++)
        for (let i = 0; i < out; i++)
          for (let j = 0; j < inF; j++) gapped[i * inF + j]! += d.u[i * d.k + l]! * spectrum[l]! * d.vh[l * inF + j]!;
      const lowRank = svdLowRankF64(gapped, out, inF, r, 4, gauss);
      assertClose(lowRank.s, spectrum.slice(0, r), 1e-9, 0, "singular values");
      const exact = pissaFactors(gapped, out, inF, r, scaling, null);
      const approx = pissaFactors(gapped, out, inF, r, scaling, 4);
      assertClose(
        mm(approx.b, approx.a, out, r, inF),
        mm(exact.b, exact.a, out, r, inF),
        1e-9,
        0,
        "B·A of pissa_niter_4 = exact PiSSA's",
      );
      // Whatever the random start, the residual plus the adapter is W (niter 0: the first basis only).
      const rough = pissaFactors(w, out, inF, r, scaling, 0);
      assertClose(
        Array.from(rough.residual, (v, i) => v + scaling * mm(rough.b, rough.a, out, r, inF)[i]!),
        w,
        1e-12,
        0,
        "residual + scaling·B·A = W",
      );
      // A matrix of rank q is recovered exactly, on both of torch's paths (basis of Xᵀ when wide or when q < n, else of X).
      for (const [m, n, q] of [
        [5, 12, 2],
        [12, 5, 2],
        [12, 5, 5],
      ] as const) {
        const x = mm(gauss(m, q), gauss(q, n), m, q, n);
        const got = svdLowRankF64(x, m, n, q, 1, gauss);
        assertClose(got.s, svdF64(x, m, n).s.slice(0, q), 1e-9, 0, `${m}×${n} rank ${q}: singular values`);
        const us = Float64Array.from(got.u, (v, t) => v * got.s[t % q]!);
        assertClose(mm(us, transposed(got.v, n, q), m, q, n), x, 1e-9, 0, `${m}×${n} rank ${q}: U·S·Vᵀ = X`);
      }
    },
  );

  it(
    "OLoRA: B = Q[:, :r] with orthonormal columns, A = R[:r] upper-trapezoidal, with LAPACK's " +
      "signs (R_jj < 0 for positive pivots)",
    () => {
      for (const [m, n] of [
        [12, 9],
        [6, 10],
      ] as const) {
        const x = randValues(m * n, m + n, -1, 1);
        const { a, b, residual } = oloraFactors(x, m, n, r, scaling);
        const qtq = mm(transposed(b, m, r), b, r, m, r);
        for (let i = 0; i < r; i++)
          for (let j = 0; j < r; j++)
            assert.ok(Math.abs(qtq[i * r + j]! - (i === j ? 1 : 0)) < 1e-12, `QᵀQ [${i}, ${j}]`);
        for (let i = 0; i < r; i++)
          for (let j = 0; j < i; j++) assert.equal(a[i * n + j], 0, `R[${i}, ${j}] below the diagonal`);
        // Full QR: Q·R reproduces X, and the first r columns of X are Q_r·R_r's.
        const full = qrLeadingF64(x, m, n, Math.min(m, n));
        assertClose(mm(full.q, full.r, m, Math.min(m, n), n), x, 1e-12, 0, `${m}×${n}: Q·R = X`);
        const br = mm(b, a, m, r, n);
        for (let i = 0; i < m; i++)
          for (let j = 0; j < r; j++) assert.ok(Math.abs(br[i * n + j]! - x[i * n + j]!) < 1e-12, "leading columns");
        assert.ok(a[0]! * x[0]! < 0, "R_00 has the sign opposite to X_00 (Householder, as LAPACK)");
        assertClose(
          Array.from(residual, (v, i) => v + scaling * br[i]!),
          x,
          1e-12,
          0,
          "residual + scaling·B·A = X",
        );
      }
    },
  );
});

describe("lora_bias (hand-computed)", () => {
  it(
    "forward adds scaling·(B·A·x + b); merging adds b to the base bias unscaled, as peft " +
      "0.15.2 does; unmerge restores it",
    () => {
      const model = getPeftModel(
        gpt2(),
        LoraConfig({ r: 2, lora_alpha: 6, lora_bias: true, target_modules: ["c_fc"], fan_in_fan_out: true }),
      );
      const layer = model.namedModules().find(([, m]) => m instanceof LoraLinear)![1] as LoraLinear;
      const bias = layer.lora_B.get("default").bias!;
      assert.ok(bias.requiresGrad && maxAbs(bias.dataSync()) === 0, "a trainable bias, zero at init");
      noGrad(() => {
        bias.copy_(
          tensor(
            Float32Array.from({ length: bias.size }, (_, i) => 0.01 * (i + 1)),
            bias.shape,
          ),
        );
        layer.lora_B
          .get("default")
          .weight.copy_(
            tensor(Float32Array.from(randValues(layer.outFeatures * 2, 5, -0.2, 0.2)), [layer.outFeatures, 2]),
          );
      });
      const x = tensor(Float32Array.from(randValues(3 * layer.inFeatures, 9, -1, 1)), [3, layer.inFeatures]);
      // GPT-2's Conv1D: x·W + bias with W stored [in, out].
      const baseBias = Float32Array.from(layer.base_layer.ownParameter("bias")!.dataSync());
      const xw = mm(
        x.dataSync(),
        layer.base_layer.getTensor("weight").dataSync(),
        3,
        layer.inFeatures,
        layer.outFeatures,
      );
      const base = Array.from(xw, (v, i) => v + baseBias[i % layer.outFeatures]!);
      const a = layer.lora_A.get("default").weight.dataSync(),
        b = layer.lora_B.get("default").weight.dataSync();
      const ax = mm(x.dataSync(), transposed(a, 2, layer.inFeatures), 3, layer.inFeatures, 2);
      const bax = mm(ax, transposed(b, layer.outFeatures, 2), 3, 2, layer.outFeatures);
      const want = Array.from(base, (v, i) => v + 3 * (bax[i]! + bias.dataSync()[i % layer.outFeatures]!));
      assertClose(noGrad(() => layer.forward(x)).dataSync(), want, 1e-5, 0, "forward");
      layer.merge();
      assertClose(
        layer.base_layer.ownParameter("bias")!.dataSync(),
        Array.from(baseBias, (v, i) => v + bias.dataSync()[i]!),
        1e-7,
        0,
        "merged bias",
      );
      layer.unmerge();
      assertClose(layer.base_layer.ownParameter("bias")!.dataSync(), baseBias, 1e-7, 0, "unmerged bias");
    },
  );

  it("merging lora_bias into a layer without a bias is a ConfigError; lora_bias on an embedding too", () => {
    const model = getPeftModel(llama(), LoraConfig({ r: 2, lora_bias: true, target_modules: ["q_proj"] }));
    assert.throws(
      () => model.mergeAndUnload(),
      (e) => e instanceof ConfigError && /has no bias to merge it into/.test(e.message),
    );
    assert.throws(
      () => getPeftModel(llama(), LoraConfig({ r: 2, lora_bias: true, target_modules: ["embed_tokens"] })),
      (e) => e instanceof ConfigError && /not supported for Embedding/.test(e.message),
    );
  });
});

describe("layer_replication", () => {
  it(
    "copies share the base tensors (not the adapters), merging is refused as peft means to, " +
      "bad ranges and unsupported models are ConfigErrors",
    () => {
      const model = getPeftModel(
        llama(),
        LoraConfig({
          r: 2,
          target_modules: ["q_proj"],
          layer_replication: [
            [0, 2],
            [0, 1],
          ],
        }),
      );
      const weight = (i: number, name: string) =>
        model.getBaseModel().getTensor(`model.layers.${i}.self_attn.q_proj.${name}`);
      assert.equal(
        weight(2, "base_layer.weight"),
        weight(0, "base_layer.weight"),
        "layer 2 is a copy of layer 0 with the same weight tensor",
      );
      assert.notEqual(
        weight(2, "lora_A.default.weight"),
        weight(0, "lora_A.default.weight"),
        "each copy has its own LoRA",
      );
      assert.equal((model.getBaseModel().config as unknown as { num_hidden_layers: number }).num_hidden_layers, 3);
      assert.throws(
        () => model.mergeAndUnload(),
        (e) =>
          e instanceof ConfigError && /Cannot merge LORA layers when base model layers are replicated/.test(e.message),
      );
      assert.throws(
        () => getPeftModel(llama(), LoraConfig({ r: 2, target_modules: ["q_proj"], layer_replication: [[1, 3]] })),
        (e) => e instanceof ConfigError && /\[1,3\] is not a range \[start, end\) of the 2 layers/.test(e.message),
      );
      assert.throws(
        () =>
          getPeftModel(
            gpt2(),
            LoraConfig({ r: 2, target_modules: ["c_attn"], fan_in_fan_out: true, layer_replication: [[0, 1]] }),
          ),
        (e) => e instanceof ConfigError && /layer_replication is not supported for GPT2/.test(e.message),
      );
    },
  );
});

describe("trainable tokens (hand-computed)", () => {
  it(
    "the listed rows are replaced by the trained ones in the embedding and the tied head; " +
      "merge writes them, unmerge restores them",
    () => {
      const base = llama(12, { tie_word_embeddings: true });
      const table = Float32Array.from(base.getInputEmbeddings().weight.dataSync());
      const [vocab, dim] = base.getInputEmbeddings().weight.shape as [number, number];
      const model = getPeftModel(base, TrainableTokensConfig({ token_indices: [2, 7] }));
      const embed = model.getBaseModel().getInputEmbeddings() as unknown as TrainableTokensLayer;
      const head = model.getBaseModel().getOutputEmbeddings() as unknown as TrainableTokensLayer;
      assert.ok(
        embed instanceof TrainableTokensLayer && head instanceof TrainableTokensLayer && head.tiedTo === embed,
        "the tied head is wrapped and tied",
      );
      const delta = embed.trainable_tokens_delta.ownParameter("default")!;
      assert.equal(head.trainable_tokens_delta.ownParameter("default"), delta, "one delta tensor for both");
      assertClose(
        delta.dataSync(),
        [...table.slice(2 * dim, 3 * dim), ...table.slice(7 * dim, 8 * dim)],
        0,
        0,
        "init_weights: the rows' values",
      );
      const rows = Float32Array.from(randValues(2 * dim, 4, -1, 1));
      noGrad(() => delta.copy_(tensor(rows, [2, dim])));
      const want = Float32Array.from(table);
      want.set(rows.slice(0, dim), 2 * dim);
      want.set(rows.slice(dim), 7 * dim);
      const ids = tensor(Int32Array.from([7, 1, 2]), [1, 3], "int32");
      assertClose(
        noGrad(() => embed.forward(ids)).dataSync(),
        [...want.slice(7 * dim, 8 * dim), ...want.slice(dim, 2 * dim), ...want.slice(2 * dim, 3 * dim)],
        0,
        0,
        "embedding rows",
      );
      const x = tensor(Float32Array.from(randValues(dim, 5, -1, 1)), [1, dim]);
      assertClose(
        noGrad(() => head.forward(x)).dataSync(),
        mm(x.dataSync(), transposed(want, vocab, dim), 1, dim, vocab),
        1e-5,
        0,
        "tied head: x·W'ᵀ",
      );
      const inputs = { inputIds: ids };
      const adapted = noGrad(() => model.forward(inputs)).logits!;
      model.mergeAdapter();
      assertClose(
        model.getBaseModel().getTensor("model.embed_tokens.base_layer.weight").dataSync(),
        want,
        0,
        0,
        "merged table",
      );
      assert.ok(maxAbsDiff(noGrad(() => model.forward(inputs)).logits!, adapted) < 1e-5, "merged = adapted");
      model.unmergeAdapter();
      assertClose(
        model.getBaseModel().getTensor("model.embed_tokens.base_layer.weight").dataSync(),
        table,
        0,
        0,
        "unmerged table",
      );
    },
  );

  it("only the delta trains; overlapping adapters, out-of-range ids and non-embedding targets are refused", () => {
    const model = getPeftModel(llama(), TrainableTokensConfig({ token_indices: [1, 2] }));
    assert.deepEqual(
      model
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([k]) => k),
      ["base_model.model.model.embed_tokens.trainable_tokens_delta.default"],
    );
    model.addAdapter("other", TrainableTokensConfig({ token_indices: [2, 3] }));
    model.base_model.setAdapter(["default", "other"]);
    assert.throws(
      () => model.forward({ inputIds: tensor(Int32Array.from([1]), [1, 1], "int32") }),
      /Only disjunct token indices are currently supported/,
    );
    assert.throws(
      () => getPeftModel(llama(), TrainableTokensConfig({ token_indices: [1000] })),
      /token_indices \[1000\] are out of range for the 64-row embedding/,
    );
    assert.throws(
      () => getPeftModel(llama(), TrainableTokensConfig({ token_indices: [1], target_modules: ["q_proj"] })),
      /not supported by trainable tokens/,
    );
  });
});

describe("initialiser and lora_bias errors, as peft 0.15.2 raises them (or where it would go wrong)", () => {
  it(
    "config checks: lora_bias needs init true/false and no DoRA; AdaLoRA refuses both; LoftQ " + "needs loftq_config",
    () => {
      assert.throws(
        () => LoraConfig({ lora_bias: true, init_lora_weights: "pissa" }),
        (e) =>
          e instanceof ConfigError &&
          /lora_bias=True is only supported with init_lora_weights=True or False/.test(e.message),
      );
      assert.throws(
        () => LoraConfig({ lora_bias: true, use_dora: true }),
        (e) => e instanceof ConfigError && /not supported for DoRA/.test(e.message),
      );
      assert.throws(
        () => AdaLoraConfig({ total_step: 10, init_lora_weights: "olora" }),
        (e) => e instanceof ConfigError && /AdaLoRA does not support init_lora_weights "olora"/.test(e.message),
      );
      assert.throws(
        () => AdaLoraConfig({ total_step: 10, lora_bias: true }),
        (e) => e instanceof ConfigError && /AdaLoRA does not support lora_bias/.test(e.message),
      );
      assert.throws(
        () => LoraConfig({ init_lora_weights: "loftq" }),
        (e) => e instanceof ConfigError && /init_lora_weights/.test(e.message),
      );
      for (const init of ["pissa", "pissa_niter_3", "olora"])
        assert.equal(LoraConfig({ init_lora_weights: init }).init_lora_weights, init);
    },
  );

  it("OLoRA on GPT-2's Conv1D and a rank above min(out, in) are ConfigErrors naming the module and the fix", () => {
    assert.throws(
      () =>
        getPeftModel(
          gpt2(),
          LoraConfig({ r: 2, init_lora_weights: "olora", target_modules: ["c_attn"], fan_in_fan_out: true }),
        ),
      (e) => e instanceof ConfigError && /c_attn.*fan_in_fan_out/.test(e.message),
    );
    assert.throws(
      () => getPeftModel(llama(), LoraConfig({ r: 64, init_lora_weights: "pissa", target_modules: ["q_proj"] })),
      (e) => e instanceof ConfigError && /q_proj: r = 64 exceeds min\(out, in\)/.test(e.message),
    );
  });
});

describe("`peft train` with the initialisers and lora_bias", () => {
  it(
    "trains PiSSA, pissa_niter, OLoRA, lora_bias, layer_replication, trainable_token_indices " +
      "and TRAINABLE_TOKENS adapters and saves their config fields",
    () => {
      const ws = cliWorkspace("peft-ts-lora-init-cli-", LLAMA);
      const variants: Record<string, unknown>[] = [
        { r: 2, lora_alpha: 4, init_lora_weights: "pissa" },
        { r: 2, lora_alpha: 4, init_lora_weights: "pissa_niter_2" },
        { r: 2, lora_alpha: 4, init_lora_weights: "olora", target_modules: ["q_proj", "down_proj"] },
        { r: 2, lora_alpha: 4, lora_bias: true, target_modules: ["q_proj", "v_proj"] },
        {
          r: 2,
          lora_alpha: 4,
          layer_replication: [
            [0, 2],
            [1, 2],
          ],
        },
        { r: 2, lora_alpha: 4, trainable_token_indices: [3, 4] },
      ];
      trainMethod(ws, "TRAINABLE_TOKENS", { token_indices: [3, 4] });
      const tokens = [
        ...loadSafetensors(join(ws.root, "out-TRAINABLE_TOKENS", "adapter_model.safetensors")).keys(),
      ].sort();
      assert.deepEqual(
        tokens,
        [
          "base_model.model.lm_head.trainable_tokens_delta",
          "base_model.model.model.embed_tokens.trainable_tokens_delta",
        ],
        "tied head: both keys, as peft saves them",
      );
      for (const fields of variants) {
        trainMethod(ws, "LORA", fields);
        const saved = JSON.parse(readFileSync(join(ws.root, "out-LORA", "adapter_config.json"), "utf8")) as Record<
          string,
          unknown
        >;
        for (const [k, v] of Object.entries(fields))
          if (k !== "target_modules") assert.deepEqual(saved[k], v, `${JSON.stringify(fields)}: saved ${k}`);
        const tensors = [...loadSafetensors(join(ws.root, "out-LORA", "adapter_model.safetensors")).keys()];
        assert.equal(
          tensors.some((k) => k.endsWith("lora_B.bias")),
          fields["lora_bias"] === true,
          `lora_B.bias saved iff lora_bias: ${tensors.join(", ")}`,
        );
        const tokenKeys = tensors.filter((k) => k.endsWith("token_adapter.trainable_tokens_delta"));
        assert.deepEqual(
          tokenKeys,
          fields["trainable_token_indices"]
            ? ["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]
            : [],
          "trainable tokens: the embedding's rows only (tied head not saved, as peft)",
        );
      }
    },
  );
});
