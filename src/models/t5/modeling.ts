/**
 * T5 and mT5 (transformers' modeling_t5 / modeling_mt5, eager attention) with HF module and parameter names:
 * relative-position-bias attention without 1/√d scaling, RMS layer norms without mean or bias, encoder and decoder
 * stacks sharing one embedding table, and a language-modelling head (tied to it unless the config unties it).
 */
import {
  Dropout,
  Embedding,
  Linear,
  Module,
  ModuleList,
  RMSNorm,
  activationFn,
  type EmbeddingLayer,
  type TensorLayer,
} from "../../nn/index.js";
import { type Tensor, add, cat, crossEntropy, mul, permute, reshape, tensor, unsqueeze } from "../../tensor/index.js";
import { attend, buildAttentionMask, mergeHeads, splitHeads } from "../attention.js";
import type { BaseModelOutput, LayerKV, ModelOutput, PastKeyValues, Seq2SeqInputs } from "../outputs.js";
import { PreTrainedModel } from "../pretrained.js";
import { GenerativeModel } from "../generation/generative-model.js";
import { embedOrUse, pastLength } from "../heads.js";
import type { T5Config } from "./config.js";

const FAMILY_PREFIX: Record<string, string> = { t5: "T5", mt5: "MT5" };

/** transformers' class name for this model type ("MT5ForConditionalGeneration" for an mt5 model). */
function familyClassName(name: string, config: T5Config): string {
  return name.replace(/^T5/, FAMILY_PREFIX[config.model_type] ?? "T5");
}

/**
 * HF's T5Attention._relative_position_bucket for one relative position (memory − query). Half of the buckets
 * (of each direction when bidirectional) are exact offsets, the rest logarithmic up to maxDistance. The
 * logarithmic part is computed in float32 step by step, as torch does, so that bucket boundaries agree exactly.
 */
export function relativePositionBucket(
  relativePosition: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  let bucket = 0;
  let n = numBuckets;
  let rel = relativePosition;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (rel > 0) bucket += n;
    rel = Math.abs(rel);
  } else {
    rel = -Math.min(rel, 0);
  }
  const maxExact = Math.floor(n / 2);
  if (rel < maxExact) return bucket + rel;
  const f = Math.fround;
  const scaled = f(f(f(Math.log(f(rel / maxExact))) / f(Math.log(maxDistance / maxExact))) * (n - maxExact));
  return bucket + Math.min(maxExact + Math.trunc(scaled), n - 1);
}

class T5DenseActDense extends Module {
  wi: TensorLayer;
  wo: TensorLayer;
  dropout: Dropout;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: T5Config) {
    super();
    this.wi = this.registerModule("wi", new Linear(config.d_model, config.d_ff, { bias: false }));
    this.wo = this.registerModule("wo", new Linear(config.d_ff, config.d_model, { bias: false }));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout_rate));
    this.act = activationFn(config.dense_act_fn);
  }

  forward(x: Tensor): Tensor {
    return this.wo.forward(this.dropout.forward(this.act(this.wi.forward(x))));
  }
}

class T5DenseGatedActDense extends Module {
  wi_0: TensorLayer;
  wi_1: TensorLayer;
  wo: TensorLayer;
  dropout: Dropout;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: T5Config) {
    super();
    this.wi_0 = this.registerModule("wi_0", new Linear(config.d_model, config.d_ff, { bias: false }));
    this.wi_1 = this.registerModule("wi_1", new Linear(config.d_model, config.d_ff, { bias: false }));
    this.wo = this.registerModule("wo", new Linear(config.d_ff, config.d_model, { bias: false }));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout_rate));
    this.act = activationFn(config.dense_act_fn);
  }

  forward(x: Tensor): Tensor {
    return this.wo.forward(this.dropout.forward(mul(this.act(this.wi_0.forward(x)), this.wi_1.forward(x))));
  }
}

class T5LayerFF extends Module {
  DenseReluDense: T5DenseActDense | T5DenseGatedActDense;
  layer_norm: RMSNorm;
  dropout: Dropout;

  constructor(config: T5Config) {
    super();
    this.DenseReluDense = this.registerModule(
      "DenseReluDense",
      config.is_gated_act ? new T5DenseGatedActDense(config) : new T5DenseActDense(config),
    );
    this.layer_norm = this.registerModule("layer_norm", new RMSNorm(config.d_model, config.layer_norm_epsilon));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout_rate));
  }

  forward(x: Tensor): Tensor {
    return add(x, this.dropout.forward(this.DenseReluDense.forward(this.layer_norm.forward(x))));
  }
}

