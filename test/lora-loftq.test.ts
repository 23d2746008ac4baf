/**
 * LoRA's LoftQ initialiser (init_lora_weights "loftq", loftq_config): against the goldens of
 * scripts/make_method_fixtures_loftq.py (peft 0.15.2's NFQuantizer path), against hand-computed values, and its errors.
 */
import { describe, it, mock } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../src/errors.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { AdaLoraConfig, LoraConfig, configFromJson, getPeftModel } from "../src/peft/index.js";
import { loftqFactors, nfQuantizeDequantize, normalFloatTable, normalQuantile } from "../src/peft/tuners/lora/init.js";
import { svdF64 } from "../src/tensor/linalg.js";
import { GoldenSet, compareWithSaved } from "./golden.js";
import { diffUpToSign, maxAbsDiff as maxArrayDiff, mm, randValues } from "./helpers.js";
import { baseModel, casesOf, checkFreshCase, checkLoadedCase, type PeftCase } from "./peft-cases.js";
import { gpt2, llama } from "./tiny-models.js";

const set = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-loftq/", import.meta.url)));
const cases = casesOf(["LORA"], set);

/** A fresh adapter made here from a case's config. */
const freshModel = (c: PeftCase) =>
  getPeftModel(baseModel(c, set), configFromJson({ ...c.config, peft_type: c.peft_type }));

/** The Frobenius norm of a − b. */
const distance = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.hypot(...Array.from(a, (v, i) => v - b[i]!));

describe("LoftQ against Python peft 0.15.2", () => {
  it("NFQuantizer's normal-float tables for 2, 4 and 8 bits (from scipy's norm.ppf) are peft's float32 values", () => {
    const tables = loadSafetensors(join(set.root, "nf_tables.safetensors"));
    for (const bits of [2, 4, 8]) {
      const want = tables.get(`bits${bits}`)!.dataSync(),
        got = normalFloatTable(bits);
      assert.equal(got.length, 2 ** bits);
      assert.deepEqual(Array.from(got), Array.from(want), `${bits}-bit table`);
    }
  });

  for (const [name, c] of cases) {
    it(`${name}: Python's adapter reproduces its outputs here (on, disabled = dequantised model, merged, greedy)`, () =>
      checkLoadedCase(name, c, { set }));
    it(`${name}: an adapter made here saves Python's tensor names, shapes and config fields`, () =>
      checkFreshCase(name, c, { set }));

    it(
      `${name}: a fresh adapter has Python's A, B (up to the sign of each singular pair) and ` +
        `dequantised base weights`,
      () => {
        const model = freshModel(c);
        const init = loadSafetensors(join(set.peftDir(name), "init.safetensors"));
        const { factors, weights } = compareWithSaved(model, init, true, 1e-4);
        assert.ok(factors >= 4 && weights >= 2, "A, B and the base weight of at least two layers were compared");
      },
    );
  }
});

