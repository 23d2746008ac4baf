/**
 * `quantization_config` with the field names of transformers' BitsAndBytesConfig, and the module swap that applies
 * it (transformers' replace_with_bnb_linear): every Linear (and GPT-2 Conv1D, transposed to [out, in]) becomes a
 * Linear4bit or Linear8bitLt, except the modules not to convert — the model's last child (lm_head, score), or
 * `llm_int8_skip_modules` when given — matched as transformers does, by substring of the module's dotted name.
 */
import { ConfigError } from "../errors.js";
import {
  Conv1D,
  Linear,
  Linear4bit,
  Linear8bitLt,
  QuantizedLinear,
  withDeferredLinearWeights,
  type Module,
} from "../nn/index.js";
import type { ComputeDType } from "../backend/quant.js";
import { Generator, parameter, transpose, type Tensor } from "../tensor/index.js";

/** BitsAndBytesConfig's fields (snake_case, as in config.json's quantization_config). */
export interface BitsAndBytesConfig {
  load_in_4bit?: boolean;
  load_in_8bit?: boolean;
  llm_int8_threshold?: number;
  llm_int8_skip_modules?: string[] | null;
  llm_int8_enable_fp32_cpu_offload?: boolean;
  llm_int8_has_fp16_weight?: boolean;
  bnb_4bit_compute_dtype?: string | null;
  bnb_4bit_quant_type?: "nf4" | "fp4";
  bnb_4bit_use_double_quant?: boolean;
  bnb_4bit_quant_storage?: string | null;
  /** Written by transformers' to_dict; read back as is. */
  quant_method?: "bitsandbytes";
  _load_in_4bit?: boolean;
  _load_in_8bit?: boolean;
}

/** A checked quantization_config. */
export interface QuantizationSettings {
  readonly bits: 4 | 8;
  readonly quantType: "nf4" | "fp4";
  readonly doubleQuant: boolean;
  readonly threshold: number;
  readonly skipModules: readonly string[] | null;
  /** bnb_4bit_compute_dtype: 4-bit products round x and the dequantised weight to it (float32 sums). */
  readonly computeDtype: ComputeDType;
  /** The config as transformers' BitsAndBytesConfig.to_dict() writes it into config.json. */
  readonly dict: Record<string, unknown>;
}

const KNOWN = new Set([
  "load_in_4bit",
  "load_in_8bit",
  "llm_int8_threshold",
  "llm_int8_skip_modules",
  "llm_int8_enable_fp32_cpu_offload",
  "llm_int8_has_fp16_weight",
  "bnb_4bit_compute_dtype",
  "bnb_4bit_quant_type",
  "bnb_4bit_use_double_quant",
  "bnb_4bit_quant_storage",
  "quant_method",
  "_load_in_4bit",
  "_load_in_8bit",
]);

function field<T>(
  raw: Record<string, unknown>,
  name: string,
  fallback: T,
  ok: (v: unknown) => boolean,
  expected: string,
): T {
  const v = raw[name];
  if (v === undefined) return fallback;
  if (!ok(v)) throw new ConfigError(`quantization_config.${name} must be ${expected}, got ${JSON.stringify(v)}`);
  return v as T;
}

const isBool = (v: unknown) => typeof v === "boolean";

/** The bnb_4bit_compute_dtype values bitsandbytes' 4-bit product runs in on CPU-class hardware. */
const COMPUTE_DTYPES: readonly ComputeDType[] = ["float32", "bfloat16", "float16"];