/** Keys/values an attention layer used, to be returned as the cache. */
interface AttentionResult {
  out: Tensor;
  key: Tensor;
  value: Tensor;
}

class T5Attention extends Module {
  q: TensorLayer;
  k: TensorLayer;
  v: TensorLayer;
  o: TensorLayer;
  relative_attention_bias: Embedding | null;

  constructor(
    private readonly config: T5Config,
    private readonly isDecoder: boolean,
    hasRelativeAttentionBias: boolean,
  ) {
    super();
    const inner = config.num_heads * config.d_kv;
    this.q = this.registerModule("q", new Linear(config.d_model, inner, { bias: false }));
    this.k = this.registerModule("k", new Linear(config.d_model, inner, { bias: false }));
    this.v = this.registerModule("v", new Linear(config.d_model, inner, { bias: false }));
    this.o = this.registerModule("o", new Linear(inner, config.d_model, { bias: false }));
    this.relative_attention_bias = this.registerModule(
      "relative_attention_bias",
      hasRelativeAttentionBias ? new Embedding(config.relative_attention_num_buckets, config.num_heads) : null,
    );
  }

  /**
   * The learned relative-position bias [1, heads, q, k] for queries at positions keyLength − q … keyLength − 1
   * (the last q of the keys, as HF slices it with a cache) against keys 0 … keyLength − 1. Bidirectional buckets in
   * the encoder, causal ones in the decoder.
   */
  computeBias(queryLength: number, keyLength: number): Tensor {
    if (!this.relative_attention_bias) throw new Error("T5Attention: only the first block has relative_attention_bias");
    const c = this.config;
    const ids = new Int32Array(queryLength * keyLength);
    const offset = keyLength - queryLength;
    for (let i = 0; i < queryLength; i++) {
      for (let j = 0; j < keyLength; j++) {
        ids[i * keyLength + j] = relativePositionBucket(
          j - (i + offset),
          !this.isDecoder,
          c.relative_attention_num_buckets,
          c.relative_attention_max_distance,
        );
      }
    }
    const values = this.relative_attention_bias.forward(tensor(ids, [queryLength, keyLength], "int32"));
    return unsqueeze(permute(values, [2, 0, 1]), 0);
  }

  /**
   * Self-attention over x (past keys/values prepended), or cross-attention over `keyValueStates` (the encoder
   * output) reusing `past` when it spans exactly the encoder length, as HF does. `positionBias` holds the relative
   * bias plus the additive mask; scores are not scaled by 1/√d.
   */
  forward(
    x: Tensor,
    positionBias: Tensor | null,
    past: { key: Tensor; value: Tensor } | undefined,
    keyValueStates?: Tensor,
  ): AttentionResult {
    const h = this.config.num_heads;
    const query = splitHeads(this.q.forward(x), h);
    let key: Tensor, value: Tensor;
    if (keyValueStates === undefined) {
      key = splitHeads(this.k.forward(x), h);
      value = splitHeads(this.v.forward(x), h);
      if (past) {
        key = cat([past.key, key], 2);
        value = cat([past.value, value], 2);
      }
    } else if (past && past.key.shape[2] === keyValueStates.shape[1]) {
      ({ key, value } = past);
    } else {
      key = splitHeads(this.k.forward(keyValueStates), h);
      value = splitHeads(this.v.forward(keyValueStates), h);
    }
    const attn = attend(query, key, value, null, {
      scale: 1,
      positionBias,
      dropoutP: this.config.dropout_rate,
      training: this.training,
    });
    return { out: this.o.forward(mergeHeads(attn)), key, value };
  }
}

class T5LayerSelfAttention extends Module {
  SelfAttention: T5Attention;
  layer_norm: RMSNorm;
  dropout: Dropout;

  constructor(config: T5Config, isDecoder: boolean, hasRelativeAttentionBias: boolean) {
    super();
    this.SelfAttention = this.registerModule(
      "SelfAttention",
      new T5Attention(config, isDecoder, hasRelativeAttentionBias),
    );
    this.layer_norm = this.registerModule("layer_norm", new RMSNorm(config.d_model, config.layer_norm_epsilon));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout_rate));
  }

  forward(x: Tensor, positionBias: Tensor | null, past: LayerKV | undefined): AttentionResult {
    const r = this.SelfAttention.forward(this.layer_norm.forward(x), positionBias, past);
    return { ...r, out: add(x, this.dropout.forward(r.out)) };
  }
}

