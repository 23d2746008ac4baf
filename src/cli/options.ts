/** Parsing command-line option values with one-line errors. */
import { MODEL_DTYPES, type ModelDType } from "../models/pretrained.js";
import type { BitsAndBytesConfig } from "../models/quantization.js";
import { CliError } from "./errors.js";

/**
 * Join "--name -5" into "--name=-5": node's parseArgs takes a value that starts with a dash for an option and
 * refuses it as "ambiguous", where the user meant a (negative) number that the option's own check then judges.
 */
export function joinNegativeValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!,
      next = argv[i + 1];
    if (/^--[^=]+$/.test(arg) && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** A number option value (finite, ≥ min when given). */
export function numOption(name: string, value: string, min?: number, max?: number): number {
  const v = Number(value);
  if (value.trim() === "" || !Number.isFinite(v))
    throw new CliError(`${name} expects a number, got "${value}"`, `e.g. ${name} 0.7`);
  if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
    throw new CliError(
      `${name} must be ` +
        `${min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `≥ ${min}` : `≤ ${max}`}, ` +
        `got ${v}`,
      `pass a value in range to ${name}`,
    );
  }
  return v;
}

/** An integer option value (≥ min when given). */
export function intOption(name: string, value: string, min?: number): number {
  const v = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim()))
    throw new CliError(
      `${name} expects a whole number, got "${value}"`,
      `e.g. ${name} ${min !== undefined ? Math.max(min, 10) : 10}`,
    );
  if (min !== undefined && v < min)
    throw new CliError(`${name} must be ≥ ${min}, got ${v}`, `pass a whole number ≥ ${min} to ${name}`);
  return v;
}

/** A --dtype value: the dtype a model's weights load in ("auto": the checkpoint's torch_dtype). */
export function dtypeOption(value: string): ModelDType {
  if (!(MODEL_DTYPES as readonly string[]).includes(value))
    throw new CliError(
      `--dtype must be one of ${MODEL_DTYPES.join(", ")}, got "${value}"`,
      "bfloat16/float16 halve the weights' memory (and the bytes each decoded token reads)",
    );
  return value as ModelDType;
}

/**
 * A --quantization value (vLLM's name): "bitsandbytes" quantises the Linear layers on load to 4-bit NF4 with double
 * quantisation (QLoRA's recipe), computed in the --dtype when that is a half type, else in float32.
 */
export function quantizationOption(value: string, dtype: ModelDType): BitsAndBytesConfig {
  if (value !== "bitsandbytes")
    throw new CliError(
      `--quantization must be bitsandbytes, got "${value}"`,
      "--quantization bitsandbytes loads the Linear layers in 4-bit NF4 (a checkpoint saved quantised needs no flag)",
    );
  return {
    load_in_4bit: true,
    bnb_4bit_quant_type: "nf4",
    bnb_4bit_use_double_quant: true,
    bnb_4bit_compute_dtype: dtype === "bfloat16" || dtype === "float16" ? dtype : "float32",
  };
}
