/**
 * LoRA layers: y = base(x) + B·A·dropout(x)·scaling for Linear and GPT-2's Conv1D (fan_in_fan_out), and the
 * embedding variant; DoRA's magnitude re-scaling; merge/unmerge of ΔW = B·A·scaling into the base weight.
 * Parameter names and layouts are HF peft's: lora_A.<adapter> is a Linear(in, r) ([r, in]), lora_B a Linear(r, out).
 */
import { Conv1D, Dropout, Embedding, Linear, Module, ModuleDict, QuantizedLinear } from "../../../nn/index.js";
import {
  Tensor, add, div, embedding, keep, matmul, mul, noGrad, parameter, reshape, sqrt, sub, sum, square, transpose, zeros,
  defaultGenerator, addInPlace,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";

/** How one adapter is set up in a layer. */
export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  initWeights: boolean | "gaussian" | string;
  useRslora: boolean;
  useDora: boolean;
}

/** LoRA scaling: alpha / r, or alpha / √r with rsLoRA. */
export function loraScaling(s: LoraSettings): number {
  return s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
}

/** The per-output-row magnitude of DoRA (a module holding one parameter "weight", as in HF). */
export class DoraLayer extends Module {
  weight: Tensor;
  constructor(weight: Tensor) {
    super();
    this.weight = this.registerParameter("weight", parameter(weight));
  }
}

/** State shared by the LoRA layer kinds: per-adapter rank, alpha, scaling. */
abstract class LoraLayer extends BaseTunerLayer {
  readonly r = new Map<string, number>();
  readonly loraAlpha = new Map<string, number>();
  readonly scaling = new Map<string, number>();
  readonly useDora = new Map<string, boolean>();

  protected forgetAdapter(name: string): void {
    for (const m of [this.r, this.loraAlpha, this.scaling, this.useDora]) m.delete(name);
  }

  /** Replace an adapter's scaling (used by AdaLoRA-like rescaling and weighted adapters). */
  setScale(adapter: string, scale: number): void {
    this.scaling.set(adapter, scale);
  }

  /** ΔW of one adapter in the base weight's layout. */
  abstract getDeltaWeight(adapter: string): Tensor;

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.r.has(name);
  }

  /**
   * One adapter's parameters as A [r, n] and B [m, r] with ΔW = B·A·scaling in [m, n] = [out, in] orientation
   * (Linear and Conv1D alike; embeddings: lora_embedding_A [r, vocab], lora_embedding_B [dim, r]).
   */
  abstract loraFactors(adapter: string): { A: Tensor; B: Tensor };

  protected recordSettings(name: string, s: LoraSettings): void {
    if (!Number.isInteger(s.r) || s.r <= 0) throw new Error(`\`r\` should be a positive integer value but the value passed is ${s.r}`);
    this.r.set(name, s.r);
    this.loraAlpha.set(name, s.alpha);
    this.scaling.set(name, loraScaling(s));
    this.useDora.set(name, s.useDora);
  }
}

/** LoRA around a Linear ([out, in] weight) or a GPT-2 Conv1D ([in, out] weight, fan_in_fan_out). */
export class LoraLinear extends LoraLayer {
  readonly adapterLayerNames = ["lora_A", "lora_B", "lora_magnitude_vector"] as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  lora_dropout: ModuleDict<Dropout>;
  lora_A: ModuleDict<Linear>;
  lora_B: ModuleDict<Linear>;
  lora_magnitude_vector: ModuleDict<DoraLayer>;
  /** DoRA's weight norms at merge time, to unmerge exactly. */
  private readonly doraMergeNorms = new Map<string, Tensor>();

  constructor(base: Linear | Conv1D | QuantizedLinear, readonly fanInFanOut: boolean) {
    super(base);
    [this.inFeatures, this.outFeatures] = base instanceof Conv1D ? [base.nx, base.nf] : [base.inFeatures, base.outFeatures];
    this.lora_dropout = this.registerModule("lora_dropout", new ModuleDict<Dropout>());
    this.lora_A = this.registerModule("lora_A", new ModuleDict<Linear>());
    this.lora_B = this.registerModule("lora_B", new ModuleDict<Linear>());
    this.lora_magnitude_vector = this.registerModule("lora_magnitude_vector", new ModuleDict<DoraLayer>());
  }

