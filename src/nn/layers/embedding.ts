/** Lookup table of vectors indexed by integer ids. */
import { type Generator, type Tensor, arange, embedding, eq, parameter, reshape, where } from "../../tensor/index.js";
import { Module } from "../module.js";
import { normal } from "../init.js";

/** Options of Embedding. */
export interface EmbeddingOptions {
  /** Row kept at zero at initialisation (PyTorch's padding_idx). */
  paddingIdx?: number;
  generator?: Generator;
}

/** weight [numEmbeddings, embeddingDim], initialised N(0, 1) like PyTorch. */
export class Embedding extends Module {
  weight: Tensor;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: EmbeddingOptions = {},
  ) {
    super();
    let w = normal([numEmbeddings, embeddingDim], 1, 0, opts.generator);
    if (opts.paddingIdx !== undefined) {
      const isPad = eq(reshape(arange(numEmbeddings, 0, 1, "float32"), [numEmbeddings, 1]), opts.paddingIdx);
      w = where(isPad, 0, w);
    }
    this.weight = this.registerParameter("weight", parameter(w));
  }

  /** Rows for ids of any shape: output [...ids.shape, embeddingDim]. */
  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }

  protected override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim}`;
  }
}
