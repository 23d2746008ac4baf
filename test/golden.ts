/** Access to the golden files made by Python transformers/peft, vendored in test/fixtures/reference (scripts/vendor-reference.sh). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { type Tensor, tensor } from "../src/tensor/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import type { Task } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { diffUpToSign } from "./helpers.js";

/** test/fixtures/reference, resolved from the compiled tests (dist/test). */
export const REFERENCE = fileURLToPath(new URL("../../test/fixtures/reference/", import.meta.url));

/** test/fixtures/families: the golden files of scripts/make_family_fixtures.py (newer model families). */
export const FAMILIES = fileURLToPath(new URL("../../test/fixtures/families/", import.meta.url));

/** A folder of golden files laid out as test/fixtures/reference: index.json, models/<name>/, peft/<case>/. */
export class GoldenSet {
  readonly index: { models: Record<string, { class: string }>; cases: Record<string, unknown> };

  constructor(readonly root: string) {
    this.index = JSON.parse(readFileSync(join(root, "index.json"), "utf8"));
  }

  /** Path of a golden model folder. */
  modelDir(name: string): string {
    return join(this.root, "models", name);
  }

  /** Path of a golden PEFT case folder. */
  peftDir(name: string): string {
    return join(this.root, "peft", name);
  }
}

/** The goldens of Python transformers/peft, vendored into test/fixtures/reference by scripts/vendor-reference.sh. */
export const REFERENCE_SET = new GoldenSet(REFERENCE);

/** Path of a golden model folder. */
export function modelDir(name: string): string {
  return join(REFERENCE, "models", name);
}

/** Path of a golden PEFT case folder. */
export function peftDir(name: string): string {
  return join(REFERENCE, "peft", name);
}

/** A case.json object. */
export function readCase(
  dir: string,
): Record<string, unknown> & { class?: string; expected: Record<string, [number[], string]> } {
  return JSON.parse(readFileSync(join(dir, "case.json"), "utf8"));
}

/** inputs.json as int32 tensors, keyed by the camelCase name the forward expects. */
export function readInputs(dir: string): Record<string, Tensor> {
  const raw = JSON.parse(readFileSync(join(dir, "inputs.json"), "utf8")) as Record<string, number[][] | number[]>;
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(raw)) {
    const camel = k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const flat = (v as unknown[]).flat(2) as number[];
    const shape = Array.isArray(v[0]) ? [v.length, (v[0] as number[]).length] : [v.length];
    out[camel] = tensor(Int32Array.from(flat), shape);
  }
  return out;
}

/** expected.safetensors of a folder. */
export function readExpected(dir: string): Map<string, Tensor> {
  return loadSafetensors(join(dir, "expected.safetensors"));
}

/** Largest |a − b| over two tensors of the same shape. */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  if (a.shape.join() !== b.shape.join()) throw new Error(`shapes differ: [${a.shape}] vs [${b.shape}]`);
  const x = a.dataSync(),
    y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return Number.isNaN(m) ? Infinity : m;
}

/** The task of a transformers class name. */
export function taskOfClass(cls: string): Task {
  if (/LMHeadModel$|ForCausalLM$/.test(cls)) return "causal-lm";
  if (/ForConditionalGeneration$/.test(cls)) return "seq2seq-lm";
  if (/ForSequenceClassification$/.test(cls)) return "sequence-classification";
  if (/ForTokenClassification$/.test(cls)) return "token-classification";
  if (/ForQuestionAnswering$/.test(cls)) return "question-answering";
  return "base";
}

/** Golden outputs agree within 1e-4 absolute (logits are O(1) in the goldens, so this is ~1e-4 relative too). */
export const TOLERANCE = 1e-4;

/** Assert every recorded output of `names` (logits, loss, hidden_states_N, …; not generations) is within TOLERANCE. */
export function compareOutputs(out: ModelOutput, expected: Map<string, Tensor>, names: Record<string, unknown>): void {
  for (const key of Object.keys(names)) {
    if (key.startsWith("generate")) continue;
    const want = expected.get(key)!;
    const got = pick(out, key);
    assert.ok(got, `model output has nothing for ${key}`);
    const diff = maxAbsDiff(got.rank === 0 ? reshape1(got) : got, want);
    assert.ok(diff <= TOLERANCE, `${key}: max |diff| ${diff} > ${TOLERANCE}`);
  }
}

function reshape1(t: Tensor) {
  return t.view_([1], [1], t.offset);
}

function pick(out: ModelOutput, key: string) {
  const layer = /^(encoder_|decoder_)?hidden_states_(\d+)$/.exec(key);
  if (layer) {
    const list =
      layer[1] === "encoder_"
        ? out.encoderHiddenStates
        : layer[1] === "decoder_"
          ? out.decoderHiddenStates
          : out.hiddenStates;
    return list?.[Number(layer[2])];
  }
  const map: Record<string, keyof ModelOutput> = {
    logits: "logits",
    loss: "loss",
    start_logits: "startLogits",
    end_logits: "endLogits",
  };
  return out[map[key]!] as Tensor | undefined;
}

/**
 * Compare a fresh adapter's parameters with the tensors Python peft saved for it (keyed without
 * "base_model.model." and the adapter name): LoRA A/B up to the sign of each singular pair when `upToSign` (SVD
 * inits), the rest within `tol` as they are. Returns how many factors and other weights were compared.
 */
export function compareWithSaved(
  model: { namedParameters(): [string, Tensor][] },
  saved: Map<string, Tensor>,
  upToSign: boolean,
  tol: number,
): { factors: number; weights: number } {
  const ours = new Map(
    model.namedParameters().map(([k, p]) => [k.replace(/^base_model\.model\./, "").replace(".default", ""), p]),
  );
  let factors = 0,
    weights = 0;
  for (const [key, want] of saved) {
    const got = ours.get(key);
    assert.ok(got, `${key} exists here`);
    const [rows, cols] = want.shape as [number, number];
    const factor = /lora_[AB]\.weight$/.test(key);
    const diff =
      factor && upToSign
        ? diffUpToSign(got.dataSync(), want.dataSync(), rows, cols, key.includes("lora_A"))
        : maxAbsDiff(got, want);
    assert.ok(diff < tol, `${key}: max |diff| ${diff}`);
    if (factor) factors++;
    else weights++;
  }
  return { factors, weights };
}
