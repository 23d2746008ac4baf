/**
 * LoRA layers: y = base(x) + B·A·dropout(x)·scaling for Linear and GPT-2's Conv1D (fan_in_fan_out), and the
 * embedding layer; merge/unmerge of ΔW = B·A·scaling into the base weight. What differs between LoRA variants
 * (DoRA's magnitude re-scaling, …) is the adapter's LoraVariant (variants.ts); which layer wraps which module kind
 * is the dispatcher list (dispatch.ts).
 * Parameter names and layouts are HF peft's: lora_A.<adapter> is a Linear(in, r) ([r, in]), lora_B a Linear(r, out).
 */
import { Conv1D, Dropout, type Embedding, Linear, ModuleDict, QuantizedLinear } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  embedding,
  matmul,
  mul,
  noGrad,
  parameter,
  sqrt,
  sum,
  square,
  transpose,
  zeros,
  defaultGenerator,
  addInPlace,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";
import { DoraLinearVariant, plainLora, type DoraLayer, type LoraVariant } from "./variants.js";
import { initFromBaseWeight, initUsesBaseWeight, type LoftqSettings } from "./init.js";
import { checkMixedBatch, currentAdapterNames, mixedBatchForward } from "../../mixed-batch.js";
import { ConfigError } from "../../../errors.js";

/** How one adapter is set up in a layer. */
export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  initWeights: boolean | "gaussian" | string;
  useRslora: boolean;
  useDora: boolean;
  /** lora_B gets a trainable bias (peft's lora_bias). */
  loraBias?: boolean;
  /** The module's path, for error messages. */
  key?: string;
  /** LoftQ's bits and iterations (with initWeights "loftq"). */
  loftq?: LoftqSettings;
}

/** LoRA scaling: alpha / r, or alpha / √r with rsLoRA. */
export function loraScaling(s: LoraSettings): number {
  return s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
}

/** State shared by the LoRA layer kinds: per-adapter rank, alpha, scaling. */
export abstract class LoraLayer extends BaseTunerLayer {
  readonly r = new Map<string, number>();
  readonly loraAlpha = new Map<string, number>();
  readonly scaling = new Map<string, number>();

  protected forgetAdapter(name: string): void {
    for (const m of [this.r, this.loraAlpha, this.scaling]) m.delete(name);
  }

  /** Replace an adapter's scaling (used by AdaLoRA-like rescaling and weighted adapters). */
  setScale(adapter: string, scale: number): void {
    this.scaling.set(adapter, scale);
  }

  /** Add (or re-create) an adapter (HF's update_layer). */
  abstract updateLayer(name: string, s: LoraSettings): void;

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
    if (!Number.isInteger(s.r) || s.r <= 0)
      throw new Error(`\`r\` should be a positive integer value but the value passed is ${s.r}`);
    this.r.set(name, s.r);
    this.loraAlpha.set(name, s.alpha);
    this.scaling.set(name, loraScaling(s));
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
  /** Each adapter's variant (plain LoRA unless the config asks for another). */
  private readonly variants = new Map<string, LoraVariant>();

  constructor(
    base: Linear | Conv1D | QuantizedLinear,
    readonly fanInFanOut: boolean,
  ) {
    super(base);
    [this.inFeatures, this.outFeatures] =
      base instanceof Conv1D ? [base.nx, base.nf] : [base.inFeatures, base.outFeatures];
    this.lora_dropout = this.registerModule("lora_dropout", new ModuleDict<Dropout>());
    this.lora_A = this.registerModule("lora_A", new ModuleDict<Linear>());
    this.lora_B = this.registerModule("lora_B", new ModuleDict<Linear>());
    this.lora_magnitude_vector = this.registerModule("lora_magnitude_vector", new ModuleDict<DoraLayer>());
  }

  /** peft's repr: lora.Linear (also around Conv1D), lora.Linear4bit / lora.Linear8bitLt around quantised layers. */
  override moduleType(): string {
    return `lora.${this.base_layer instanceof QuantizedLinear ? this.base_layer.constructor.name : "Linear"}`;
  }