class T5LayerCrossAttention extends Module {
  EncDecAttention: T5Attention;
  layer_norm: RMSNorm;
  dropout: Dropout;

  constructor(config: T5Config) {
    super();
    this.EncDecAttention = this.registerModule("EncDecAttention", new T5Attention(config, true, false));
    this.layer_norm = this.registerModule("layer_norm", new RMSNorm(config.d_model, config.layer_norm_epsilon));
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout_rate));
  }

  forward(
    x: Tensor,
    encoderStates: Tensor,
    mask: Tensor | null,
    past: { key: Tensor; value: Tensor } | undefined,
  ): AttentionResult {
    const r = this.EncDecAttention.forward(this.layer_norm.forward(x), mask, past, encoderStates);
    return { ...r, out: add(x, this.dropout.forward(r.out)) };
  }
}

class T5Block extends Module {
  layer: ModuleList<T5LayerSelfAttention | T5LayerCrossAttention | T5LayerFF>;

  constructor(
    config: T5Config,
    private readonly isDecoder: boolean,
    hasRelativeAttentionBias: boolean,
  ) {
    super();
    const layers: (T5LayerSelfAttention | T5LayerCrossAttention | T5LayerFF)[] = [
      new T5LayerSelfAttention(config, isDecoder, hasRelativeAttentionBias),
    ];
    if (isDecoder) layers.push(new T5LayerCrossAttention(config));
    layers.push(new T5LayerFF(config));
    this.layer = this.registerModule("layer", new ModuleList(layers));
  }

  /** The self-attention sublayer (its SelfAttention computes the stack's position bias in block 0). */
  get selfAttention(): T5LayerSelfAttention {
    return this.layer.get(0) as T5LayerSelfAttention;
  }

  forward(
    x: Tensor,
    positionBias: Tensor | null,
    past: LayerKV | undefined,
    encoder?: { states: Tensor; bias: Tensor | null },
  ): { out: Tensor; present: LayerKV } {
    const sa = this.selfAttention.forward(x, positionBias, past);
    let hidden = sa.out;
    const present: LayerKV = { key: sa.key, value: sa.value };
    if (this.isDecoder && encoder) {
      const crossPast = past?.crossKey && past.crossValue ? { key: past.crossKey, value: past.crossValue } : undefined;
      const cross = (this.layer.get(1) as T5LayerCrossAttention).forward(
        hidden,
        encoder.states,
        encoder.bias,
        crossPast,
      );
      hidden = cross.out;
      present.crossKey = cross.key;
      present.crossValue = cross.value;
    }
    const ff = this.layer.get(this.layer.length - 1) as T5LayerFF;
    return { out: ff.forward(hidden), present };
  }
}

/** Inputs of one T5 stack (encoder or decoder). */
export interface T5StackInputs {
  inputIds?: Tensor;
  inputsEmbeds?: Tensor;
  /** Padding mask of this stack's tokens, [batch, past + length] (all ones when absent). */
  attentionMask?: Tensor;
  /** Decoder: the encoder output [batch, sourceLength, d_model] and its padding mask. */
  encoderHiddenStates?: Tensor;
  encoderAttentionMask?: Tensor;
  /** Decoder: cached (or prefix) self-attention keys/values, optionally with the cross-attention ones. */
  pastKeyValues?: PastKeyValues;
  useCache?: boolean;
  outputHiddenStates?: boolean;
}

/** The encoder or the decoder of T5: blocks, a final RMS norm and dropout; block 0 owns the relative-position bias. */
export class T5Stack extends Module {
  embed_tokens: EmbeddingLayer;
  block: ModuleList<T5Block>;
  final_layer_norm: RMSNorm;
  dropout: Dropout;

  constructor(
    config: T5Config,
    embedTokens: EmbeddingLayer,
    readonly isDecoder: boolean,
  ) {
    super();
    this.embed_tokens = this.registerModule("embed_tokens", embedTokens);
    const n = isDecoder ? config.num_decoder_layers : config.num_layers;
    this.block = this.registerModule(
      "block",
      new ModuleList([...Array(n).keys()].map((i) => new T5Block(config, isDecoder, i === 0))),
    );
    this.final_layer_norm = this.registerModule(
      "final_layer_norm",
      new RMSNorm(config.d_model, config.layer_norm_epsilon),
    );
    this.dropout = this.registerModule("dropout", new Dropout(config.dropout_rate));
  }

