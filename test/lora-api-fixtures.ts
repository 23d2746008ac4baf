/** The goldens of scripts/make_method_fixtures_lora_api.py (test/fixtures/methods-lora-api) and how tests load them. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromPretrained } from "../src/models/auto.js";
import { PeftModel } from "../src/peft/index.js";
import type { Tensor } from "../src/tensor/index.js";
import { modelDir, readExpected, readInputs } from "./golden.js";

/** test/fixtures/methods-lora-api, resolved from the compiled tests (dist/test). */
export const LORA_API = fileURLToPath(new URL("../../test/fixtures/methods-lora-api/", import.meta.url));

/** cases.json: each case's arguments and the JSON results peft gave. */
export const LORA_API_CASES = JSON.parse(readFileSync(join(LORA_API, "cases.json"), "utf8")) as Record<
  string,
  Record<string, unknown>
>;

/** An adapter folder of the set ("first", "second", "third", "fourth"). */
export function loraApiAdapter(name: string): string {
  return join(LORA_API, "adapters", name);
}

/** expected.safetensors. */
export function loraApiExpected(): Map<string, Tensor> {
  return readExpected(LORA_API);
}

/** The token ids every case ran on. */
export function loraApiInputs(): { inputIds: Tensor } {
  return readInputs(LORA_API) as { inputIds: Tensor };
}

/** The tiny GPT-2 with the named adapters loaded in order, as the script loads them (`trainable` ones with isTrainable). */
export function loadLoraApiAdapters(names: string[], trainable: string[] = []): PeftModel {
  const [first, ...rest] = names;
  const peft = PeftModel.fromPretrained(fromPretrained(modelDir("gpt2"), "causal-lm"), loraApiAdapter(first!), {
    adapterName: first!,
    isTrainable: trainable.includes(first!),
  });
  for (const n of rest) peft.loadAdapter(loraApiAdapter(n), n, { isTrainable: trainable.includes(n) });
  return peft;
}
