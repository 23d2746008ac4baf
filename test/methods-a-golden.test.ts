/**
 * FourierFT, VeRA, OFT and BOFT against Python peft 0.15.2 (test/fixtures/methods-a, made by scripts/make_method_fixtures_a.py):
 * adapters saved by Python load here from their files alone and give peft's logits with the adapter on, off and
 * merged, its loss (1e-4) and its greedy tokens (exactly). FourierFT's positions and, with save_projection=False,
 * VeRA's projections are not in those files: matching logits prove that TorchGenerator redraws them as torch does.
 * Adapters made here save the tensors, shapes and config fields Python saves, and go to $PEFT_TS_ADAPTERS for
 * `make_method_fixtures_a.py --check-ts-adapters`, which loads them in Python peft.
 */
import { describe, it } from "node:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GoldenSet } from "./golden.js";
import { casesOf, checkFreshCase, checkLoadedCase, saveTsAdapters } from "./peft-cases.js";

const set = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-a/", import.meta.url)));
const METHODS = ["FOURIERFT", "VERA", "OFT", "BOFT"];

describe("FourierFT, VeRA, OFT and BOFT adapters saved by Python peft 0.15.2", () => {
  for (const [name, c] of casesOf(METHODS, set)) {
    it(`${name}: logits on / off / merged, loss and greedy generation match peft`, () =>
      checkLoadedCase(name, c, { set }));
    it(`${name}: a fresh adapter made here saves peft's tensor names, shapes and config fields`, () =>
      checkFreshCase(name, c, { set }));
  }

  it(
    "adapters made here reload to the same outputs; they go to $PEFT_TS_ADAPTERS for " +
      "`make_method_fixtures_a.py --check-ts-adapters`",
    () => {
      const out = process.env["PEFT_TS_ADAPTERS"] ?? mkdtempSync(join(tmpdir(), "peft-ts-methods-a-adapters-"));
      saveTsAdapters(set, METHODS, out, 0.3);
    },
  );
});