describe("LoftQ algebra (hand-checked)", () => {
  it("the normal quantile matches known values of Φ⁻¹, in the centre and both tails", () => {
    // Cephes' ndtri (torch.special.ndtri, scipy's norm.ppf) in float64, and textbook values
    const known: [number, number][] = [
      [0.5, 0],
      [0.975, 1.959963984540054],
      [0.8413447460685429, 1],
      [0.025, -1.959963984540054],
      [0.9677083, 1.8481309597573734],
      [1e-10, -6.361340902404056],
      [1e-20, -9.262340089798409],
      [1e-300, -37.0470962993612],
    ];
    for (const [p, x] of known)
      assert.ok(
        Math.abs(normalQuantile(p) - x) <= 1e-12 * Math.max(1, Math.abs(x)),
        `Φ⁻¹(${p}) = ${normalQuantile(p)}, want ${x}`,
      );
  });

  it(
    "block quantisation maps each value to the nearest table level times its block's max " +
      "|value|; zero blocks stay zero",
    () => {
      const table = normalFloatTable(4);
      const w = Float32Array.from([...randValues(128, 7, -2, 2), ...new Array<number>(64).fill(0)]);
      const q = nfQuantizeDequantize(w, table);
      for (let block = 0; block < 2; block++) {
        const slice = w.subarray(block * 64, block * 64 + 64),
          max = Math.max(...Array.from(slice, Math.abs));
        for (let i = 0; i < 64; i++) {
          const distances = Array.from(table, (t) => Math.abs(slice[i]! / max - t));
          const nearest = table[distances.indexOf(Math.min(...distances))]!;
          assert.ok(Math.abs(q[block * 64 + i]! - nearest * max) < 1e-6, `value ${block * 64 + i}`);
        }
        // the block's largest |value| is a table end (±1 · max), so it is kept exactly
        const top = Array.from(slice, Math.abs).indexOf(max);
        assert.ok(Math.abs(Math.abs(q[block * 64 + top]!) - max) < 1e-6, "the block maximum is exact");
      }
      assert.deepEqual(Array.from(q.subarray(128)), new Array<number>(64).fill(0));
    },
  );

  it(
    "one iteration: B·A is the best rank-r approximation of W − Q (B = U√S, A = √S·Vᵀ); the " +
      "next quantises W − B·A",
    () => {
      const out = 16,
        inF = 24,
        r = 3;
      const w = randValues(out * inF, 21, -1, 1);
      const one = loftqFactors(w, out, inF, r, { bits: 2, iter: 1 });
      assert.deepEqual(
        Array.from(one.dequantized),
        Array.from(nfQuantizeDequantize(Float32Array.from(w), normalFloatTable(2))),
        "Q = dequant(quant(W))",
      );
      const error = Float64Array.from(w, (v, i) => Math.fround(v - one.dequantized[i]!));
      const d = svdF64(error, out, inF);
      const best = new Float64Array(out * inF);
      for (let l = 0; l < r; l++)
        for (let i = 0; i < out; i++)
          for (let j = 0; j < inF; j++) best[i * inF + j]! += d.u[i * d.k + l]! * d.s[l]! * d.vh[l * inF + j]!;
      assert.ok(maxArrayDiff(mm(one.b, one.a, out, r, inF), best) < 1e-5, "B·A = rank-r part of W − Q");
      const aat = mm(
        one.a,
        Array.from({ length: inF * r }, (_, k) => one.a[(k % r) * inF + Math.floor(k / r)]!),
        r,
        inF,
        r,
      );
      for (let l = 0; l < r; l++) assert.ok(Math.abs(aat[l * r + l]! - d.s[l]!) < 1e-5, `A·Aᵀ's diagonal is S (${l})`);
      const fit = (f: typeof one) =>
        distance(
          w,
          Array.from(mm(f.b, f.a, out, r, inF), (v, i) => v + f.dequantized[i]!),
        );
      assert.ok(fit(one) < distance(w, one.dequantized), "Q + B·A is closer to W than Q alone");
      const two = loftqFactors(w, out, inF, r, { bits: 2, iter: 2 });
      const left = Float32Array.from(mm(one.b, one.a, out, r, inF), (v, i) => w[i]! - v);
      assert.ok(
        maxArrayDiff(two.dequantized, nfQuantizeDequantize(left, normalFloatTable(2))) < 1e-6,
        "Q₂ = dequant(quant(W − B₁·A₁))",
      );
      const d2 = svdF64(
        Float64Array.from(w, (v, i) => v - two.dequantized[i]!),
        out,
        inF,
      );
      assert.ok(
        Math.abs(
          distance(
            w,
            Array.from(mm(two.b, two.a, out, r, inF), (v, i) => v + two.dequantized[i]!),
          ) - Math.hypot(...d2.s.slice(r)),
        ) < 1e-5,
        "B₂·A₂ leaves W − Q₂'s trailing singular values",
      );
    },
  );

  it("the LoRA scaling plays no part (as in peft): with lora_alpha / r = 4, A and B are the unscaled factors", () => {
    const model = getPeftModel(
      llama(),
      LoraConfig({
        r: 2,
        lora_alpha: 8,
        init_lora_weights: "loftq",
        loftq_config: { loftq_bits: 8 },
        target_modules: ["q_proj"],
      }),
    );
    const [a, b] = ["lora_A", "lora_B"].map(
      (n) => model.namedParameters().find(([k]) => k.includes(`layers.0.self_attn.q_proj.${n}`))![1],
    );
    const w = llama()
      .namedParameters()
      .find(([k]) => k.endsWith("layers.0.self_attn.q_proj.weight"))![1];
    const [out, inF] = w.shape as [number, number];
    const fresh = loftqFactors(w.dataSync(), out, inF, 2, { bits: 8, iter: 1 });
    assert.ok(diffUpToSign(a!.dataSync(), fresh.a, 2, inF, true) < 1e-5, "A");
    assert.ok(diffUpToSign(b!.dataSync(), fresh.b, out, 2, false) < 1e-5, "B");
  });
});

