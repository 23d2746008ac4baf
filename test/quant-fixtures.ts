/** The golden files of scripts/make_quant_fixtures.py (test/fixtures/quant) for the quantisation tests. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSafetensors, type RawTensor } from "../src/io/safetensors.js";
import { float16BitsToFloat32 } from "../src/io/dtypes.js";

/** test/fixtures/quant, resolved from the compiled tests (dist/test). */
export const QUANT_FIXTURES = fileURLToPath(new URL("../../test/fixtures/quant/", import.meta.url));

/** The tensors of one fixture file. */
export function readQuantFixture(name: string): Map<string, RawTensor> {
  return readSafetensors(join(QUANT_FIXTURES, name)).tensors;
}

/** A fixture input as float32 (inputs are stored as F16 or F32). */
export function floatInput(t: RawTensor): Float32Array {
  if (t.dtype !== "F16") return t.data as Float32Array;
  const out = new Float32Array((t.data as Uint16Array).length);
  float16BitsToFloat32(t.data as Uint16Array, out);
  return out;
}