  /** Add (or re-create) an adapter (HF's update_layer). */
  updateLayer(name: string, s: LoraSettings): void {
    if (s.useDora && this.base_layer instanceof QuantizedLinear) throw new Error("DoRA on quantised (4-bit/8-bit) layers is not supported yet; use plain LoRA");
    this.recordSettings(name, s);
    this.lora_dropout.set(name, new Dropout(s.dropout));
    const a = new Linear(this.inFeatures, s.r, { bias: false });
    const b = new Linear(s.r, this.outFeatures, { bias: false });
    noGrad(() => {
      if (s.initWeights === "gaussian") a.weight.copy_(defaultGenerator.normal(a.weight.shape, 0, 1 / s.r));
      // true: A keeps Linear's Kaiming-uniform(a=√5) init and B starts at 0, so a fresh adapter changes nothing.
      if (s.initWeights !== false) b.weight.copy_(zeros(b.weight.shape));
    });
    this.lora_A.set(name, a);
    this.lora_B.set(name, b);
    if (s.useDora) this.lora_magnitude_vector.set(name, new DoraLayer(noGrad(() => this.weightNorm(this.baseWeightOutIn(), name))));
    else this.lora_magnitude_vector.remove(name);
    this.setAdapter(this.activeAdapters);
  }

  /** The base weight as [out, in], whatever the layer's storage layout. */
  private baseWeightOutIn(): Tensor {
    const w = this.base_layer.getTensor("weight");
    return this.fanInFanOut ? transpose(w) : w;
  }

  /** B·A·scaling as [out, in]. */
  private deltaOutIn(adapter: string): Tensor {
    return mul(matmul(this.lora_B.get(adapter).weight, this.lora_A.get(adapter).weight), this.scaling.get(adapter)!);
  }

  loraFactors(adapter: string): { A: Tensor; B: Tensor } {
    return { A: this.lora_A.get(adapter).weight, B: this.lora_B.get(adapter).weight };
  }

  getDeltaWeight(adapter: string): Tensor {
    const d = this.deltaOutIn(adapter);
    return this.fanInFanOut ? transpose(d) : d;
  }

  /** Row norms ‖W + ΔW‖ (DoRA's weight norm), W as [out, in]; never differentiated (HF detaches it). */
  private weightNorm(wOutIn: Tensor, adapter: string): Tensor {
    return sqrt(sum(square(add(wOutIn, this.deltaOutIn(adapter).detach())), 1)).detach();
  }

  /** Apply the layer. */
  forward(x: Tensor): Tensor {
    const base = this.baseForward(x);
    let result = base;
    for (const name of this.adaptersToApply()) {
      const drop = this.lora_dropout.get(name);
      const s = this.scaling.get(name)!;
      const lora = (input: Tensor) => this.lora_B.get(name).forward(mul(this.lora_A.get(name).forward(input), s));
      if (!this.useDora.get(name)) {
        result = add(result, lora(drop.forward(x)));
        continue;
      }
      // DoRA: rescale each output row to the learned magnitude; with active dropout the base output is recomputed on the dropped input.
      const dropped = drop.forward(x);
      const w = this.baseWeightOutIn();
      const bias = this.base_layer.ownParameter("bias");
      const baseResult = dropped === x ? (bias ? sub(base, bias) : base) : matmul(reshape(dropped, [-1, this.inFeatures]), transpose(w));
      const magScale = div(this.lora_magnitude_vector.get(name).weight, this.weightNorm(w, name));
      const shapedBase = reshape(baseResult, base.shape);
      result = add(result, add(mul(sub(magScale, 1), shapedBase), mul(magScale, lora(dropped))));
    }
    return result;
  }

  /** A quantised base is dequantised, changed and quantised again (peft's bnb merge). */
  private requantize(delta: Tensor): void {
    const base = this.base_layer as QuantizedLinear;
    noGrad(() => base.setWeight(add(base.dequantizeWeight(), delta)));
  }

