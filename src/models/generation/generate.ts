/**
 * generate(): autoregressive decoding with a KV cache for decoder-only and encoder-decoder models — greedy or
 * sampled (temperature, top-k, top-p), repetition penalty, eos / stop-token / stop-string stopping, max_new_tokens or
 * max_length, batches with left padding — following transformers' GenerationMixin (positions from the attention mask,
 * finished rows continued with pad ids). The loop is one step at a time (decodeSteps), so that generate, streamers
 * and the async iterator generateStream share it.
 */
import {
  Generator,
  type Tensor,
  argmax as argmaxAlong,
  crossEntropy,
  keep,
  noGrad,
  ones,
  select,
  tensor,
  tidy,
} from "../../tensor/index.js";
import { eosIds, type PretrainedConfig } from "../config.js";
import type { ModelOutput, PastKeyValues, Seq2SeqInputs } from "../outputs.js";
import { CheckpointError, ConfigError } from "../../errors.js";
import {
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  sampleIndex,
  softmax,
} from "./logits.js";
import { StopStrings, type TokenDecoder } from "./stopping.js";

/** How the next token is picked (transformers' names in camelCase). */
export interface SamplingOptions {
  /** Sample instead of taking the most likely token. */
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
}

/** How one row's next token is picked: its sampling options, its ids so far (for the repetition penalty), a uniform draw. */
export interface RowChoice {
  opts: SamplingOptions;
  previous: readonly number[];
  uniform: () => number;
}

/** A chosen token and its log-probability under the model (before penalty, temperature, top-k/top-p). */
export interface TokenChoice {
  token: number;
  logprob: number;
}

/**
 * Each row's next token from logits [rows, vocab] (greedy or sampled), with its log-probability; null rows are
 * skipped (token -1). The greedy argmax and the log-probability (the cross-entropy at the pick) run on the
 * backend over all rows at once, so a vocabulary-sized row reaches JS only when it is sampled or penalised. NaN
 * logits throw nanLogits(step, row).
 */
export function chooseTokens(logits: Tensor, rows: readonly (RowChoice | null)[], step: number): TokenChoice[] {
  return tidy(() => {
    const vocab = logits.shape[logits.rank - 1]!;
    const best = argmaxAlong(logits, -1).dataSync() as Int32Array;
    let data: Float32Array | Int32Array | null = null;
    const tokens = rows.map((row, r) => {
      if (row === null) return -1;
      const penalty = row.opts.repetitionPenalty ?? 1;
      if (!row.opts.doSample && penalty === 1) return best[r]!;
      data ??= logits.dataSync();
      return pickFromScores(Float64Array.from(data.subarray(r * vocab, (r + 1) * vocab)), row, penalty);
    });
    // −log p(token) per row is the cross-entropy at the token: no vocabulary-sized row is written or read back.
    const picked = tensor(Int32Array.from(tokens), [tokens.length], "int32");
    const losses = crossEntropy(logits, picked, { reduction: "none", ignoreIndex: -1 }).dataSync();
    return tokens.map((token, r) => {
      const logprob = token < 0 ? 0 : -losses[r]!;
      // One NaN logit makes the row's log-sum-exp, so every log-probability of the row, NaN.
      if (Number.isNaN(logprob)) throw nanLogits(step, r);
      return { token, logprob };
    });
  });
}

/** A row's token from its float64 scores: repetition penalty, then argmax or temperature/top-k/top-p sampling. */
function pickFromScores(scores: Float64Array, row: RowChoice, penalty: number): number {
  applyRepetitionPenalty(scores, row.previous, penalty);
  if (!row.opts.doSample) return argmax(scores);
  applyTemperature(scores, row.opts.temperature ?? 1);
  applyTopK(scores, row.opts.topK ?? 50);
  applyTopP(scores, row.opts.topP ?? 1);
  return sampleIndex(softmax(scores), row.uniform());
}

/** Options of generate (transformers' names in camelCase). */
export interface GenerateOptions extends SamplingOptions {
  /** Prompt ids [batch, length] (int32); rows shorter than the longest are left-padded. */
  inputIds: Tensor;
  /** 1 for prompt tokens, 0 for padding; all ones when absent. */
  attentionMask?: Tensor;
  /** Number of tokens to add (default 20; wins over maxLength when both are given). */
  maxNewTokens?: number;
  /** Longest result, prompt included (seq2seq: decoder tokens, start token included), as transformers' max_length. */
  maxLength?: number;
  /** Stop a row when it emits one of these (default: the config's eos). */
  eosTokenId?: number | number[];
  /** Id written after a row has finished (default: the config's pad, else eos). */
  padTokenId?: number;
  /** Further ids that end a row as eos does (vLLM's stop_token_ids). */
  stopTokenIds?: number[];
  /** A row ends once its generated text contains one of these (the tokens that complete it are kept); needs tokenizer. */
  stopStrings?: string[];
  /** Decodes ids to text, for stopStrings. */
  tokenizer?: TokenDecoder;
  /** Seed of the sampling generator: one for the batch, or one per row (each row then samples independently of the others). */
  seed?: number | number[];
  /** Gets each step's new tokens (one per row), then end() (transformers' streamer protocol). */
  streamer?: Streamer;
  /** Encoder-decoder models: the first decoder token (default: the config's decoder_start_token_id). */
  decoderStartTokenId?: number;
  /** Poly adapters: the task of each batch row [batch] (int32), passed to every forward step. */
  taskIds?: Tensor;
}