  /**
   * Hidden states of the stack. hiddenStates (outputHiddenStates): the embeddings, the output of every block but
   * the last, and the final output after final_layer_norm (HF's layout). The decoder is causal; with
   * pastKeyValues its queries are the last `length` of past + length positions (relative positions and the causal
   * mask count the past, as HF's T5Attention does for the cache and for prefix tuning).
   */
  forward(inputs: T5StackInputs): BaseModelOutput {
    const embeds = embedOrUse(inputs, this.embed_tokens);
    const [batch, length] = embeds.shape as [number, number];
    const pastKv = inputs.pastKeyValues && inputs.pastKeyValues.length > 0 ? inputs.pastKeyValues : undefined;
    if (pastKv && !this.isDecoder) throw new Error("T5 encoder: pastKeyValues are only used by the decoder");
    if (pastKv && pastKv.length !== this.block.length) {
      throw new Error(
        `T5 decoder: pastKeyValues has ${pastKv.length} layers but the decoder has ${this.block.length} blocks`,
      );
    }
    if (inputs.useCache && !this.isDecoder) throw new Error("T5 encoder: useCache can only be set for the decoder");
    const past = pastLength(pastKv);
    const keys = past + length;
    const mask = buildAttentionMask(inputs.attentionMask, batch, length, keys, this.isDecoder);
    const bias = this.block.get(0).selfAttention.SelfAttention.computeBias(length, keys);
    const positionBias = mask ? add(bias, mask) : bias;
    let encoder: { states: Tensor; bias: Tensor | null } | undefined;
    if (this.isDecoder && inputs.encoderHiddenStates) {
      const source = inputs.encoderHiddenStates.shape[1]!;
      encoder = {
        states: inputs.encoderHiddenStates,
        bias: buildAttentionMask(inputs.encoderAttentionMask, batch, length, source, false),
      };
    }
    let hidden = this.dropout.forward(embeds);
    const hiddenStates: Tensor[] = [];
    const presents: PastKeyValues = [];
    [...this.block].forEach((block, i) => {
      if (inputs.outputHiddenStates) hiddenStates.push(hidden);
      const { out, present } = block.forward(hidden, positionBias, pastKv?.[i], encoder);
      hidden = out;
      presents.push(present);
    });
    hidden = this.dropout.forward(this.final_layer_norm.forward(hidden));
    if (inputs.outputHiddenStates) hiddenStates.push(hidden);
    return {
      lastHiddenState: hidden,
      ...(inputs.useCache ? { pastKeyValues: presents } : {}),
      ...(inputs.outputHiddenStates ? { hiddenStates } : {}),
    };
  }
}

/** HF's T5 _shift_right: prepend decoder_start_token_id, drop the last label, replace -100 by pad_token_id. */
export function shiftRight(labels: Tensor, config: T5Config): Tensor {
  const start = config.decoder_start_token_id;
  if (start === null || start === undefined) {
    throw new Error(
      "config.decoder_start_token_id has to be defined to build decoder inputs from labels. In " +
        "T5 it is usually set to the pad_token_id.",
    );
  }
  const pad = config.pad_token_id;
  if (pad === null || pad === undefined)
    throw new Error("config.pad_token_id has to be defined to build decoder inputs from labels");
  const [b, t] = labels.shape as [number, number];
  const src = labels.dataSync();
  const out = new Int32Array(b * t);
  for (let r = 0; r < b; r++) {
    out[r * t] = start;
    for (let j = 1; j < t; j++) {
      const v = src[r * t + j - 1]!;
      out[r * t + j] = v === -100 ? pad : v;
    }
  }
  return tensor(out, [b, t], "int32");
}

function rejectUnsupported(inputs: Seq2SeqInputs): void {
  if (inputs.positionIds) throw new Error("T5 uses relative positions; positionIds are not accepted");
  if (inputs.tokenTypeIds) throw new Error("T5 has no token type embeddings; do not pass tokenTypeIds");
}

/** Encoder and decoder outputs of a T5 forward without the head. */
interface T5Run {
  encoderLastHiddenState: Tensor;
  encoderHiddenStates?: Tensor[];
  decoder: BaseModelOutput;
  decoderInputIds?: Tensor;
}

