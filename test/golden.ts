/** Access to the golden files made by Python transformers/peft, vendored in test/fixtures/reference (scripts/vendor-reference.sh). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tensor, tensor } from "../src/tensor/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import type { Task } from "../src/models/auto.js";

/** test/fixtures/reference, resolved from the compiled tests (dist/test). */
export const REFERENCE = fileURLToPath(new URL("../../test/fixtures/reference/", import.meta.url));

/** Path of a golden model folder. */
export function modelDir(name: string): string {
  return join(REFERENCE, "models", name);
}

/** Path of a golden PEFT case folder. */
export function peftDir(name: string): string {
  return join(REFERENCE, "peft", name);
}

/** A case.json object. */
export function readCase(dir: string): Record<string, unknown> & { class?: string; expected: Record<string, [number[], string]> } {
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
  const x = a.dataSync(), y = b.dataSync();
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

