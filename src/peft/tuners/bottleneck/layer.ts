/**
 * Bottleneck adapters as AdapterHub's `adapters` lays them out. One adapter is
 *
 *   A(x) = scaling · adapter_up(f(adapter_down.0(x)))       (adapter_down = [Linear(H, H / reduction_factor), f])
 *
 * and sits in a layer's `attention_adapters` / `output_adapters` module, under `adapters.<name>`, so the
 * parameters are named `<layer>.output_adapters.adapters.<name>.adapter_down.0.weight` as AdapterHub saves them.
 *
 * Where it acts, for the pre-norm decoders here (AdapterHub passes them no layer norm):
 * - Pfeiffer (original_ln_before true), output adapter: the layer output y becomes y + A(y);
 * - Houlsby (original_ln_before false): a sublayer's output h (attention or feed-forward, before the residual sum)
 *   becomes h + A(h).
 * The model is not rewritten for this: the layer (Pfeiffer) or the sublayer's output projection (Houlsby) is
 * wrapped by a module that takes over the wrapped module's parameters and children under their own names, so
 * every path in the model stays as it was.
 */
import { Dropout, Linear, Module, ModuleDict, Sequential, activation, type TensorLayer } from "../../../nn/index.js";
import { kaimingUniform2d } from "../../../nn/init.js";
import { add, defaultGenerator, mul, zeros, type Tensor } from "../../../tensor/index.js";

/** One bottleneck adapter: adapter_down = [Linear, activation], adapter_up = Linear, then scaling and dropout. */
export class BottleneckAdapter extends Module {
  readonly adapter_down: Sequential;
  readonly adapter_up: Linear;
  private readonly drop: Dropout;

  constructor(
    hidden: number,
    bottleneck: number,
    nonLinearity: string,
    initWeights: string,
    readonly scaling: number,
    dropout: number,
  ) {
    super();
    const down = new Linear(hidden, bottleneck);
    this.adapter_down = this.registerModule("adapter_down", new Sequential(down, activation(nonLinearity)));
    this.adapter_up = this.registerModule("adapter_up", new Linear(bottleneck, hidden));
    this.drop = this.registerModule("dropout", new Dropout(dropout));
    const bert = initWeights === "bert";
    down.weight.copy_(
      bert ? defaultGenerator.normal([bottleneck, hidden], 0, 0.02) : kaimingUniform2d([bottleneck, hidden]),
    );
    this.adapter_up.weight.copy_(
      bert ? defaultGenerator.normal([hidden, bottleneck], 0, 0.02) : zeros([hidden, bottleneck]),
    );
    down.bias!.copy_(zeros([bottleneck]));
    this.adapter_up.bias!.copy_(zeros([hidden]));
  }

  /** A(x) = dropout(scaling · up(f(down(x)))). */
  forward(x: Tensor): Tensor {
    return this.drop.forward(mul(this.adapter_up.forward(this.adapter_down.forward(x)), this.scaling));
  }
}

/** AdapterHub's `attention_adapters` / `output_adapters` module: the adapters of one place in one layer, by name. */
export class BottleneckSite extends Module {
  readonly adapters = this.registerModule("adapters", new ModuleDict<BottleneckAdapter>());
  activeAdapters: string[] = [];
  disabled = false;

  /** x + A(x) for each active adapter in turn (AdapterHub's Stack); x when disabled. */
  apply(x: Tensor): Tensor {
    if (this.disabled) return x;
    let y = x;
    for (const name of this.activeAdapters) if (this.adapters.has(name)) y = add(y, this.adapters.get(name).forward(y));
    return y;
  }
}

/** Takes over `inner`'s parameters, buffers and children under their names, so that wrapping changes no path. */
abstract class TakeOver<M extends Module> extends Module {
  constructor(readonly inner: M) {
    super();
    for (const name of inner.ownParameterNames()) this.registerParameter(name, inner.ownParameter(name));
    for (const [name, t] of inner.namedBuffers()) if (!name.includes(".")) this.registerBuffer(name, t);
    for (const [name, child] of inner.namedChildren()) this.registerModule(name, child);
  }

  /** Train/eval reaches the wrapped module's own flag too (its forward may read it). */
  override train(mode = true): this {
    super.train(mode);
    this.inner.training = mode;
    return this;
  }
}

/** A sublayer's output projection whose output h becomes h + A(h) (Houlsby). */
export class SublayerOutputWithAdapters extends TakeOver<TensorLayer> implements TensorLayer {
  constructor(
    inner: TensorLayer,
    readonly site: BottleneckSite,
  ) {
    super(inner);
  }

  /** The projection's output with the adapters applied. */
  forward(x: Tensor): Tensor {
    return this.site.apply(this.inner.forward(x));
  }
}

/** What a decoder layer returns (the hidden states as `out`, with the layer's cache beside them). */
interface LayerResult {
  out: Tensor;
}
/** A decoder layer as this wrapper calls it. */
export type DecoderLayer = Module & { forward(...args: never[]): LayerResult };

/** A decoder layer whose output y becomes y + A(y) (Pfeiffer's output adapter). */
export class LayerOutputWithAdapters extends TakeOver<DecoderLayer> {
  constructor(
    inner: DecoderLayer,
    readonly site: BottleneckSite,
  ) {
    super(inner);
  }

  /** The layer's result with the adapters applied to its hidden states. */
  forward(...args: never[]): LayerResult {
    const result = this.inner.forward(...args);
    return { ...result, out: this.site.apply(result.out) };
  }
}
