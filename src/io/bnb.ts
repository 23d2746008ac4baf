/**
 * Quantised Linear layers in the checkpoint layout of bitsandbytes + transformers (Linear4bit._save_to_state_dict
 * with QuantState.as_dict(packed=True), Linear8bitLt._save_to_state_dict):
 *   4-bit: `weight` U8 [(n·k + 1) / 2, 1], `weight.absmax` (F32, or U8 codes when double-quantised),
 *          `weight.quant_map` F32 [16], `weight.nested_absmax` F32, `weight.nested_quant_map` F32 [256], and
 *          `weight.quant_state.bitsandbytes__<nf4|fp4>`: the other fields as json.dumps text in a U8 tensor;
 *   8-bit: `weight` I8 [n, k], `SCB` F32 [n], `weight_format` U8 scalar 0 ("row").
 * Writing what was read gives the same bytes: the JSON is written as Python's json.dumps writes it.
 */
import { CheckpointError } from "../errors.js";
import { Linear4bit, Linear8bitLt, type QuantizedLinear } from "../nn/index.js";
import type { ComputeDType, Quantized4bit } from "../backend/quant.js";
import type { RawTensor } from "./safetensors.js";

/** Python's repr of a float (what json.dumps writes): shortest round-trip digits, "1.0", "1e-05", "1.5e+16". */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write the non-finite number ${x} as JSON`);
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, expText] = x.toExponential().split("e") as [string, string];
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) return `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  const text = String(x);
  return /[.e]/.test(text) ? text : `${text}.0`;
}

/** json.dumps(value) with its default separators (", " and ": "); `floats` names the keys whose numbers are floats. */
function pythonJsonDumps(value: Record<string, unknown>, floats: ReadonlySet<string>): string {
  const item = (key: string, v: unknown): string => {
    if (typeof v === "number") return floats.has(key) ? pythonFloat(v) : String(v);
    if (Array.isArray(v)) return `[${v.map((e) => item("", e)).join(", ")}]`;
    return JSON.stringify(v);
  };
  return `{${Object.entries(value)
    .map(([k, v]) => `${JSON.stringify(k)}: ${item(k, v)}`)
    .join(", ")}}`;
}

function u8(bytes: Uint8Array, shape: number[]): RawTensor {
  return { dtype: "U8", shape, data: bytes };
}

function f32(values: Float32Array): RawTensor {
  return { dtype: "F32", shape: [values.length], data: values };
}

/** The checkpoint tensors of a quantised layer at `prefix` (e.g. "model.layers.0.self_attn.q_proj"), bias excluded. */
export function quantizedLayerTensors(prefix: string, m: QuantizedLinear): [string, RawTensor][] {
  if (m instanceof Linear8bitLt) {
    const w = m.quantized;
    return [
      [`${prefix}.weight`, { dtype: "I8", shape: [w.rows, w.cols], data: w.data }],
      [`${prefix}.SCB`, f32(w.scb)],
      [`${prefix}.weight_format`, u8(Uint8Array.of(0), [])],
    ];
  }
  const l = m as Linear4bit;
  const q = l.quantized,
    n = q.nested;
  const state: Record<string, unknown> = {
    quant_type: q.quantType,
    blocksize: q.blocksize,
    dtype: l.weightDtype,
    shape: [l.outFeatures, l.inFeatures],
  };
  if (n) Object.assign(state, { nested_blocksize: n.blocksize, nested_dtype: "float32", nested_offset: n.offset });
  const out: [string, RawTensor][] = [
    [`${prefix}.weight`, u8(q.packed, [q.packed.length, 1])],
    [`${prefix}.weight.absmax`, n ? u8(n.codes, [n.codes.length]) : f32(q.absmax!)],
    [`${prefix}.weight.quant_map`, f32(q.code)],
  ];
  if (n)
    out.push([`${prefix}.weight.nested_absmax`, f32(n.absmax)], [`${prefix}.weight.nested_quant_map`, f32(n.code)]);
  const json = new TextEncoder().encode(pythonJsonDumps(state, new Set(["nested_offset"])));
  out.push([`${prefix}.weight.quant_state.bitsandbytes__${q.quantType}`, u8(json, [json.length])]);
  return out;
}

/** Take (and remove) the tensor `key` of the dtype wanted from the checkpoint's tensors. */
function take(tensors: Map<string, RawTensor>, key: string, dtype: RawTensor["dtype"]): RawTensor {
  const t = tensors.get(key);
  if (!t)
    throw new CheckpointError(
      `the bitsandbytes checkpoint has no tensor "${key}"`,
      "save it again with bitsandbytes, or load the float checkpoint with a quantizationConfig",
    );
  if (t.dtype !== dtype) throw new CheckpointError(`"${key}" is ${t.dtype}, bitsandbytes stores it as ${dtype}`);
  tensors.delete(key);
  return t;
}

