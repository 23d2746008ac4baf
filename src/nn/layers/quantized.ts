/**
 * Linear layers with frozen quantised weights, named as bitsandbytes names them: Linear4bit (NF4/FP4 in blocks of
 * 64, optionally double-quantised absmax) and Linear8bitLt (LLM.int8 rows with the outlier threshold). The weight is
 * no Parameter: it never trains, never has a gradient, and the float32 matrix exists only panel by panel inside the
 * kernels. The bias keeps its dtype (a float32 parameter, or frozen half). `dequantizeWeight()` and `setWeight()` are for merging adapters.
 */
import {
  type Tensor,
  contiguous,
  noGrad,
  parameter,
  quantizedLinear,
  tensor,
  tidy,
  toFloat,
} from "../../tensor/index.js";
import { CpuStorage } from "../../backend/pool.js";
import {
  dequantize4bit,
  dequantizeInt8Rows,
  quantize4bit,
  quantizeInt8Weight,
  type ComputeDType,
  type QuantType4,
  type Quantize4bitKernel,
  type Quantized4bit,
  type QuantizedInt8,
  type QuantizedMatrix,
} from "../../backend/quant.js";
import { backend } from "../../backend/index.js";
import { Module } from "../module.js";

/** The active backend's 4-bit quantiser. */
const nativeOrJs: Quantize4bitKernel = (values, type, blocksize, packed, absmax) =>
  backend().quantize4bit(values, type, blocksize, packed, absmax);

/**
 * fn applied to the float32 values of a [out, in] weight, read in place from an engine tensor (a half weight through a
 * float32 copy that is disposed afterwards): a quantised build makes no garbage the size of a weight, which the
 * garbage collector would free only later.
 */
function withWeightValues<T>(w: Tensor, outFeatures: number, inFeatures: number, fn: (values: Float32Array) => T): T {
  if (w.rank !== 2 || w.shape[0] !== outFeatures || w.shape[1] !== inFeatures) {
    throw new Error(`quantized linear: a weight of shape [${w.shape}] does not fit [${outFeatures}, ${inFeatures}]`);
  }
  return noGrad(() =>
    tidy(() => {
      const f = contiguous(toFloat(w));
      if (!(f.storage instanceof CpuStorage)) return fn(Float32Array.from(f.dataSync()));
      return fn((f.storage.data as Float32Array).subarray(f.offset, f.offset + f.size));
    }),
  );
}

/** What both quantised Linear kinds share: sizes, the float32 bias, the forward through the quantised product. */
export abstract class QuantizedLinear extends Module {
  bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias: Tensor | null,
  ) {
    super();
    this.bias = this.registerParameter("bias", bias ? parameter(bias) : null); // a half bias stays frozen
  }

  /** The weight as the quantised kernels read it. */
  abstract get matrix(): QuantizedMatrix;
  /** The weight dequantised to a float32 [out, in] tensor. */
  abstract dequantizeWeight(): Tensor;
  /** Replace the weight by this float32 [out, in] tensor, quantised the same way (merging an adapter). */
  abstract setWeight(w: Tensor): void;
  /** Bytes the quantised weight takes (packed values and statistics). */
  abstract weightBytes(): number;

  /** LLM.int8's outlier threshold (0: none; 4-bit layers have none). */
  protected get threshold(): number {
    return 0;
  }

  /** Apply the layer to [..., inFeatures]. */
  forward(x: Tensor): Tensor {
    return quantizedLinear(x, this.matrix, this.bias, this.threshold);
  }
}

/** How Linear4bit quantises (BitsAndBytesConfig's bnb_4bit_* fields). */
export interface Linear4bitOptions {
  quantType: QuantType4;
  /** Double quantisation of the absmax (bnb_4bit_use_double_quant / compress_statistics). */
  doubleQuant: boolean;
  /** bnb_4bit_compute_dtype (default float32). */
  computeDtype?: ComputeDType;
}

/** bitsandbytes' Linear4bit: y = x·dequant(W)ᵀ + b. */
export class Linear4bit extends QuantizedLinear {
  private q: Quantized4bit;
  /** The dtype of the weight before quantisation (the `dtype` of bitsandbytes' quant_state, kept for saving). */
  weightDtype = "float32";
  /** bnb_4bit_compute_dtype: products round the input and the dequantised weight to it, and sum in float32. */
  computeDtype: ComputeDType = "float32";

  constructor(inFeatures: number, outFeatures: number, weight: Quantized4bit, bias: Tensor | null = null) {
    super(inFeatures, outFeatures, bias);
    if (weight.numel !== inFeatures * outFeatures)
      throw new Error(`Linear4bit: ${weight.numel} quantised values do not fit [${outFeatures}, ${inFeatures}]`);
    this.q = weight;
  }