  protected mergeOne(name: string): void {
    if (this.base_layer instanceof QuantizedLinear) return this.requantize(this.getDeltaWeight(name));
    noGrad(() => {
      const w = this.base_layer.getTensor("weight");
      if (!this.useDora.get(name)) return addInPlace(w, this.getDeltaWeight(name));
      const norm = this.weightNorm(this.baseWeightOutIn(), name);
      const factor = div(this.lora_magnitude_vector.get(name).weight, norm); // [out]
      const merged = mul(add(this.baseWeightOutIn(), this.deltaOutIn(name)), reshape(factor, [-1, 1]));
      this.doraMergeNorms.set(name, keep(factor));
      w.copy_(this.fanInFanOut ? transpose(merged) : merged);
    });
  }

  protected unmergeOne(name: string): void {
    if (this.base_layer instanceof QuantizedLinear) return this.requantize(mul(this.getDeltaWeight(name), -1));
    noGrad(() => {
      const w = this.base_layer.getTensor("weight");
      if (!this.useDora.get(name)) return addInPlace(w, mul(this.getDeltaWeight(name), -1));
      const factor = this.doraMergeNorms.get(name)!;
      const restored = sub(div(this.baseWeightOutIn(), reshape(factor, [-1, 1])), this.deltaOutIn(name));
      w.copy_(this.fanInFanOut ? transpose(restored) : restored);
      factor.dispose();
      this.doraMergeNorms.delete(name);
    });
  }
}

/** LoRA on an Embedding: lora_embedding_A [r, vocab] and lora_embedding_B [dim, r] (parameter dicts, as in HF). */
export class LoraEmbedding extends LoraLayer {
  readonly adapterLayerNames = ["lora_embedding_A", "lora_embedding_B"] as const;
  lora_dropout: ModuleDict<Dropout>;
  lora_embedding_A: ParameterDict;
  lora_embedding_B: ParameterDict;

  constructor(base: Embedding) {
    super(base);
    this.lora_dropout = this.registerModule("lora_dropout", new ModuleDict<Dropout>());
    this.lora_embedding_A = this.registerModule("lora_embedding_A", new ParameterDict());
    this.lora_embedding_B = this.registerModule("lora_embedding_B", new ParameterDict());
  }

  private get baseEmbedding(): Embedding {
    return this.base_layer as Embedding;
  }

  /** Add (or re-create) an adapter: A starts at 0 and B ~ N(0, 1), so a fresh adapter changes nothing. */
  updateLayer(name: string, s: LoraSettings): void {
    if (s.useDora) throw new Error("DoRA is not supported on embedding layers");
    this.recordSettings(name, s);
    this.lora_dropout.set(name, new Dropout(s.dropout));
    const { numEmbeddings, embeddingDim } = this.baseEmbedding;
    const a = s.initWeights === false ? defaultGenerator.normal([s.r, numEmbeddings]) : zeros([s.r, numEmbeddings]);
    this.lora_embedding_A.registerParameter(name, parameter(a));
    this.lora_embedding_B.registerParameter(name, parameter(defaultGenerator.normal([embeddingDim, s.r])));
    this.setAdapter(this.activeAdapters);
  }

  loraFactors(adapter: string): { A: Tensor; B: Tensor } {
    return { A: this.lora_embedding_A.ownParameter(adapter)!, B: this.lora_embedding_B.ownParameter(adapter)! };
  }

  getDeltaWeight(adapter: string): Tensor {
    const a = this.lora_embedding_A.ownParameter(adapter)!, b = this.lora_embedding_B.ownParameter(adapter)!;
    return mul(transpose(matmul(b, a)), this.scaling.get(adapter)!);
  }

  /** Look up ids, adding each active adapter's low-rank rows. */
  forward(ids: Tensor): Tensor {
    let result = this.baseForward(ids);
    for (const name of this.adaptersToApply()) {
      const a = this.lora_embedding_A.ownParameter(name)!, b = this.lora_embedding_B.ownParameter(name)!;
      const afterA = embedding(ids, transpose(a));
      result = add(result, mul(matmul(afterA, transpose(b)), this.scaling.get(name)!));
    }
    return result;
  }

  protected mergeOne(name: string): void {
    noGrad(() => addInPlace(this.base_layer.getTensor("weight"), this.getDeltaWeight(name)));
  }

  protected unmergeOne(name: string): void {
    noGrad(() => addInPlace(this.base_layer.getTensor("weight"), mul(this.getDeltaWeight(name), -1)));
  }
}
