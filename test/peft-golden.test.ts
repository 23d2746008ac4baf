/**
 * Adapters saved by Python peft 0.15 load here and reproduce Python's outputs (adapter on, disabled, merged,
 * greedy generation) within 1e-4; adapters made here for the same config have the same tensor names, shapes,
 * config fields and trainable-parameter counts as Python's.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftModel } from "../src/peft/index.js";
import { matmul, noGrad, type Tensor } from "../src/tensor/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { maxAbsDiff, peftDir, readExpected } from "./golden.js";
import { baseModel, casesOf, checkFreshCase, checkLoadedCase, close, forwardInputs, inputsFor } from "./peft-cases.js";

describe("LoRA adapters against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["LORA"])) {
    it(`${name}: loads and reproduces Python's outputs`, () => checkLoadedCase(name, c));
    if (name !== "llama-multi-adapter")
      it(`${name}: a fresh adapter saves what Python saves`, () => checkFreshCase(name, c));
  }
});

describe("prompt learning and LLaMA-Adapter against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT"])) {
    it(`${name}: loads and reproduces Python's outputs`, () => checkLoadedCase(name, c));
    it(`${name}: a fresh adapter saves what Python saves`, () => checkFreshCase(name, c));
  }
});

describe("AdaLoRA adapters against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["ADALORA"])) {
    it(
      `${name}: loads (resized to rank_pattern) and reproduces Python's outputs, loss with the ` +
        `orthogonal regulariser`,
      () => checkLoadedCase(name, c, { lossFromTrainableLoad: true }),
    );
    // A fresh adapter has init_r everywhere and no rank_pattern yet: Python's recorded files are pruned after training.
    const initR = c.config["init_r"] as number;
    const shapes = Object.fromEntries(
      Object.entries(c.adapter_tensors).map(([k, [[d0, d1]]]) => [
        k,
        k.endsWith("lora_B") ? [d0!, initR] : [initR, d1!],
      ]),
    );
    it(`${name}: a fresh adapter saves what Python saves (unpruned init_r shapes, no rank_pattern)`, () =>
      checkFreshCase(name, c, { shapes, fields: { rank_pattern: null } }));
  }
});

describe("IA3 adapters against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["IA3"])) {
    it(`${name}: loads and reproduces Python's outputs`, () => checkLoadedCase(name, c));
    it(`${name}: a fresh adapter saves what Python saves`, () => checkFreshCase(name, c));
  }
});

describe("LOHA adapters against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["LOHA"])) {
    it(`${name}: loads and reproduces Python's outputs`, () => checkLoadedCase(name, c));
    it(`${name}: a fresh adapter saves what Python saves`, () => checkFreshCase(name, c));
  }
});

describe("LOKR adapters against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["LOKR"])) {
    it(`${name}: loads and reproduces Python's outputs`, () => checkLoadedCase(name, c));
    it(`${name}: a fresh adapter saves what Python saves`, () => checkFreshCase(name, c));
  }
});

describe("LoRA add_weighted_adapter against Python peft 0.15", () => {
  const name = "llama-multi-adapter";
  const types = ["linear", "cat", "svd"] as const;

  it(`${name}: adapter "second" and its linear / cat / svd combinations with "default" reproduce Python's logits`, () => {
    const c = casesOf(["LORA"]).find(([n]) => n === name)![1];
    const expected = readExpected(peftDir(name));
    const inputs = forwardInputs(inputsFor(name, c), false);
    const dir = join(peftDir(name), "adapter");
    const model = PeftModel.fromPretrained(baseModel(c), dir);
    model.loadAdapter(join(dir, "second"), "second");
    const logits = () => noGrad(() => model.forward(inputs)).logits;
    close(logits(), expected.get("logits_adapter"), "logits_adapter (default)");
    model.setAdapter("second");
    close(logits(), expected.get("logits_second"), "logits_second");

    for (const type of types) {
      const adapterName = `weighted_${type}`;
      model.addWeightedAdapter(["default", "second"], [0.7, 0.3], adapterName, { combinationType: type });
      model.setAdapter(adapterName);
      close(logits(), expected.get(`logits_weighted_${type}`), `logits_weighted_${type}`);

      // The combined tensors match the ones Python saved (weighted/): exactly for linear and cat; for svd the
      // factors' signs are implementation-defined, so compare each layer's B·A.
      const theirs = loadSafetensors(join(peftDir(name), "weighted", adapterName, "adapter_model.safetensors"));
      const ours = model.adapterStateDict(adapterName);
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort(), `${adapterName}: saved tensor names`);
      for (const [k, t] of theirs) assert.deepEqual(ours.get(k)!.shape, t.shape, `${adapterName}: shape of ${k}`);
      if (type !== "svd") {
        for (const [k, t] of theirs)
          assert.ok(
            maxAbsDiff(ours.get(k)!, t) <= 1e-6,
            `${adapterName}: ${k} differs by ${maxAbsDiff(ours.get(k)!, t)}`,
          );
      } else {
        for (const k of [...theirs.keys()].filter((key) => key.endsWith("lora_A.weight"))) {
          const kb = k.replace("lora_A", "lora_B");
          const product = (sd: ReadonlyMap<string, Tensor>) => noGrad(() => matmul(sd.get(kb)!, sd.get(k)!));
          const diff = maxAbsDiff(product(ours), product(theirs));
          assert.ok(diff <= 1e-5, `${adapterName}: B·A of ${k.replace(".lora_A.weight", "")} differs by ${diff}`);
        }
      }
      const config = JSON.parse(
        readFileSync(join(peftDir(name), "weighted", adapterName, "adapter_config.json"), "utf8"),
      ) as Record<string, unknown>;
      const mine = model.peftConfig[adapterName]!;
      for (const key of ["r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "task_type"])
        assert.deepEqual(mine[key], config[key], `${adapterName}: config ${key}`);
      assert.deepEqual(
        [...(mine["target_modules"] as string[])].sort(),
        [...(config["target_modules"] as string[])].sort(),
        `${adapterName}: target_modules`,
      );
      for (const t of theirs.values()) t.dispose();
    }

    // The source adapters are untouched, and a combined adapter survives a save / load round trip.
    model.setAdapter("second");
    close(logits(), expected.get("logits_second"), "logits_second after combining");
    const out = mkdtempSync(join(tmpdir(), "peft-ts-weighted-"));
    model.savePretrained(out, { selectedAdapters: ["weighted_svd"] });
    const reloaded = PeftModel.fromPretrained(baseModel(c), join(out, "weighted_svd"));
    close(
      noGrad(() => reloaded.forward(inputs)).logits,
      expected.get("logits_weighted_svd"),
      "logits_weighted_svd after save/load",
    );
  });
});