  /** Add (or re-create) an adapter (HF's update_layer): its factors, then its variant's own state. */
  updateLayer(name: string, s: LoraSettings): void {
    if (s.useDora && this.base_layer instanceof QuantizedLinear)
      throw new Error("DoRA on quantised (4-bit/8-bit) layers is not supported yet; use plain LoRA");
    if (initUsesBaseWeight(s.initWeights) && this.base_layer instanceof QuantizedLinear) {
      throw new ConfigError(
        `init_lora_weights "${String(s.initWeights)}" on ${s.key ?? "a layer"}: the base weight is ` +
          `quantised; initialise on the float model, then quantise the residual model (as peft ` +
          `advises)`,
      );
    }
    this.recordSettings(name, s);
    this.lora_dropout.set(name, new Dropout(s.dropout));
    const a = new Linear(this.inFeatures, s.r, { bias: false });
    const b = new Linear(s.r, this.outFeatures, { bias: s.loraBias === true });
    if (initUsesBaseWeight(s.initWeights))
      initFromBaseWeight(
        this,
        a.weight,
        b.weight,
        String(s.initWeights),
        s.r,
        this.scaling.get(name)!,
        s.key ?? name,
        s.loftq,
      );
    else noGrad(() => initFactors(a.weight, b.weight, s));
    if (b.bias && s.initWeights !== false) noGrad(() => b.bias!.copy_(zeros(b.bias!.shape)));
    this.lora_A.set(name, a);
    this.lora_B.set(name, b);
    this.lora_magnitude_vector.remove(name);
    const variant = s.useDora ? new DoraLinearVariant() : plainLora;
    this.variants.set(name, variant);
    noGrad(() => variant.init(this, name));
    this.setAdapter(this.activeAdapters);
  }

  /** The base weight as [out, in], whatever the layer's storage layout. */
  baseWeightOutIn(): Tensor {
    const w = this.base_layer.getTensor("weight");
    return this.fanInFanOut ? transpose(w) : w;
  }

  /** B·A·scaling as [out, in]. */
  deltaOutIn(adapter: string): Tensor {
    return mul(matmul(this.lora_B.get(adapter).weight, this.lora_A.get(adapter).weight), this.scaling.get(adapter)!);
  }

  /** B·A·input·scaling: one adapter's low-rank path on an (already dropped-out) input. */
  loraOutput(adapter: string, input: Tensor): Tensor {
    const b = this.lora_B.get(adapter);
    // With lora_bias, peft scales B's output, bias included.
    if (b.bias) return mul(b.forward(this.lora_A.get(adapter).forward(input)), this.scaling.get(adapter)!);
    return b.forward(mul(this.lora_A.get(adapter).forward(input), this.scaling.get(adapter)!));
  }

  loraFactors(adapter: string): { A: Tensor; B: Tensor } {
    return { A: this.lora_A.get(adapter).weight, B: this.lora_B.get(adapter).weight };
  }

  getDeltaWeight(adapter: string): Tensor {
    const d = this.deltaOutIn(adapter);
    return this.fanInFanOut ? transpose(d) : d;
  }

  /** Row norms ‖W + ΔW‖ (DoRA's weight norm), W as [out, in]; never differentiated (HF detaches it). */
  weightNorm(wOutIn: Tensor, adapter: string): Tensor {
    return sqrt(sum(square(add(wOutIn, this.deltaOutIn(adapter).detach())), 1)).detach();
  }

  /** Apply the layer: the base output plus each active adapter's contribution, as its variant computes it. */
  forward(x: Tensor): Tensor {
    const rowAdapters = currentAdapterNames();
    if (rowAdapters && !this.disableAdapters) return this.mixedForward(x, rowAdapters);
    const base = this.baseForward(x);
    let result = base;
    for (const name of this.adaptersToApply()) result = this.variants.get(name)!.forward(this, name, x, result, base);
    return result;
  }

  /** One adapter per batch row (peft's adapter_names); DoRA is refused there, as in peft. */
  private mixedForward(x: Tensor, names: readonly string[]): Tensor {
    checkMixedBatch(names, x.shape[0]!, this.merged);
    if (names.some((n) => this.variants.get(n) instanceof DoraLinearVariant)) {
      throw new ConfigError(
        "cannot pass adapterNames when DoRA is enabled (peft refuses it too)",
        "serve DoRA adapters one at a time with setAdapter",
      );
    }
    return mixedBatchForward(
      x,
      this.baseForward(x),
      names,
      (n) => this.hasAdapter(n),
      (n, rows) => this.loraOutput(n, this.lora_dropout.get(n).forward(rows)),
    );
  }

  /** A quantised base is dequantised, changed and quantised again (peft's bnb merge). */
  private requantize(delta: Tensor): void {
    const base = this.base_layer as QuantizedLinear;
    noGrad(() => base.setWeight(add(base.dequantizeWeight(), delta)));
  }

  protected mergeOne(name: string): void {
    this.addLoraBias(name, 1);
    if (this.base_layer instanceof QuantizedLinear) return this.requantize(this.getDeltaWeight(name));
    this.replaceBaseWeight((w) => this.variants.get(name)!.merge(this, name, w));
  }