/** Shared by T5Model and T5ForConditionalGeneration: run (or reuse) the encoder, then the decoder. */
function runSeq2Seq(encoderStack: T5Stack, decoderStack: T5Stack, config: T5Config, inputs: Seq2SeqInputs): T5Run {
  rejectUnsupported(inputs);
  let encoderLastHiddenState: Tensor;
  let encoderHiddenStates: Tensor[] | undefined;
  if (inputs.encoderOutputs) {
    encoderLastHiddenState = inputs.encoderOutputs;
  } else {
    const enc = encoderStack.forward({
      ...(inputs.inputIds ? { inputIds: inputs.inputIds } : {}),
      ...(inputs.inputsEmbeds ? { inputsEmbeds: inputs.inputsEmbeds } : {}),
      ...(inputs.attentionMask ? { attentionMask: inputs.attentionMask } : {}),
      outputHiddenStates: inputs.outputHiddenStates ?? false,
    });
    encoderLastHiddenState = enc.lastHiddenState;
    encoderHiddenStates = enc.hiddenStates;
  }
  let decoderInputIds = inputs.decoderInputIds;
  if (inputs.labels && !decoderInputIds && !inputs.decoderInputsEmbeds)
    decoderInputIds = shiftRight(inputs.labels, config);
  if (!decoderInputIds && !inputs.decoderInputsEmbeds) {
    throw new Error(
      "T5: pass decoderInputIds or decoderInputsEmbeds (or labels, from which decoder inputs are " +
        "built by shifting right)",
    );
  }
  const decoder = decoderStack.forward({
    ...(decoderInputIds ? { inputIds: decoderInputIds } : {}),
    ...(inputs.decoderInputsEmbeds ? { inputsEmbeds: inputs.decoderInputsEmbeds } : {}),
    ...(inputs.decoderAttentionMask ? { attentionMask: inputs.decoderAttentionMask } : {}),
    encoderHiddenStates: encoderLastHiddenState,
    ...(inputs.attentionMask ? { encoderAttentionMask: inputs.attentionMask } : {}),
    ...(inputs.pastKeyValues ? { pastKeyValues: inputs.pastKeyValues } : {}),
    useCache: inputs.useCache ?? false,
    outputHiddenStates: inputs.outputHiddenStates ?? false,
  });
  return { encoderLastHiddenState, ...(encoderHiddenStates ? { encoderHiddenStates } : {}), decoder };
}

/** Encoder-only run for generation and for callers that reuse the encoder output. */
function encodeWith(encoderStack: T5Stack, inputs: Seq2SeqInputs): Tensor {
  rejectUnsupported(inputs);
  return encoderStack.forward({
    ...(inputs.inputIds ? { inputIds: inputs.inputIds } : {}),
    ...(inputs.inputsEmbeds ? { inputsEmbeds: inputs.inputsEmbeds } : {}),
    ...(inputs.attentionMask ? { attentionMask: inputs.attentionMask } : {}),
  }).lastHiddenState;
}

/** Key names of the per-stack embedding tables in old checkpoints (the same tensor as shared.weight). */
const STACK_EMBEDDING_KEYS = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];

/**
 * Checkpoints may store the stacks' embed_tokens (the tensor shared.weight is tied to); use one of them as
 * shared.weight when that is absent, and drop them otherwise, as HF's tying does.
 */
function foldStackEmbeddings(weights: ReadonlyMap<string, Tensor>, prefix: string): Map<string, Tensor> {
  const out = new Map(weights);
  for (const key of STACK_EMBEDDING_KEYS.map((k) => prefix + k)) {
    const t = out.get(key);
    if (!t) continue;
    if (!out.has(`${prefix}shared.weight`)) out.set(`${prefix}shared.weight`, t);
    out.delete(key);
  }
  return out;
}

/** What T5Model returns: the decoder's output plus the encoder's. */
export interface Seq2SeqModelOutput extends BaseModelOutput {
  encoderLastHiddenState: Tensor;
  encoderHiddenStates?: Tensor[];
  decoderHiddenStates?: Tensor[];
}

/** T5 (or mT5) without a head: the decoder's last hidden state. */
export class T5Model extends PreTrainedModel {
  shared: EmbeddingLayer;
  encoder: T5Stack;
  decoder: T5Stack;

  constructor(override readonly config: T5Config) {
    super(config);
    this.shared = this.registerModule("shared", new Embedding(config.vocab_size, config.d_model));
    this.encoder = this.registerModule("encoder", new T5Stack(config, this.shared, false));
    this.decoder = this.registerModule("decoder", new T5Stack(config, this.shared, true));
  }

  override get architecture(): string {
    return familyClassName(this.constructor.name, this.config);
  }

  get baseModelPrefix(): string {
    return "transformer";
  }

  override getInputEmbeddings(): EmbeddingLayer {
    return this.shared;
  }

