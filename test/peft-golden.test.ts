/**
 * Adapters saved by Python peft 0.15 load here and reproduce Python's outputs (adapter on, disabled, merged,
 * greedy generation) within 1e-4; adapters made here for the same config have the same tensor names, shapes,
 * config fields and trainable-parameter counts as Python's.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromPretrained } from "../src/models/auto.js";
import { PeftModel, getPeftModel, configFromJson } from "../src/peft/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { matmul, noGrad, type Tensor } from "../src/tensor/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { REFERENCE, maxAbsDiff, modelDir, peftDir, readExpected, readInputs, taskOfClass } from "./golden.js";

const TOLERANCE = 1e-4;

interface PeftCase {
  base: string;
  task_type: string;
  peft_type: string;
  config: Record<string, unknown>;
  print_trainable_parameters: string;
  trainable_params: number;
  all_params: number;
  adapter_tensors: Record<string, [number[], string]>;
  adapter_config_keys: string[];
  expected: Record<string, unknown>;
}

const index = JSON.parse(readFileSync(join(REFERENCE, "index.json"), "utf8")) as { models: Record<string, { class: string }>; cases: Record<string, unknown> };

/** Cases of the methods this build supports (more are added as methods land). */
export function casesOf(peftTypes: string[]): [string, PeftCase][] {
  return Object.keys(index.cases)
    .map((name): [string, PeftCase] => [name, JSON.parse(readFileSync(join(peftDir(name), "case.json"), "utf8")) as PeftCase])
    .filter(([, c]) => peftTypes.includes(c.peft_type));
}