/**
 * A model that generate() can drive: a causal LM or a seq2seq LM (GenerativeModel), or a PEFT wrapper that
 * adds its own inputs (prompts, prefixes) and forwards the same way.
 */
export interface Generative {
  readonly config: PretrainedConfig;
  readonly isEncoderDecoder: boolean;
  /** Whether dropout is on; generate() runs in eval mode and restores training mode afterwards. */
  readonly training: boolean;
  forward(inputs: Seq2SeqInputs): ModelOutput;
  /** Encoder-decoder models: run the encoder once. */
  encode?(inputs: Seq2SeqInputs): Tensor;
  /** Switch dropout off. */
  eval(): void;
  /** Switch training mode on or off. */
  train(mode?: boolean): void;
}

/** Receives generated tokens as they come (TextStreamer implements it). */
export interface Streamer {
  /** The new token of every row (finished rows get the pad id). */
  put(tokens: number[]): void;
  /** Generation has ended. */
  end(): void;
}

/** Why a row ended: an eos / stop token / stop string, or the length limit. */
export type FinishReason = "stop" | "length";

/** One decoding step: the new token of every row, its log-probability under the model, and which rows have ended. */
export interface GenerationStep {
  tokens: number[];
  /** log softmax of the model's logits (before repetition penalty, temperature, top-k/top-p) at the chosen token. */
  logprobs: number[];
  /** The reason of each row that has ended by this step, null while it runs (and for rows that ended earlier: see done). */
  finishReasons: (FinishReason | null)[];
  /** Rows that ended at an earlier step (their token is padding). */
  done: boolean[];
}

/** generate's result with the per-token details. */
export interface GenerateOutput {
  /** As generate returns it. */
  sequences: Tensor;
  /** Per row, the log-probability of each generated token up to and including its last real one. */
  logprobs: number[][];
  /** Per row, why it ended. */
  finishReasons: FinishReason[];
}

interface Stepper {
  /** Logits [batch, vocab] of the next token, given the newest tokens [batch, n] (the whole prompt at first). */
  next(tokens: Tensor): Tensor;
  /** The cache after the last step (returned from each step's memory scope so that it outlives it). */
  cache(): PastKeyValues | undefined;
  /** Free what the stepper holds (cache, encoder output). */
  dispose(): void;
}

/** One uniform number in [0, 1) from a generator. */
export function uniformDraw(gen: Generator): number {
  return tidy(() => gen.uniform([1]).dataSync()[0]!);
}

/** The error for NaN logits: decoding them would print garbage (argmax of NaN is token 0) and look like success. */
function nanLogits(step: number, row: number): CheckpointError {
  return new CheckpointError(
    `generate: the model's logits are NaN at step ${step + 1} (batch row ${row}), so no token can be chosen`,
    "likely causes: NaN or infinite weights in the model or adapter (e.g. saved by a diverged " +
      "training run: retrain with a lower learning_rate), " +
      "or a broken config value such as rms_norm_eps/layer_norm_eps ≤ 0",
  );
}

function intRows(t: Tensor): number[][] {
  const [b, n] = t.shape as [number, number];
  const v = t.dataSync();
  return Array.from({ length: b }, (_, r) => Array.from(v.subarray(r * n, (r + 1) * n)));
}

/** Decoder-only stepping: positions = cumsum(mask) − 1 (pads at 1), the mask grows by one column per step. */
function decoderOnlyStepper(model: Generative, mask: number[][], taskIds?: Tensor): Stepper {
  let past: PastKeyValues | undefined;
  return {
    next(tokens) {
      const [b, n] = tokens.shape as [number, number];
      const total = mask[0]!.length;
      const positions = mask.map((row) => {
        let seen = 0;
        return row.map((m) => (m === 1 ? seen++ : 1)).slice(total - n);
      });
      const out = model.forward({
        inputIds: tokens,
        attentionMask: tensor(Int32Array.from(mask.flat()), [b, total]),
        positionIds: tensor(Int32Array.from(positions.flat()), [b, n]),
        ...(past ? { pastKeyValues: past } : {}),
        ...(taskIds ? { taskIds } : {}),
        useCache: true,
      });
      replaceCache(past, out.pastKeyValues);
      past = out.pastKeyValues;
      return select(out.logits, 1, out.logits.shape[1]! - 1);
    },
    cache: () => past,
    dispose: () => disposeCache(past),
  };
}

