/** Inputs and outputs of model forwards (the TypeScript names of HF's keyword arguments and ModelOutput fields). */
import type { Tensor } from "../tensor/index.js";

/** Keys and values of one attention layer: [batch, kvHeads, length, headDim] each (HF's legacy cache tuple). */
export interface LayerKV {
  key: Tensor;
  value: Tensor;
  /** Encoder-decoder models: the cross-attention keys/values of the encoder output (computed once). */
  crossKey?: Tensor;
  crossValue?: Tensor;
}

/** One entry per layer. Prefix tuning passes learned prefixes here; generation passes the growing cache. */
export type PastKeyValues = LayerKV[];

/** What every model forward accepts. */
export interface ModelInputs {
  /** Token ids [batch, length] (int32). Exactly one of inputIds / inputsEmbeds. */
  inputIds?: Tensor;
  /** Input vectors [batch, length, hidden] instead of ids (prompt tuning prepends virtual tokens here). */
  inputsEmbeds?: Tensor;
  /** 1 for real tokens, 0 for padding, [batch, pastLength + length]. */
  attentionMask?: Tensor;
  /** Positions [batch, length]; derived from the past length when absent. */
  positionIds?: Tensor;
  /** Keys/values of earlier positions (KV cache or prefix). */
  pastKeyValues?: PastKeyValues;
  /** Return the keys/values of all positions for the next step. */
  useCache?: boolean;
  /**
   * Causal LMs: compute the logits of the last n positions only (transformers' num_logits_to_keep; 0 or absent:
   * all). Generation needs only the last one, and the head over every prompt position costs more than the layers.
   */
  numLogitsToKeep?: number;
  /** Return the hidden state after the embeddings and after every layer. */
  outputHiddenStates?: boolean;
  /** Targets: token ids (-100 ignored) for LMs, class ids [batch] for sequence classification. */
  labels?: Tensor;
  /** Token-type (segment) ids, BERT only. */
  tokenTypeIds?: Tensor;
  /** Extractive question answering: gold span start and end indices [batch]. */
  startPositions?: Tensor;
  endPositions?: Tensor;
  /** Poly adapters: the task of each batch row [batch] (int32); models themselves ignore it. */
  taskIds?: Tensor;
}

/** Inputs of encoder-decoder models (T5): the encoder side plus decoder ids. */
export interface Seq2SeqInputs extends ModelInputs {
  decoderInputIds?: Tensor;
  decoderInputsEmbeds?: Tensor;
  decoderAttentionMask?: Tensor;
  /** A precomputed encoder output (generation reuses it). */
  encoderOutputs?: Tensor;
}

/** What base models (no task head) return. */
export interface BaseModelOutput {
  /** Final hidden states [batch, length, hidden]. */
  lastHiddenState: Tensor;
  pastKeyValues?: PastKeyValues;
  hiddenStates?: Tensor[];
}

/** What models with a task head return (fields absent when not computed). */
export interface ModelOutput {
  /** Scores: [batch, length, vocab] for LMs, [batch, labels] for sequence classification, [batch, length, labels] for tokens. */
  logits: Tensor;
  loss?: Tensor;
  pastKeyValues?: PastKeyValues;
  hiddenStates?: Tensor[];
  /** Question answering. */
  startLogits?: Tensor;
  endLogits?: Tensor;
  /** Encoder-decoder models. */
  encoderLastHiddenState?: Tensor;
  encoderHiddenStates?: Tensor[];
  decoderHiddenStates?: Tensor[];
}