  /** Quantise a float32 [out, in] weight (and keep the bias). */
  static fromFloat(weight: Tensor, bias: Tensor | null, opts: Linear4bitOptions): Linear4bit {
    const [outF, inF] = weight.shape as [number, number];
    const q = withWeightValues(weight, outF, inF, (values) =>
      quantize4bit(values, opts.quantType, { doubleQuant: opts.doubleQuant, kernel: nativeOrJs }),
    );
    const layer = new Linear4bit(inF, outF, q, bias);
    layer.computeDtype = opts.computeDtype ?? "float32";
    return layer;
  }

  /** The quantised weight (packed values, absmax or nested absmax, code). */
  get quantized(): Quantized4bit {
    return this.q;
  }

  get matrix(): QuantizedMatrix {
    return { format: "4bit", n: this.outFeatures, k: this.inFeatures, q: this.q, compute: this.computeDtype };
  }

  dequantizeWeight(): Tensor {
    return tensor(dequantize4bit(this.q), [this.outFeatures, this.inFeatures]);
  }

  setWeight(w: Tensor): void {
    const { quantType, nested } = this.q;
    this.q = withWeightValues(w, this.outFeatures, this.inFeatures, (values) =>
      quantize4bit(values, quantType, { doubleQuant: nested !== null, kernel: nativeOrJs }),
    );
  }

  weightBytes(): number {
    const n = this.q.nested;
    return (
      this.q.packed.byteLength +
      (this.q.absmax?.byteLength ?? 0) +
      (n ? n.codes.byteLength + n.absmax.byteLength + n.code.byteLength : 0) +
      this.q.code.byteLength
    );
  }

  protected override extraRepr(): string {
    return (
      `in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null}, ` +
      `quant_type=${this.q.quantType}, double_quant=${this.q.nested !== null}, compute_dtype=${this.computeDtype}`
    );
  }
}

/** bitsandbytes' Linear8bitLt (inference weights, has_fp16_weights=False): LLM.int8's product with `threshold`. */
export class Linear8bitLt extends QuantizedLinear {
  private w: QuantizedInt8;

  constructor(
    inFeatures: number,
    outFeatures: number,
    weight: QuantizedInt8,
    bias: Tensor | null = null,
    readonly llmInt8Threshold = 6.0,
  ) {
    super(inFeatures, outFeatures, bias);
    if (weight.rows !== outFeatures || weight.cols !== inFeatures)
      throw new Error(
        `Linear8bitLt: int8 rows [${weight.rows}, ${weight.cols}] do not fit [${outFeatures}, ${inFeatures}]`,
      );
    this.w = weight;
  }

  /** Quantise a float32 [out, in] weight (rounded to float16 first, as bitsandbytes does). */
  static fromFloat(weight: Tensor, bias: Tensor | null, threshold = 6.0): Linear8bitLt {
    const [outF, inF] = weight.shape as [number, number];
    return new Linear8bitLt(
      inF,
      outF,
      withWeightValues(weight, outF, inF, (values) => quantizeInt8Weight(values, outF, inF)),
      bias,
      threshold,
    );
  }

  /** The int8 rows (CB) and their absmax (SCB). */
  get quantized(): QuantizedInt8 {
    return this.w;
  }

  get matrix(): QuantizedMatrix {
    return { format: "int8", n: this.outFeatures, k: this.inFeatures, w: this.w };
  }

  protected override get threshold(): number {
    return this.llmInt8Threshold;
  }

  dequantizeWeight(): Tensor {
    const out = new Float32Array(this.outFeatures * this.inFeatures);
    dequantizeInt8Rows(this.w, 0, this.outFeatures, out);
    return tensor(out, [this.outFeatures, this.inFeatures]);
  }

  setWeight(w: Tensor): void {
    const { outFeatures, inFeatures } = this;
    this.w = withWeightValues(w, outFeatures, inFeatures, (values) =>
      quantizeInt8Weight(values, outFeatures, inFeatures),
    );
  }

  weightBytes(): number {
    return this.w.data.byteLength + this.w.scb.byteLength;
  }

  protected override extraRepr(): string {
    return (
      `in_features=${this.inFeatures}, out_features=${this.outFeatures}, ` +
      `bias=${this.bias !== null}, threshold=${this.llmInt8Threshold}`
    );
  }
}

/** Elements of the quantised weights in a module tree (peft counts a 4-bit weight as its unpacked size). */
export function quantizedWeightElements(root: Module): number {
  return root.modules().reduce((n, m) => n + (m instanceof QuantizedLinear ? m.inFeatures * m.outFeatures : 0), 0);
}