/** Encoder-decoder stepping: encode once, then feed decoder tokens with the decoder cache. */
function encoderDecoderStepper(model: Generative, inputIds: Tensor, attentionMask: Tensor, taskIds?: Tensor): Stepper {
  const encoderOutputs = keep(model.encode!({ inputIds, attentionMask, ...(taskIds ? { taskIds } : {}) }));
  let past: PastKeyValues | undefined;
  return {
    next(tokens) {
      const out = model.forward({
        attentionMask,
        encoderOutputs,
        decoderInputIds: tokens,
        ...(past ? { pastKeyValues: past } : {}),
        ...(taskIds ? { taskIds } : {}),
        useCache: true,
      });
      replaceCache(past, out.pastKeyValues);
      past = out.pastKeyValues;
      return select(out.logits, 1, out.logits.shape[1]! - 1);
    },
    cache: () => past,
    dispose: () => {
      disposeCache(past);
      encoderOutputs.dispose();
    },
  };
}

function disposeCache(past: PastKeyValues | undefined): void {
  for (const layer of past ?? []) for (const t of Object.values(layer)) (t as Tensor | undefined)?.dispose();
}

/**
 * Free the previous step's cache tensors that the new cache does not reuse. The new cache outlives the step's
 * memory scope because the step returns it (see generate); everything generate allocated is freed when it ends.
 */
function replaceCache(previous: PastKeyValues | undefined, next: PastKeyValues | undefined): void {
  if (!next) throw new Error("generate: the model did not return pastKeyValues with useCache");
  for (const layer of previous ?? []) {
    for (const [name, t] of Object.entries(layer)) {
      // Cross-attention keys are computed once and carried over unchanged.
      if (t && !next.some((l) => (l as unknown as Record<string, Tensor>)[name] === t)) t.dispose();
    }
  }
}

/** The number of tokens to add: maxNewTokens, else what maxLength leaves after the prompt, else 20. */
function newTokenBudget(opts: GenerateOptions, promptLength: number): number {
  if (opts.maxNewTokens !== undefined) return opts.maxNewTokens;
  if (opts.maxLength === undefined) return 20;
  const budget = opts.maxLength - promptLength;
  if (budget <= 0) {
    throw new ConfigError(
      `generate: maxLength ${opts.maxLength} leaves no room after the ${promptLength}-token prompt`,
      "raise maxLength above the prompt length, or pass maxNewTokens instead",
    );
  }
  return budget;
}

function rowGenerators(seed: number | number[] | undefined, batch: number): Generator[] {
  if (!Array.isArray(seed)) return new Array<Generator>(batch).fill(new Generator(seed ?? 0));
  if (seed.length !== batch)
    throw new ConfigError(
      `generate: ${seed.length} seeds for a batch of ${batch} rows`,
      "pass one seed, or one per row",
    );
  return seed.map((s) => new Generator(s));
}

/** The decoding state of one generate call; steps() yields each step, output() gives the result. */
class Decoding {
  readonly sequences: number[][];
  readonly logprobs: number[][];
  readonly reasons: (FinishReason | null)[];
  private readonly stepper: Stepper;
  private feed: Tensor;
  private readonly maxNew: number;
  private readonly stopIds: number[];
  private readonly pad: number;
  private readonly generators: Generator[];
  private readonly stopStrings: StopStrings | null;
  private readonly promptLength: number;
  /** Decoder-only models: the attention mask, one column longer after each step. */
  private maskRows: number[][] | null = null;

  constructor(
    model: Generative,
    private readonly opts: GenerateOptions,
  ) {
    const [batch, length] = opts.inputIds.shape as [number, number];
    const eos = opts.eosTokenId === undefined ? eosIds(model.config) : [opts.eosTokenId].flat();
    this.stopIds = [...eos, ...(opts.stopTokenIds ?? [])];
    const pad = opts.padTokenId ?? model.config.pad_token_id ?? eos[0];
    if (pad === undefined || pad === null)
      throw new Error("generate: no padTokenId given and the config has neither pad_token_id nor eos_token_id");
    this.pad = pad;
    this.generators = rowGenerators(opts.seed, batch);
    this.stopStrings = opts.stopStrings?.length ? new StopStrings(opts.stopStrings, opts.tokenizer, batch) : null;
    this.logprobs = Array.from({ length: batch }, () => []);
    this.reasons = new Array<FinishReason | null>(batch).fill(null);
    if (model.isEncoderDecoder) {
      const start = opts.decoderStartTokenId ?? model.config.decoder_start_token_id ?? pad;
      this.sequences = Array.from({ length: batch }, () => [start]);
      const mask = opts.attentionMask ?? ones([batch, length], "int32");
      this.stepper = noGrad(() => encoderDecoderStepper(model, opts.inputIds, mask, opts.taskIds));
      this.feed = tensor(Int32Array.from(this.sequences.flat()), [batch, 1]);
    } else {
      this.sequences = intRows(opts.inputIds);
      const maskRows = opts.attentionMask
        ? intRows(opts.attentionMask)
        : Array.from({ length: batch }, () => new Array<number>(length).fill(1));
      this.maskRows = maskRows;
      this.stepper = decoderOnlyStepper(model, maskRows, opts.taskIds);
      this.feed = opts.inputIds;
    }
    this.promptLength = this.sequences[0]!.length;
    this.maxNew = newTokenBudget(opts, this.promptLength);
  }

