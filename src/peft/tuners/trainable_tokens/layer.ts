/**
 * TrainableTokensLayer (peft 0.15.2): wraps an Embedding (or the Linear head tied to it) and replaces the rows of
 * `token_indices` by a trained delta [k, dim] (peft's trainable_tokens_delta, which holds the new rows, not a
 * difference). The replaced table is W·(1 − m) + S·Δ, with m the row mask and S the one-hot row selection, so that
 * gradients reach only Δ. A tied layer (the LM head sharing the embedding table) holds the same delta tensors.
 */
import { Embedding, type Linear } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  embedding,
  keep,
  linear,
  matmul,
  mul,
  noGrad,
  parameter,
  tensor,
  transpose,
  defaultGenerator,
} from "../../../tensor/index.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";

/** Trainable token rows on an Embedding or a tied Linear head. */
export class TrainableTokensLayer extends BaseTunerLayer {
  readonly adapterLayerNames = ["trainable_tokens_delta"] as const;
  trainable_tokens_delta: ParameterDict;
  /** Token ids per adapter (shared with the tied layer). */
  readonly tokenIndices: Map<string, number[]>;
  /** The rows before merging, to unmerge (not saved, as in peft). */
  private readonly originals: Map<string, Tensor>;

  constructor(
    base: Embedding | Linear,
    readonly tiedTo: TrainableTokensLayer | null = null,
  ) {
    super(base);
    this.trainable_tokens_delta = this.registerModule("trainable_tokens_delta", new ParameterDict());
    this.tokenIndices = tiedTo ? tiedTo.tokenIndices : new Map();
    this.originals = tiedTo ? tiedTo.originals : new Map();
  }

  /** Add an adapter's rows; a tied layer takes the same delta tensor as the layer it is tied to. */
  updateLayer(name: string, tokenIndices: number[], initWeights: boolean): void {
    if (this.tiedTo) {
      this.trainable_tokens_delta.registerParameter(name, this.tiedTo.trainable_tokens_delta.ownParameter(name));
      this.setAdapter(this.activeAdapters);
      return;
    }
    const weight = this.base_layer.getTensor("weight");
    const [vocab, dim] = weight.shape as [number, number];
    const bad = tokenIndices.filter((i) => i >= vocab);
    if (bad.length > 0)
      throw new Error(
        `trainable tokens: token_indices ${JSON.stringify(bad)} are out of range for the ` +
          `${vocab}-row embedding; use ids below ${vocab}`,
      );
    const rows = noGrad(() => matmul(transpose(this.selection(tokenIndices)), weight));
    this.tokenIndices.set(name, [...tokenIndices]);
    this.originals.set(name, keep(rows));
    const values = initWeights ? rows : defaultGenerator.uniform([tokenIndices.length, dim]);
    this.trainable_tokens_delta.registerParameter(name, parameter(noGrad(() => mul(values, 1))));
    this.setAdapter(this.activeAdapters);
  }

  /** S [vocab, k]: column j is one-hot at token_indices[j]. */
  private selection(indices: readonly number[]): Tensor {
    const vocab = this.base_layer.getTensor("weight").shape[0]!;
    const s = new Float32Array(vocab * indices.length);
    indices.forEach((row, j) => {
      s[row * indices.length + j] = 1;
    });
    return tensor(s, [vocab, indices.length]);
  }

  /** W with each adapter's rows replaced by its delta, in order (peft's get_merged_weights). */
  private replacedWeight(w: Tensor, adapters: readonly string[], rows: (name: string) => Tensor): Tensor {
    const vocab = w.shape[0]!;
    for (const name of adapters) {
      const indices = this.tokenIndices.get(name)!;
      const keepMask = new Float32Array(vocab).fill(1);
      for (const i of indices) keepMask[i] = 0;
      w = add(mul(w, tensor(keepMask, [vocab, 1])), matmul(this.selection(indices), rows(name)));
    }
    return w;
  }

  private checkDisjoint(adapters: readonly string[]): void {
    const seen = new Set<number>();
    for (const name of new Set([...adapters, ...this.mergedAdapters])) {
      const indices = this.tokenIndices.get(name)!;
      if (indices.some((i) => seen.has(i)))
        throw new Error(
          `Token indices of adapter ${name} are already defined and would result in undefined ` +
            `merging behavior. Only disjunct token indices are currently supported.`,
        );
      indices.forEach((i) => {
        seen.add(i);
      });
    }
  }

  /** Embedding lookup (or the tied head's x·Wᵀ, without bias as in peft) on the table with the trained rows. */
  forward(x: Tensor): Tensor {
    const adapters = this.adaptersToApply();
    if (adapters.length === 0) return this.baseForward(x);
    if (adapters.length > 1) this.checkDisjoint(adapters);
    const w = this.replacedWeight(
      this.base_layer.getTensor("weight"),
      adapters,
      (n) => this.trainable_tokens_delta.ownParameter(n)!,
    );
    return this.base_layer instanceof Embedding ? embedding(x, w) : linear(x, w);
  }

  protected mergeOne(name: string): void {
    this.checkDisjoint([name]);
    this.writeRows(name, (n) => this.trainable_tokens_delta.ownParameter(n)!);
  }

  protected unmergeOne(name: string): void {
    this.writeRows(name, (n) => this.originals.get(n)!);
  }

  /** Write rows into the base table (a tied head shares the table, so only the embedding side writes). */
  private writeRows(name: string, rows: (name: string) => Tensor): void {
    if (this.tiedTo) return;
    const weight = this.base_layer.getTensor("weight");
    noGrad(() => weight.copy_(this.replacedWeight(weight, [name], rows)));
  }

  /** A tied layer only drops its reference: the layer it is tied to owns (and disposes) the delta. */
  override deleteAdapter(name: string): void {
    if (!this.tiedTo) return super.deleteAdapter(name);
    this.trainable_tokens_delta.registerParameter(name, null);
    this.activeAdapters = this.activeAdapters.filter((a) => a !== name);
  }

  protected forgetAdapter(name: string): void {
    this.tokenIndices.delete(name);
    this.originals.get(name)?.dispose();
    this.originals.delete(name);
  }
}