/** Check a quantization_config (BitsAndBytesConfig fields); errors name the field and the fix. */
export function parseQuantizationConfig(config: BitsAndBytesConfig | Record<string, unknown>): QuantizationSettings {
  const raw = config as Record<string, unknown>;
  const unknown = Object.keys(raw).filter((k) => !KNOWN.has(k));
  if (unknown.length > 0) {
    throw new ConfigError(
      `quantization_config has unknown field(s) ${unknown.join(", ")}`,
      `BitsAndBytesConfig's fields are ${[...KNOWN].filter((k) => !k.startsWith("_")).join(", ")}`,
    );
  }
  if (raw["quant_method"] !== undefined && raw["quant_method"] !== "bitsandbytes") {
    throw new ConfigError(
      `quantization_config.quant_method "${String(raw["quant_method"])}" is not supported; only "bitsandbytes" is`,
    );
  }
  const in4 = field(
    raw,
    "load_in_4bit",
    field(raw, "_load_in_4bit", false, isBool, "true or false"),
    isBool,
    "true or false",
  );
  const in8 = field(
    raw,
    "load_in_8bit",
    field(raw, "_load_in_8bit", false, isBool, "true or false"),
    isBool,
    "true or false",
  );
  if (in4 === in8)
    throw new ConfigError(
      `quantization_config needs exactly one of load_in_4bit and load_in_8bit set to true (got ${in4} and ${in8})`,
    );
  const quantType = field(
    raw,
    "bnb_4bit_quant_type",
    "fp4" as "nf4" | "fp4",
    (v) => v === "nf4" || v === "fp4",
    `"nf4" or "fp4"`,
  );
  const doubleQuant = field(raw, "bnb_4bit_use_double_quant", false, isBool, "true or false");
  const threshold = field(
    raw,
    "llm_int8_threshold",
    6.0,
    (v) => typeof v === "number" && v >= 0 && Number.isFinite(v),
    "a number ≥ 0",
  );
  const skipModules = field(
    raw,
    "llm_int8_skip_modules",
    null as string[] | null,
    (v) => v === null || (Array.isArray(v) && v.every((s) => typeof s === "string")),
    "a list of module names or null",
  );
  const computeDtype = field(
    raw,
    "bnb_4bit_compute_dtype",
    null as string | null,
    (v) => v === null || typeof v === "string",
    "a dtype name",
  );
  if (computeDtype !== null && !COMPUTE_DTYPES.includes(computeDtype as ComputeDType)) {
    throw new ConfigError(
      `quantization_config.bnb_4bit_compute_dtype "${computeDtype}" is not supported`,
      `use one of ${COMPUTE_DTYPES.join(", ")} (float32, the default, leaves the products unrounded)`,
    );
  }
  const storage = field(
    raw,
    "bnb_4bit_quant_storage",
    null as string | null,
    (v) => v === null || typeof v === "string",
    "a dtype name",
  );
  if (storage !== null && storage !== "uint8")
    throw new ConfigError(
      `quantization_config.bnb_4bit_quant_storage "${storage}" is not supported`,
      `use "uint8" (the default)`,
    );
  if (field(raw, "llm_int8_has_fp16_weight", false, isBool, "true or false")) {
    throw new ConfigError(
      "quantization_config.llm_int8_has_fp16_weight is not supported (peft-ts keeps 8-bit weights frozen in int8)",
      "leave it false",
    );
  }
  const offload = field(raw, "llm_int8_enable_fp32_cpu_offload", false, isBool, "true or false");
  const dict: Record<string, unknown> = {
    _load_in_4bit: in4,
    _load_in_8bit: in8,
    bnb_4bit_compute_dtype: computeDtype ?? "float32",
    bnb_4bit_quant_storage: "uint8",
    bnb_4bit_quant_type: quantType,
    bnb_4bit_use_double_quant: doubleQuant,
    llm_int8_enable_fp32_cpu_offload: offload,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: skipModules,
    llm_int8_threshold: threshold,
    load_in_4bit: in4,
    load_in_8bit: in8,
    quant_method: "bitsandbytes",
  };
  return {
    bits: in4 ? 4 : 8,
    quantType,
    doubleQuant,
    threshold,
    skipModules,
    computeDtype: (computeDtype ?? "float32") as ComputeDType,
    dict,
  };
}

/** transformers' modules_to_not_convert: llm_int8_skip_modules when given, else the model's last child (lm_head, score, …). */
export function modulesToNotConvert(s: QuantizationSettings, root: Module): readonly string[] {
  return (
    s.skipModules ??
    root
      .namedChildren()
      .slice(-1)
      .map(([name]) => name)
  );
}

/** Whether the module at `path` is converted (no key of modulesToNotConvert occurs in its dotted name). */
export function isConverted(path: string, notConvert: readonly string[]): boolean {
  return !notConvert.some((key) => path.includes(key));
}

/** The quantised counterpart of a float Linear or Conv1D (its weight as [out, in]). */
export function quantizeLinear(m: Linear | Conv1D, s: QuantizationSettings): QuantizedLinear {
  const w: Tensor = m instanceof Conv1D ? transpose(m.weight) : m.weight;
  const bias = m.ownParameter("bias");
  return s.bits === 4
    ? Linear4bit.fromFloat(w, bias, {
        quantType: s.quantType,
        doubleQuant: s.doubleQuant,
        computeDtype: s.computeDtype,
      })
    : Linear8bitLt.fromFloat(w, bias, s.threshold);
}

/** Swap one Linear/Conv1D of `root` for its quantised form (when converted), freeing its float weight. */
export function convertLinear(
  root: Module,
  path: string,
  m: Linear | Conv1D,
  s: QuantizationSettings,
  notConvert: readonly string[],
): void {
  if (!isConverted(path, notConvert)) return;
  root.setSubmodule(path, quantizeLinear(m, s));
  if (![...root.stateDict().values()].includes(m.weight)) m.weight.dispose(); // a tied weight lives on elsewhere
}

/** Quantise every Linear/Conv1D of a loaded float model in place, one layer at a time (transformers' replace_with_bnb_linear). */
export function quantizeModel(root: Module, s: QuantizationSettings): void {
  const notConvert = modulesToNotConvert(s, root);
  for (const [path, m] of root.namedModules()) {
    if (m instanceof Linear || m instanceof Conv1D) convertLinear(root, path, m, s, notConvert);
  }
}

/**
 * transformers' model.dequantize(): every quantised Linear of the tree (adapter layers' base layers included) back to a
 * float32 Linear with the dequantised weight and the same bias. Merging adapters afterwards gives a float32 model.
 */
export function dequantizeModel<M extends Module>(root: M): M {
  for (const [path, m] of root.namedModules()) {
    if (!(m instanceof QuantizedLinear)) continue;
    const linear = withDeferredLinearWeights(
      () => new Linear(m.inFeatures, m.outFeatures, { bias: false, generator: new Generator() }),
    );
    linear.weight = linear.registerParameter("weight", parameter(m.dequantizeWeight()));
    if (m.bias) linear.bias = linear.registerParameter("bias", m.bias);
    root.setSubmodule(path, linear);
  }
  return root;
}