  /** Run step by step; the stepper's tensors are freed when the iteration ends (also when it is abandoned). */
  *steps(): globalThis.Generator<GenerationStep, void> {
    try {
      for (let step = 0; step < this.maxNew && this.reasons.includes(null); step++) {
        const result = this.step(step);
        this.opts.streamer?.put(result.tokens);
        yield result;
      }
    } finally {
      this.stepper.dispose();
      if (this.feed !== this.opts.inputIds) this.feed.dispose();
      this.opts.streamer?.end();
    }
  }

  private step(step: number): GenerationStep {
    const done = this.reasons.map((r) => r !== null);
    const rows = this.sequences.map((seq, r): RowChoice | null =>
      done[r] ? null : { opts: this.opts, previous: seq, uniform: () => uniformDraw(this.generators[r]!) },
    );
    // The cache is returned from the step's memory scope so that it outlives it.
    const { choices } = noGrad(() =>
      tidy(() => ({ choices: chooseTokens(this.stepper.next(this.feed), rows, step), cache: this.stepper.cache() })),
    );
    const tokens = choices.map((c, r) => (done[r] ? this.pad : c.token));
    const logprobs = choices.map((c) => c.logprob);
    const finishReasons = tokens.map((tok, r): FinishReason | null => {
      if (done[r]) return null;
      this.sequences[r]!.push(tok);
      this.logprobs[r]!.push(logprobs[r]!);
      const stopped =
        this.stopIds.includes(tok) || (this.stopStrings?.hit(r, this.sequences[r]!.slice(this.promptLength)) ?? false);
      const reason = stopped ? "stop" : step + 1 >= this.maxNew ? "length" : null;
      this.reasons[r] = reason;
      return reason;
    });
    done.forEach((d, r) => {
      d && this.sequences[r]!.push(this.pad);
    });
    this.maskRows?.forEach((row) => {
      row.push(1);
    });
    if (this.feed !== this.opts.inputIds) this.feed.dispose();
    this.feed = tensor(Int32Array.from(tokens), [tokens.length, 1]);
    return { tokens, logprobs, finishReasons, done };
  }

  /** The result so far (sequences as a tensor in the current memory scope). */
  output(): GenerateOutput {
    const n = this.sequences[0]!.length;
    return {
      sequences: tensor(Int32Array.from(this.sequences.flat()), [this.sequences.length, n]),
      logprobs: this.logprobs,
      finishReasons: this.reasons.map((r) => r ?? "length"),
    };
  }
}

/** Run fn in eval mode, restoring training mode afterwards. */
function inEval<T>(model: Generative, fn: () => T): T {
  const wasTraining = model.training;
  model.eval();
  try {
    return fn();
  } finally {
    if (wasTraining) model.train();
  }
}

/** Generate with the per-token log-probabilities and finish reasons. */
export function generateDetailed(model: Generative, opts: GenerateOptions): GenerateOutput {
  // One memory scope for the whole generation: only the returned sequences survive it. Tensors passed in (inputs,
  // prefixes, parameters) are not owned here.
  return inEval(model, () =>
    tidy(() => {
      const decoding = new Decoding(model, opts);
      for (const _ of decoding.steps());
      return decoding.output();
    }),
  );
}

/** Generate continuations; returns [batch, length + new] for decoder-only models, decoder ids for seq2seq ones. */
export function generate(model: Generative, opts: GenerateOptions): Tensor {
  return generateDetailed(model, opts).sequences;
}

/**
 * Generate as an async iterator of steps, yielding to the event loop between steps. Breaking out of the loop stops
 * generation and frees its cache. The model stays in eval mode until the iteration ends.
 */
export async function* generateStream(model: Generative, opts: GenerateOptions): AsyncGenerator<GenerationStep, void> {
  const wasTraining = model.training;
  model.eval();
  try {
    for (const step of new Decoding(model, opts).steps()) {
      yield step;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    if (wasTraining) model.train();
  }
}