  override loadWeights(weights: ReadonlyMap<string, Tensor>) {
    return super.loadWeights(foldStackEmbeddings(weights, ""));
  }

  /** Run the encoder only; returns its last hidden state [batch, length, d_model]. */
  encode(inputs: Seq2SeqInputs): Tensor {
    return encodeWith(this.encoder, inputs);
  }

  /** Decoder hidden states for the decoder inputs, given encoder inputs or a precomputed encoder output. */
  forward(inputs: Seq2SeqInputs): Seq2SeqModelOutput {
    const run = runSeq2Seq(this.encoder, this.decoder, this.config, inputs);
    return {
      lastHiddenState: run.decoder.lastHiddenState,
      encoderLastHiddenState: run.encoderLastHiddenState,
      ...(run.decoder.pastKeyValues ? { pastKeyValues: run.decoder.pastKeyValues } : {}),
      ...(run.decoder.hiddenStates
        ? { hiddenStates: run.decoder.hiddenStates, decoderHiddenStates: run.decoder.hiddenStates }
        : {}),
      ...(run.encoderHiddenStates ? { encoderHiddenStates: run.encoderHiddenStates } : {}),
    };
  }
}

/**
 * T5 / mT5 with the language-modelling head. With tie_word_embeddings (T5's default; mT5 configs untie it),
 * lm_head shares shared.weight and the decoder output is scaled by d_model^-0.5 before it.
 */
export class T5ForConditionalGeneration extends GenerativeModel {
  shared: EmbeddingLayer;
  encoder: T5Stack;
  decoder: T5Stack;
  lm_head: TensorLayer;

  constructor(override readonly config: T5Config) {
    super(config);
    this.shared = this.registerModule("shared", new Embedding(config.vocab_size, config.d_model));
    this.encoder = this.registerModule("encoder", new T5Stack(config, this.shared, false));
    this.decoder = this.registerModule("decoder", new T5Stack(config, this.shared, true));
    const lmHead = new Linear(config.d_model, config.vocab_size, { bias: false });
    if (config.tie_word_embeddings) lmHead.weight = lmHead.registerParameter("weight", this.shared.weight);
    this.lm_head = this.registerModule("lm_head", lmHead);
  }

  override get architecture(): string {
    return familyClassName(this.constructor.name, this.config);
  }

  get baseModelPrefix(): string {
    return "transformer";
  }

  override getInputEmbeddings(): EmbeddingLayer {
    return this.shared;
  }

  override getOutputEmbeddings(): TensorLayer {
    return this.lm_head;
  }

  override loadWeights(weights: ReadonlyMap<string, Tensor>) {
    return super.loadWeights(foldStackEmbeddings(weights, ""));
  }

  /** Run the encoder only; returns its last hidden state [batch, length, d_model] (generation calls it once). */
  encode(inputs: Seq2SeqInputs): Tensor {
    return encodeWith(this.encoder, inputs);
  }

  /**
   * Logits [batch, decoderLength, vocab] for decoderInputIds (built from labels by shifting right when absent);
   * loss = mean cross-entropy over labels ≠ -100. encoderOutputs (a precomputed encoder last hidden state)
   * skips the encoder; attentionMask is the encoder's padding mask, also used by the cross-attention. With
   * useCache, pastKeyValues carry the decoder self-attention keys/values (key/value, growing) and the
   * cross-attention ones (crossKey/crossValue, computed at the first step and returned unchanged after).
   */
  forward(inputs: Seq2SeqInputs): ModelOutput {
    const run = runSeq2Seq(this.encoder, this.decoder, this.config, inputs);
    let sequence = run.decoder.lastHiddenState;
    if (this.config.tie_word_embeddings) sequence = mul(sequence, this.config.d_model ** -0.5);
    const logits = this.lm_head.forward(sequence);
    let loss: Tensor | undefined;
    if (inputs.labels) {
      const v = logits.shape[2]!;
      loss = crossEntropy(reshape(logits, [-1, v]), reshape(inputs.labels, [-1]), { ignoreIndex: -100 });
    }
    return {
      logits,
      ...(loss ? { loss } : {}),
      encoderLastHiddenState: run.encoderLastHiddenState,
      ...(run.decoder.pastKeyValues ? { pastKeyValues: run.decoder.pastKeyValues } : {}),
      ...(run.decoder.hiddenStates ? { decoderHiddenStates: run.decoder.hiddenStates } : {}),
      ...(run.encoderHiddenStates ? { encoderHiddenStates: run.encoderHiddenStates } : {}),
    };
  }
}