function baseModel(c: PeftCase) {
  const name = c.base.replace(/^models\//, "");
  return fromPretrained(modelDir(name), taskOfClass(index.models[name]!.class));
}

function inputsFor(name: string, c: PeftCase): Record<string, Tensor> {
  return existsSync(join(peftDir(name), "inputs.json")) ? readInputs(peftDir(name)) : readInputs(modelDir(c.base.replace(/^models\//, "")));
}

function close(got: Tensor | undefined, want: Tensor | undefined, what: string): void {
  assert.ok(got && want, `${what}: missing output`);
  const g = got.rank === 0 ? got.view_([1], [1], got.offset) : got;
  const diff = maxAbsDiff(g, want);
  assert.ok(diff <= TOLERANCE, `${what}: max |diff| ${diff} > ${TOLERANCE}`);
}

function forwardInputs(inputs: Record<string, Tensor>, labels: boolean): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(inputs)) if (!k.startsWith("gen") && (labels || (k !== "labels" && !k.endsWith("Positions")))) out[k] = v;
  return out;
}

/** How a case's recording differs from the common one. */
export interface LoadedCaseOptions {
  /** loss_adapter was computed on a copy loaded with is_trainable=True (AdaLoRA: its loss needs the trainable adapter). */
  lossFromTrainableLoad?: boolean;
}

/** Check everything a golden case records for an adapter folder loaded from disk. */
export function checkLoadedCase(name: string, c: PeftCase, opts: LoadedCaseOptions = {}): void {
  const expected = readExpected(peftDir(name));
  const inputs = inputsFor(name, c);
  const model = PeftModel.fromPretrained(baseModel(c), join(peftDir(name), "adapter"));
  const logitsKey = (suffix: string) => (expected.has(`logits_${suffix}`) ? ["logits", `logits_${suffix}`] : null);
  const run = (labels: boolean) => noGrad(() => model.forward(forwardInputs(inputs, labels)));
  const out = run(false);
  const adapterKey = logitsKey("adapter");
  if (adapterKey) close(out.logits, expected.get(adapterKey[1]!), "logits_adapter");
  if (expected.has("start_logits_adapter")) {
    close(out.startLogits, expected.get("start_logits_adapter"), "start_logits_adapter");
    close(out.endLogits, expected.get("end_logits_adapter"), "end_logits_adapter");
  }
  if (expected.has("loss_adapter")) {
    if (opts.lossFromTrainableLoad) {
      const trainable = PeftModel.fromPretrained(baseModel(c), join(peftDir(name), "adapter"), { isTrainable: true }).eval();
      close(noGrad(() => trainable.forward(forwardInputs(inputs, true))).loss, expected.get("loss_adapter"), "loss_adapter (trainable load)");
    } else {
      close(run(true).loss, expected.get("loss_adapter"), "loss_adapter");
    }
  }
  if (expected.has("logits_disabled")) close(model.withAdapterDisabled(() => noGrad(() => model.forward(forwardInputs(inputs, false)))).logits, expected.get("logits_disabled"), "logits_disabled");
  if (expected.has("start_logits_disabled")) {
    const d = model.withAdapterDisabled(() => noGrad(() => model.forward(forwardInputs(inputs, false))));
    close(d.startLogits, expected.get("start_logits_disabled"), "start_logits_disabled");
  }
  if (expected.has("generate_greedy_adapter")) {
    const gen = model.generate({ inputIds: inputs["genInputIds"]!, attentionMask: inputs["genAttentionMask"]!, maxNewTokens: 6 });
    assert.deepEqual(Array.from(gen.dataSync()), Array.from(expected.get("generate_greedy_adapter")!.dataSync()), "generate_greedy_adapter");
  }
  if (expected.has("logits_merged") || expected.has("start_logits_merged")) {
    const merged = model.mergeAndUnload();
    const m = noGrad(() => merged.forward(forwardInputs(inputs, false))) as ModelOutput;
    if (expected.has("logits_merged")) close(m.logits, expected.get("logits_merged"), "logits_merged");
    else close(m.startLogits, expected.get("start_logits_merged"), "start_logits_merged");
  }
}

/** How a fresh adapter's files differ from the recorded (trained) ones. */
export interface FreshCaseOptions {
  /** Expected saved shapes by key, where they differ from the recorded adapter's (AdaLoRA: unpruned init_r). */
  shapes?: Record<string, number[]>;
  /** Expected adapter_config.json values, where they differ from the recorded adapter's (AdaLoRA: rank_pattern null). */
  fields?: Record<string, unknown>;
}

/** A fresh adapter made here from the case's config saves the same tensors and config fields as Python's. */
export function checkFreshCase(name: string, c: PeftCase, opts: FreshCaseOptions = {}): void {
  const config = configFromJson({ ...c.config, peft_type: c.peft_type });
  const peft = getPeftModel(baseModel(c), config);
  assert.equal(peft.trainableParametersLine(), c.print_trainable_parameters);
  assert.deepEqual(peft.getNbTrainableParameters(), [c.trainable_params, c.all_params]);
  const dir = mkdtempSync(join(tmpdir(), `peft-ts-${name}-`));
  peft.savePretrained(dir);
  const saved = loadSafetensors(join(dir, "adapter_model.safetensors"));
  const shapes = Object.fromEntries([...saved].map(([k, t]) => [k, t.shape]));
  const want = Object.fromEntries(Object.entries(c.adapter_tensors).map(([k, [shape]]) => [k, opts.shapes?.[k] ?? shape]));
  assert.deepEqual(shapes, want, "saved tensor names and shapes");
  const ours = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
  const theirs = JSON.parse(readFileSync(join(peftDir(name), "adapter", "adapter_config.json"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(Object.keys(ours).sort(), [...c.adapter_config_keys].sort(), "adapter_config.json keys");
  for (const key of c.adapter_config_keys) {
    if (key === "base_model_name_or_path") continue;
    const norm = (v: unknown) => (key === "target_modules" && Array.isArray(v) ? [...v].sort() : v);
    const wanted = opts.fields && key in opts.fields ? opts.fields[key] : theirs[key];
    assert.deepEqual(norm(ours[key]), norm(wanted), `adapter_config.json field ${key}`);
  }
}

describe("LoRA adapters against Python peft 0.15", () => {
  for (const [name, c] of casesOf(["LORA"])) {
    it(`${name}: loads and reproduces Python's outputs`, () => checkLoadedCase(name, c));
    if (name !== "llama-multi-adapter") it(`${name}: a fresh adapter saves what Python saves`, () => checkFreshCase(name, c));
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
    it(`${name}: loads (resized to rank_pattern) and reproduces Python's outputs, loss with the orthogonal regulariser`, () =>
      checkLoadedCase(name, c, { lossFromTrainableLoad: true }));
    // A fresh adapter has init_r everywhere and no rank_pattern yet: Python's recorded files are pruned after training.
    const initR = c.config["init_r"] as number;
    const shapes = Object.fromEntries(Object.entries(c.adapter_tensors).map(([k, [[d0, d1]]]) => [k, k.endsWith("lora_B") ? [d0!, initR] : [initR, d1!]]));
    it(`${name}: a fresh adapter saves what Python saves (unpruned init_r shapes, no rank_pattern)`, () => checkFreshCase(name, c, { shapes, fields: { rank_pattern: null } }));
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
        for (const [k, t] of theirs) assert.ok(maxAbsDiff(ours.get(k)!, t) <= 1e-6, `${adapterName}: ${k} differs by ${maxAbsDiff(ours.get(k)!, t)}`);
      } else {
        for (const k of [...theirs.keys()].filter((key) => key.endsWith("lora_A.weight"))) {
          const kb = k.replace("lora_A", "lora_B");
          const product = (sd: ReadonlyMap<string, Tensor>) => noGrad(() => matmul(sd.get(kb)!, sd.get(k)!));
          const diff = maxAbsDiff(product(ours), product(theirs));
          assert.ok(diff <= 1e-5, `${adapterName}: B·A of ${k.replace(".lora_A.weight", "")} differs by ${diff}`);
        }
      }
      const config = JSON.parse(readFileSync(join(peftDir(name), "weighted", adapterName, "adapter_config.json"), "utf8")) as Record<string, unknown>;
      const mine = model.peftConfig[adapterName]!;
      for (const key of ["r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "task_type"]) assert.deepEqual(mine[key], config[key], `${adapterName}: config ${key}`);
      assert.deepEqual([...(mine["target_modules"] as string[])].sort(), [...(config["target_modules"] as string[])].sort(), `${adapterName}: target_modules`);
      for (const t of theirs.values()) t.dispose();
    }

    // The source adapters are untouched, and a combined adapter survives a save / load round trip.
    model.setAdapter("second");
    close(logits(), expected.get("logits_second"), "logits_second after combining");
    const out = mkdtempSync(join(tmpdir(), "peft-ts-weighted-"));
    model.savePretrained(out, { selectedAdapters: ["weighted_svd"] });
    const reloaded = PeftModel.fromPretrained(baseModel(c), join(out, "weighted_svd"));
    close(noGrad(() => reloaded.forward(inputs)).logits, expected.get("logits_weighted_svd"), "logits_weighted_svd after save/load");
  });
});