  protected unmergeOne(name: string): void {
    this.addLoraBias(name, -1);
    if (this.base_layer instanceof QuantizedLinear) return this.requantize(mul(this.getDeltaWeight(name), -1));
    this.replaceBaseWeight((w) => this.variants.get(name)!.unmerge(this, name, w));
  }

  /** Merging lora_bias adds B's bias to the base bias, unscaled (as peft 0.15.2 does, although its forward scales it). */
  private addLoraBias(name: string, sign: 1 | -1): void {
    const loraBias = this.lora_B.get(name).bias;
    if (!loraBias) return;
    const bias = this.base_layer.ownParameter("bias");
    if (!bias)
      throw new ConfigError(
        `cannot merge adapter "${name}": it has lora_bias but its base layer has no bias to merge ` +
          `it into (peft fails here too); keep the adapter unmerged`,
      );
    noGrad(() => addInPlace(bias, sign === 1 ? loraBias : mul(loraBias, -1)));
  }

  /** Write f(W) into the base weight, W and f(W) as [out, in]. */
  private replaceBaseWeight(f: (wOutIn: Tensor) => Tensor): void {
    noGrad(() => this.setBaseWeightOutIn(f(this.baseWeightOutIn())));
  }

  /** Overwrite the base weight with w given as [out, in]. */
  setBaseWeightOutIn(w: Tensor): void {
    this.base_layer.getTensor("weight").copy_(this.fanInFanOut ? transpose(w) : w);
  }

  protected override forgetAdapter(name: string): void {
    super.forgetAdapter(name);
    this.variants.delete(name);
  }
}

/**
 * How an adapter's A [r, in] and B [out, r] start, by init_lora_weights: true keeps A's Kaiming-uniform(a=√5) init
 * and zeroes B, so a fresh adapter changes nothing; "gaussian" draws A ~ N(0, 1/r); false leaves both random.
 * Inits that also rewrite the base weight (PiSSA, OLoRA, LoftQ) go here, beside these.
 */
function initFactors(a: Tensor, b: Tensor, s: LoraSettings): void {
  if (s.initWeights === "gaussian") a.copy_(defaultGenerator.normal(a.shape, 0, 1 / s.r));
  if (s.initWeights !== false) b.copy_(zeros(b.shape));
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

  /** peft's repr of the layer. */
  override moduleType(): string {
    return "lora.Embedding";
  }

  private get baseEmbedding(): Embedding {
    return this.base_layer as Embedding;
  }

  /** Add (or re-create) an adapter: A starts at 0 and B ~ N(0, 1), so a fresh adapter changes nothing. */
  updateLayer(name: string, s: LoraSettings): void {
    if (s.useDora) throw new Error("DoRA is not supported on embedding layers");
    if (s.initWeights === "loftq")
      throw new ConfigError(
        `init_lora_weights "loftq" on the Embedding ${s.key ?? "layer"}: peft 0.15.2's LoftQ fails ` +
          `on embeddings; leave embeddings out of target_modules`,
      );
    if (s.loraBias)
      throw new ConfigError(
        `lora_bias=true is not supported for Embedding layers (${s.key ?? "embedding"}), as in ` +
          `peft; target only Linear layers or set lora_bias false`,
      );
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
    const a = this.lora_embedding_A.ownParameter(adapter)!,
      b = this.lora_embedding_B.ownParameter(adapter)!;
    return mul(transpose(matmul(b, a)), this.scaling.get(adapter)!);
  }

  /** Look up ids, adding each active adapter's low-rank rows. */
  forward(ids: Tensor): Tensor {
    const rowAdapters = currentAdapterNames();
    if (rowAdapters && !this.disableAdapters) {
      checkMixedBatch(rowAdapters, ids.shape[0]!, this.merged);
      return mixedBatchForward(
        ids,
        this.baseForward(ids),
        rowAdapters,
        (n) => this.hasAdapter(n),
        (n, rows) => this.embeddingDelta(n, rows),
      );
    }
    let result = this.baseForward(ids);
    for (const name of this.adaptersToApply()) result = add(result, this.embeddingDelta(name, ids));
    return result;
  }

  /** One adapter's low-rank rows for ids. */
  private embeddingDelta(name: string, ids: Tensor): Tensor {
    const a = this.lora_embedding_A.ownParameter(name)!,
      b = this.lora_embedding_B.ownParameter(name)!;
    return mul(matmul(embedding(ids, transpose(a)), transpose(b)), this.scaling.get(name)!);
  }

  protected mergeOne(name: string): void {
    noGrad(() => addInPlace(this.base_layer.getTensor("weight"), this.getDeltaWeight(name)));
  }

  protected unmergeOne(name: string): void {
    noGrad(() => addInPlace(this.base_layer.getTensor("weight"), mul(this.getDeltaWeight(name), -1)));
  }
}
