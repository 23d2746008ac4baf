/**
 * FourierFT and VeRA against Python peft 0.15.2 (test/fixtures/methods-a, made by scripts/make_method_fixtures_a.py):
 * adapters saved by Python load here from their files alone and give peft's logits with the adapter on, off and
 * merged, its loss (1e-4) and its greedy tokens (exactly). FourierFT's positions and, with save_projection=False,
 * VeRA's projections are not in those files: matching logits prove that TorchGenerator redraws them as torch does.
 * Adapters made here save the tensors, shapes and config fields Python saves, and go to $PEFT_TS_ADAPTERS for
 * `make_method_fixtures_a.py --check-ts-adapters`, which loads them in Python peft.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSafetensors } from "../src/io/safetensors.js";
import { PeftModel, configFromJson, getPeftModel } from "../src/peft/index.js";
import { noGrad, tensor, type Tensor } from "../src/tensor/index.js";
import { GoldenSet, maxAbsDiff, readInputs } from "./golden.js";
import { baseModel, casesOf, checkFreshCase, checkLoadedCase, forwardInputs } from "./peft-cases.js";

const set = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-a/", import.meta.url)));
const METHODS = ["FOURIERFT", "VERA", "OFT", "BOFT"];

describe("FourierFT and VeRA adapters saved by Python peft 0.15.2", () => {
  for (const [name, c] of casesOf(METHODS, set)) {
    it(`${name}: logits on / off / merged, loss and greedy generation match peft`, () => checkLoadedCase(name, c, { set }));
    it(`${name}: a fresh adapter made here saves peft's tensor names, shapes and config fields`, () => checkFreshCase(name, c, { set }));
  }

  it("adapters made here reload to the same outputs; they go to $PEFT_TS_ADAPTERS for `make_method_fixtures_a.py --check-ts-adapters`", () => {
    const out = process.env["PEFT_TS_ADAPTERS"] ?? mkdtempSync(join(tmpdir(), "peft-ts-methods-a-adapters-"));
    for (const [name, c] of casesOf(METHODS, set)) {
      const peft = getPeftModel(baseModel(c, set), configFromJson({ ...c.config, peft_type: c.peft_type }));
      noGrad(() => {
        const wave = (p: Tensor) => tensor(Float32Array.from(p.dataSync(), (_, i) => Math.sin(i + 1) * 0.3), p.shape);
        for (const [, p] of peft.namedParameters()) if (p.requiresGrad) p.copy_(wave(p));
      });
      const dir = join(out, name);
      peft.eval().savePretrained(dir);
      const inputs = forwardInputs(readInputs(set.modelDir(c.base.replace(/^models\//, ""))), false);
      const logits = noGrad(() => peft.forward(inputs)).logits;
      const reloaded = PeftModel.fromPretrained(baseModel(c, set), dir);
      assert.equal(maxAbsDiff(noGrad(() => reloaded.forward(inputs)).logits, logits), 0, `${name}: reloaded adapter`);
      assert.ok(maxAbsDiff(logits, noGrad(() => reloaded.withAdapterDisabled(() => reloaded.forward(inputs))).logits) > 1e-3, `${name}: the adapter acts`);
      writeSafetensors(join(dir, "logits.safetensors"), new Map([["logits", logits]]), { format: "pt" });
    }
  });
});