describe("LoftQ errors", () => {
  const loftq = (loftq_config: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    LoraConfig({ init_lora_weights: "loftq", loftq_config, ...extra });

  it(
    "loftq_config is required, its bits are 2, 4 or 8, its iterations > 0, its keys peft's; " +
      "defaults fill absent keys",
    () => {
      for (const build of [
        (f: Record<string, unknown>) => loftq(f),
        (f: Record<string, unknown>) =>
          configFromJson({ peft_type: "LORA", init_lora_weights: "loftq", loftq_config: f }),
      ]) {
        assert.throws(
          () => build({}),
          (e) =>
            e instanceof ConfigError &&
            /`loftq_config` must be specified when `init_lora_weights` is 'loftq'/.test(e.message),
        );
        for (const bits of [3, 16, 1, "4"])
          assert.throws(
            () => build({ loftq_bits: bits }),
            (e) => e instanceof ConfigError && /loftq_bits is .*only supports 2, 4 or 8 bits/.test(e.message),
            `bits ${bits}`,
          );
        for (const iter of [0, -1, 1.5])
          assert.throws(
            () => build({ loftq_iter: iter }),
            (e) => e instanceof ConfigError && /loftq_iter is .*greater than 0/.test(e.message),
            `iter ${iter}`,
          );
        assert.throws(
          () => build({ loftq_bits: 4, bits: 4 }),
          (e) => e instanceof ConfigError && /unknown key\(s\) bits/.test(e.message),
        );
      }
      assert.throws(
        () => LoraConfig({ init_lora_weights: "loftq" }),
        (e) => e instanceof ConfigError && /`loftq_config` must be specified/.test(e.message),
      );
      // peft's defaults: 4 bits, 1 iteration
      const model = getPeftModel(llama(), loftq({ loftq_iter: 1 }, { r: 2, target_modules: ["q_proj"] }));
      const a = model.namedParameters().find(([k]) => k.includes("q_proj.lora_A"))![1];
      const w = llama()
        .namedParameters()
        .find(([k]) => k.endsWith("layers.0.self_attn.q_proj.weight"))![1];
      assert.ok(
        diffUpToSign(
          a.dataSync(),
          loftqFactors(w.dataSync(), w.shape[0]!, w.shape[1]!, 2, { bits: 4, iter: 1 }).a,
          2,
          w.shape[1]!,
          true,
        ) < 1e-5,
      );
    },
  );

  it('loftq_config without init_lora_weights "loftq" is dropped with peft\'s warning; AdaLoRA refuses LoftQ', (t) => {
    const warn = t.mock.method(process, "emitWarning", () => undefined);
    assert.deepEqual(LoraConfig({ loftq_config: { loftq_bits: 4 } }).loftq_config, {});
    assert.match(String(warn.mock.calls[0]?.arguments[0]), /`loftq_config` specified but will be ignored/);
    mock.restoreAll();
    assert.throws(
      () => AdaLoraConfig({ total_step: 10, init_lora_weights: "loftq", loftq_config: { loftq_bits: 4 } }),
      (e) => e instanceof ConfigError && /ADALORA does not support LOFTQ/.test(e.message),
    );
  });

  it(
    "LoftQ on Conv1D, an embedding, a rank above min(out, in) or a weight not in blocks of 64 " +
      "is a ConfigError naming the module",
    () => {
      const bits4 = { loftq_bits: 4 };
      assert.throws(
        () => getPeftModel(gpt2(), loftq(bits4, { r: 2, target_modules: ["c_attn"], fan_in_fan_out: true })),
        (e) => e instanceof ConfigError && /"loftq" on .*c_attn.*fan_in_fan_out/.test(e.message),
      );
      assert.throws(
        () => getPeftModel(llama(), loftq(bits4, { r: 2, target_modules: ["embed_tokens"] })),
        (e) => e instanceof ConfigError && /"loftq" on the Embedding .*embed_tokens/.test(e.message),
      );
      assert.throws(
        () => getPeftModel(llama(), loftq(bits4, { r: 64, target_modules: ["q_proj"] })),
        (e) => e instanceof ConfigError && /q_proj: r = 64 exceeds min\(out, in\)/.test(e.message),
      );
      assert.throws(
        () =>
          getPeftModel(
            llama(0, { hidden_size: 12, intermediate_size: 20, num_attention_heads: 2, num_key_value_heads: 2 }),
            loftq(bits4, { r: 2, target_modules: ["q_proj"] }),
          ),
        (e) =>
          e instanceof ConfigError &&
          /\[12, 12\] weight has 144 values, not a multiple of LoftQ's quantisation block size 64/.test(e.message),
      );
    },
  );
});