function typed<T>(t: RawTensor): T {
  return t.data as T;
}

/**
 * A Linear4bit from its checkpoint tensors at `prefix` (consumed from `tensors`); its shape is checked against
 * [out, in]. `computeDtype` is the config's bnb_4bit_compute_dtype (it is not stored with the tensors).
 */
export function linear4bitFromTensors(
  prefix: string,
  tensors: Map<string, RawTensor>,
  inFeatures: number,
  outFeatures: number,
  computeDtype: ComputeDType = "float32",
): Linear4bit {
  const stateKey = [...tensors.keys()].find((k) => k.startsWith(`${prefix}.weight.quant_state.bitsandbytes__`));
  if (!stateKey)
    throw new CheckpointError(
      `the bitsandbytes checkpoint has no "${prefix}.weight.quant_state.bitsandbytes__nf4" (or __fp4)`,
      "is this a 4-bit checkpoint?",
    );
  const state = JSON.parse(new TextDecoder().decode(typed<Uint8Array>(take(tensors, stateKey, "U8")))) as Record<
    string,
    unknown
  >;
  const shape = state["shape"] as number[];
  if (shape?.[0] !== outFeatures || shape[1] !== inFeatures) {
    throw new CheckpointError(
      `"${prefix}" holds a [${shape}] weight but the model expects [${outFeatures}, ${inFeatures}]`,
    );
  }
  const quantType = state["quant_type"];
  if (quantType !== "nf4" && quantType !== "fp4")
    throw new CheckpointError(`"${stateKey}": quant_type ${JSON.stringify(quantType)} is not nf4 or fp4`);
  const blocksize = Number(state["blocksize"]);
  const packed = typed<Uint8Array>(take(tensors, `${prefix}.weight`, "U8"));
  const nestedOffset = state["nested_offset"];
  const absmaxT = take(tensors, `${prefix}.weight.absmax`, nestedOffset === undefined ? "F32" : "U8");
  const code = typed<Float32Array>(take(tensors, `${prefix}.weight.quant_map`, "F32"));
  const nested =
    nestedOffset === undefined
      ? null
      : {
          codes: typed<Uint8Array>(absmaxT),
          absmax: typed<Float32Array>(take(tensors, `${prefix}.weight.nested_absmax`, "F32")),
          code: typed<Float32Array>(take(tensors, `${prefix}.weight.nested_quant_map`, "F32")),
          blocksize: Number(state["nested_blocksize"]),
          offset: Math.fround(Number(nestedOffset)),
        };
  const numel = inFeatures * outFeatures;
  if (packed.length !== Math.ceil(numel / 2))
    throw new CheckpointError(
      `"${prefix}.weight" has ${packed.length} bytes; [${shape}] in 4 bits needs ${Math.ceil(numel / 2)}`,
    );
  const q: Quantized4bit = {
    quantType,
    blocksize,
    numel,
    packed,
    absmax: nested ? null : typed<Float32Array>(absmaxT),
    nested,
    code,
  };
  const layer = new Linear4bit(inFeatures, outFeatures, q);
  layer.weightDtype = String(state["dtype"]);
  layer.computeDtype = computeDtype;
  return layer;
}

/** A Linear8bitLt from its checkpoint tensors at `prefix` (consumed from `tensors`). */
export function linear8bitFromTensors(
  prefix: string,
  tensors: Map<string, RawTensor>,
  inFeatures: number,
  outFeatures: number,
  threshold: number,
): Linear8bitLt {
  const w = take(tensors, `${prefix}.weight`, "I8");
  if (w.shape[0] !== outFeatures || w.shape[1] !== inFeatures)
    throw new CheckpointError(
      `"${prefix}.weight" is [${w.shape}] but the model expects [${outFeatures}, ${inFeatures}]`,
    );
  const scb = typed<Float32Array>(take(tensors, `${prefix}.SCB`, "F32"));
  if (tensors.has(`${prefix}.weight_format`)) {
    const format = typed<Uint8Array>(take(tensors, `${prefix}.weight_format`, "U8"))[0];
    if (format !== 0)
      throw new CheckpointError(
        `"${prefix}.weight_format" is ${format}; only the row-major format (0) is supported, as in bitsandbytes today`,
      );
  }
  return new Linear8bitLt(
    inFeatures,
    outFeatures,
    { rows: outFeatures, cols: inFeatures, data: typed<Int8Array>(w), scb },
    null,
    threshold,
  );
}
