/** Checks of Python peft golden cases (an adapter folder + expected outputs), shared by the golden test files. */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromPretrained } from "../src/models/auto.js";
import { PeftModel, getPeftModel, configFromJson } from "../src/peft/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { noGrad, tensor, type Tensor } from "../src/tensor/index.js";
import { loadSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import {
  type GoldenSet,
  REFERENCE_SET,
  TOLERANCE,
  maxAbsDiff,
  readExpected,
  readInputs,
  taskOfClass,
} from "./golden.js";

/** A peft/<case>/case.json. */
export interface PeftCase {
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

/** Cases of the methods this build supports (more are added as methods land). */
export function casesOf(peftTypes: string[], set = REFERENCE_SET): [string, PeftCase][] {
  return Object.keys(set.index.cases)
    .map((name): [string, PeftCase] => [
      name,
      JSON.parse(readFileSync(join(set.peftDir(name), "case.json"), "utf8")) as PeftCase,
    ])
    .filter(([, c]) => peftTypes.includes(c.peft_type));
}

/** The base model of a case, loaded from the set's models/ folder. */
export function baseModel(c: PeftCase, set = REFERENCE_SET) {
  const name = c.base.replace(/^models\//, "");
  return fromPretrained(set.modelDir(name), taskOfClass(set.index.models[name]!.class));
}

/** The case's own inputs.json when it has one, else its base model's. */
export function inputsFor(name: string, c: PeftCase, set = REFERENCE_SET): Record<string, Tensor> {
  return existsSync(join(set.peftDir(name), "inputs.json"))
    ? readInputs(set.peftDir(name))
    : readInputs(set.modelDir(c.base.replace(/^models\//, "")));
}

/** Assert |got − want| ≤ 1e-4 everywhere. */
export function close(got: Tensor | undefined, want: Tensor | undefined, what: string): void {
  assert.ok(got && want, `${what}: missing output`);
  const g = got.rank === 0 ? got.view_([1], [1], got.offset) : got;
  const diff = maxAbsDiff(g, want);
  assert.ok(diff <= TOLERANCE, `${what}: max |diff| ${diff} > ${TOLERANCE}`);
}

/** The forward inputs of a golden batch (no generation prompts; labels and positions only when asked). */
export function forwardInputs(inputs: Record<string, Tensor>, labels: boolean): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(inputs))
    if (!k.startsWith("gen") && (labels || (k !== "labels" && !k.endsWith("Positions")))) out[k] = v;
  return out;
}

/** How a case's recording differs from the common one. */
export interface LoadedCaseOptions {
  /** loss_adapter was computed on a copy loaded with is_trainable=True (AdaLoRA: its loss needs the trainable adapter). */
  lossFromTrainableLoad?: boolean;
  /** The golden folder the case lives in (default: test/fixtures/reference). */
  set?: GoldenSet;
}

/** Check everything a golden case records for an adapter folder loaded from disk. */
export function checkLoadedCase(name: string, c: PeftCase, opts: LoadedCaseOptions = {}): void {
  const set = opts.set ?? REFERENCE_SET;
  const expected = readExpected(set.peftDir(name));
  const inputs = inputsFor(name, c, set);
  const model = PeftModel.fromPretrained(baseModel(c, set), join(set.peftDir(name), "adapter"));
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
      const trainable = PeftModel.fromPretrained(baseModel(c, set), join(set.peftDir(name), "adapter"), {
        isTrainable: true,
      }).eval();
      close(
        noGrad(() => trainable.forward(forwardInputs(inputs, true))).loss,
        expected.get("loss_adapter"),
        "loss_adapter (trainable load)",
      );
    } else {
      close(run(true).loss, expected.get("loss_adapter"), "loss_adapter");
    }
  }
  if (expected.has("logits_disabled")) {
    const disabled = model.withAdapterDisabled(() => noGrad(() => model.forward(forwardInputs(inputs, false))));
    close(disabled.logits, expected.get("logits_disabled"), "logits_disabled");
  }
  if (expected.has("start_logits_disabled")) {
    const d = model.withAdapterDisabled(() => noGrad(() => model.forward(forwardInputs(inputs, false))));
    close(d.startLogits, expected.get("start_logits_disabled"), "start_logits_disabled");
  }
  if (expected.has("generate_greedy_adapter")) {
    const taskIds = inputs["taskIds"] ? { taskIds: inputs["taskIds"] } : {};
    const gen = model.generate({
      inputIds: inputs["genInputIds"]!,
      attentionMask: inputs["genAttentionMask"]!,
      maxNewTokens: 6,
      ...taskIds,
    });
    assert.deepEqual(
      Array.from(gen.dataSync()),
      Array.from(expected.get("generate_greedy_adapter")!.dataSync()),
      "generate_greedy_adapter",
    );
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
  /** The golden folder the case lives in (default: test/fixtures/reference). */
  set?: GoldenSet;
}

/** A fresh adapter made here from the case's config saves the same tensors and config fields as Python's. */
export function checkFreshCase(name: string, c: PeftCase, opts: FreshCaseOptions = {}): void {
  const set = opts.set ?? REFERENCE_SET;
  const config = configFromJson({ ...c.config, peft_type: c.peft_type });
  const peft = getPeftModel(baseModel(c, set), config);
  assert.equal(peft.trainableParametersLine(), c.print_trainable_parameters);
  assert.deepEqual(peft.getNbTrainableParameters(), [c.trainable_params, c.all_params]);
  const dir = mkdtempSync(join(tmpdir(), `peft-ts-${name}-`));
  peft.savePretrained(dir);
  const saved = loadSafetensors(join(dir, "adapter_model.safetensors"));
  const shapes = Object.fromEntries([...saved].map(([k, t]) => [k, t.shape]));
  const want = Object.fromEntries(
    Object.entries(c.adapter_tensors).map(([k, [shape]]) => [k, opts.shapes?.[k] ?? shape]),
  );
  assert.deepEqual(shapes, want, "saved tensor names and shapes");
  const ours = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
  const theirs = JSON.parse(readFileSync(join(set.peftDir(name), "adapter", "adapter_config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  assert.deepEqual(Object.keys(ours).sort(), [...c.adapter_config_keys].sort(), "adapter_config.json keys");
  for (const key of c.adapter_config_keys) {
    if (key === "base_model_name_or_path") continue;
    const norm = (v: unknown) => (key === "target_modules" && Array.isArray(v) ? [...v].sort() : v);
    const wanted = opts.fields && key in opts.fields ? opts.fields[key] : theirs[key];
    assert.deepEqual(norm(ours[key]), norm(wanted), `adapter_config.json field ${key}`);
  }
}

/**
 * For each case of `peftTypes`, an adapter made here (its trainable tensors set to amplitude·sin(i + 1)) saved under
 * `out/<case>` with the logits it gives in logits.safetensors, for the golden script's --check-ts-adapters; each
 * reloads to the same logits and changes the model's.
 */
export function saveTsAdapters(set: GoldenSet, peftTypes: string[], out: string, amplitude: number): void {
  for (const [name, c] of casesOf(peftTypes, set)) {
    const peft = getPeftModel(baseModel(c, set), configFromJson({ ...c.config, peft_type: c.peft_type }));
    noGrad(() => {
      const wave = (p: Tensor) =>
        tensor(
          Float32Array.from(p.dataSync(), (_, i) => Math.sin(i + 1) * amplitude),
          p.shape,
        );
      for (const [, p] of peft.namedParameters()) if (p.requiresGrad) p.copy_(wave(p));
    });
    const dir = join(out, name);
    peft.eval().savePretrained(dir);
    const inputs = forwardInputs(readInputs(set.modelDir(c.base.replace(/^models\//, ""))), false);
    const logits = noGrad(() => peft.forward(inputs)).logits;
    const reloaded = PeftModel.fromPretrained(baseModel(c, set), dir);
    assert.equal(maxAbsDiff(noGrad(() => reloaded.forward(inputs)).logits, logits), 0, `${name}: reloaded adapter`);
    assert.ok(
      maxAbsDiff(logits, noGrad(() => reloaded.withAdapterDisabled(() => reloaded.forward(inputs))).logits) > 1e-3,
      `${name}: the adapter acts`,
    );
    writeSafetensors(join(dir, "logits.safetensors"), new Map([["logits", logits]]), { format: "pt" });
  }
}
