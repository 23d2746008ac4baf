/**
 * The decode engine behind `peft serve`: continuous batching with a KV cache per sequence. A request is prefilled
 * alone when it arrives, then joins the running decode batch at the next step; a finished or cancelled one leaves
 * it at once and its cache is freed. Each decode step runs every running sequence in one forward pass, with its own
 * LoRA adapter per row (peft's adapter_names), caches left-padded to the longest and the padding masked out.
 */
import {
  Generator,
  cat,
  contiguous,
  narrow,
  noGrad,
  select,
  tensor,
  tidy,
  zeros,
  type Tensor,
} from "../tensor/index.js";
import type { ModelInputs, ModelOutput, PastKeyValues } from "../models/outputs.js";
import { eosIds, type PretrainedConfig } from "../models/config.js";
import {
  StopStrings,
  chooseToken,
  nanLogits,
  uniformDraw,
  type FinishReason,
  type SamplingOptions,
  type TokenDecoder,
} from "../generation/index.js";
import { BASE_ROW } from "../peft/index.js";

/** What the engine runs: a causal LM forward with one adapter name per batch row ("__base__" for none). */
export interface EngineModel {
  readonly config: PretrainedConfig;
  forward(inputs: ModelInputs, rowAdapters: readonly string[]): ModelOutput;
}

/** One generation request. */
export interface SequenceRequest extends SamplingOptions {
  promptIds: number[];
  /** The LoRA adapter of this request ("__base__" or absent: the base model). */
  adapter?: string;
  maxNewTokens: number;
  /** Seed of this request's sampling (its draws do not depend on the other requests in the batch). */
  seed?: number;
  /** Ids that end the request besides the config's eos. */
  stopTokenIds?: number[];
  /** Don't stop at the config's eos. */
  ignoreEos?: boolean;
  stopStrings?: string[];
  tokenizer?: TokenDecoder;
  /** Called with each generated token and its log-probability, as soon as it is chosen. */
  onToken?: (token: number, logprob: number) => void;
}

/** Why a sequence ended; "abort" when it was cancelled. */
export type SequenceFinish = FinishReason | "abort";

/** What a finished request produced. */
export interface SequenceResult {
  tokens: number[];
  logprobs: number[];
  finishReason: SequenceFinish;
}

/** Counters for /metrics. */
export interface EngineStats {
  /** Requests waiting to be prefilled. */
  waiting: number;
  /** Sequences in the decode batch. */
  running: number;
  /** Tokens generated since the engine started. */
  generatedTokens: number;
  /** Tokens generated over the last few seconds, per second. */
  tokensPerSecond: number;
  /** Adapters of the running sequences (with how many each). */
  activeAdapters: Record<string, number>;
}

/** A submitted request: its result, and a way to stop it. */
export class Sequence {
  readonly tokens: number[] = [];
  readonly logprobs: number[] = [];
  /** Keys/values of every position so far, [1, heads, length, headDim] per layer. */
  cache: PastKeyValues | null = null;
  readonly adapter: string;
  readonly done: Promise<SequenceResult>;
  private resolve!: (r: SequenceResult) => void;
  private readonly generator: Generator;
  private readonly stopIds: number[];
  private readonly stopStrings: StopStrings | null;
  finishReason: SequenceFinish | null = null;

  constructor(
    readonly request: SequenceRequest,
    config: PretrainedConfig,
    private readonly release: (s: Sequence) => void,
  ) {
    this.adapter = request.adapter ?? BASE_ROW;
    this.generator = new Generator(request.seed ?? 0);
    this.stopIds = [...(request.ignoreEos ? [] : eosIds(config)), ...(request.stopTokenIds ?? [])];
    this.stopStrings = request.stopStrings?.length ? new StopStrings(request.stopStrings, request.tokenizer, 1) : null;
    this.done = new Promise((resolve) => (this.resolve = resolve));
  }

  /** Tokens whose keys/values are in the cache (the newest token is not yet). */
  get cachedLength(): number {
    return this.request.promptIds.length + this.tokens.length - 1;
  }

  /** Stop now: the cache is freed at once and done resolves with finishReason "abort". */
  cancel(): void {
    if (this.finishReason === null) this.finish("abort");
  }

  /** Pick the next token from this sequence's logits row; finishes the sequence when it should stop. */
  accept(logits: Float64Array, step: number): void {
    if (logits.some(Number.isNaN)) throw nanLogits(step, 0);
    const { token, logprob } = chooseToken(logits, [...this.request.promptIds, ...this.tokens], this.request, () =>
      uniformDraw(this.generator),
    );
    this.tokens.push(token);
    this.logprobs.push(logprob);
    this.request.onToken?.(token, logprob);
    if (this.finishReason !== null) return; // cancelled from onToken
    if (this.stopIds.includes(token) || this.stopStrings?.hit(0, this.tokens)) this.finish("stop");
    else if (this.tokens.length >= this.request.maxNewTokens) this.finish("length");
  }

  finish(reason: SequenceFinish): void {
    this.finishReason = reason;
    disposeCache(this.cache);
    this.cache = null;
    this.release(this);
    this.resolve({ tokens: this.tokens, logprobs: this.logprobs, finishReason: reason });
  }
}

function disposeCache(cache: PastKeyValues | null): void {
  for (const layer of cache ?? []) for (const t of Object.values(layer)) (t as Tensor | undefined)?.dispose();
}

/** Options of the engine. */
export interface EngineOptions {
  /** Most sequences in the decode batch; more requests wait (default 32). */
  maxBatch?: number;
}

/** Continuous batching over an EngineModel. */
export class DecodeEngine {
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private looping = false;
  private generated = 0;
  private step = 0;
  private readonly recent: number[] = [];
  readonly maxBatch: number;
  /** A step that failed (the model threw): the sequences of that step end with the error; the engine keeps going. */
  onError: (err: unknown) => void = () => {};

  constructor(
    private readonly model: EngineModel,
    opts: EngineOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 32;
  }

  /** Queue a request; it starts at the next step. */
  submit(request: SequenceRequest): Sequence {
    const seq = new Sequence(request, this.model.config, (s) => this.remove(s));
    this.waiting.push(seq);
    if (!this.looping) {
      // Start on a later tick, so that the caller holds the Sequence before its first token is reported.
      this.looping = true;
      setImmediate(() => void this.loop());
    }
    return seq;
  }

  /** Counters for /metrics. */
  stats(): EngineStats {
    this.forgetOld(Date.now());
    const activeAdapters: Record<string, number> = {};
    for (const s of this.running) activeAdapters[s.adapter] = (activeAdapters[s.adapter] ?? 0) + 1;
    return {
      waiting: this.waiting.length,
      running: this.running.length,
      generatedTokens: this.generated,
      tokensPerSecond: this.recent.length / 5,
      activeAdapters,
    };
  }

  /** Whether a sequence using this adapter is queued or running (an adapter is not unloaded under it). */
  adapterInUse(adapter: string): boolean {
    return [...this.waiting, ...this.running].some((s) => s.adapter === adapter);
  }

  private remove(seq: Sequence): void {
    for (const list of [this.waiting, this.running]) {
      const i = list.indexOf(seq);
      if (i >= 0) list.splice(i, 1);
    }
  }

  private count(n: number): void {
    this.generated += n;
    const now = Date.now();
    for (let i = 0; i < n; i++) this.recent.push(now);
    this.forgetOld(now);
  }

  /** Keep only the last 5 s of token times (the tokens/s window), so that the list stays bounded. */
  private forgetOld(now: number): void {
    let old = 0;
    while (old < this.recent.length && this.recent[old]! < now - 5000) old++;
    if (old > 0) this.recent.splice(0, old);
  }

  private async loop(): Promise<void> {
    try {
      while (this.waiting.length || this.running.length) {
        while (this.waiting.length && this.running.length < this.maxBatch)
          this.guard([this.waiting[0]!], () => this.prefill(this.waiting[0]!));
        if (this.running.length) this.guard([...this.running], () => this.decode());
        // Let the HTTP side read requests, write tokens and notice disconnects between steps.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.looping = false;
    }
  }

  /** Run fn; if it throws, the sequences involved end (with "abort") and the error is reported, the engine goes on. */
  private guard(seqs: Sequence[], fn: () => void): void {
    try {
      fn();
    } catch (err) {
      for (const s of seqs) if (s.finishReason === null) s.finish("abort");
      this.onError(err);
    }
  }

  /** Run a new sequence's prompt alone, pick its first token, and move it into the decode batch. */
  private prefill(seq: Sequence): void {
    this.remove(seq);
    const prompt = seq.request.promptIds;
    const { logits, cache } = noGrad(() =>
      tidy(() => {
        const out = this.model.forward(
          { inputIds: tensor(Int32Array.from(prompt), [1, prompt.length], "int32"), useCache: true },
          [seq.adapter],
        );
        return {
          logits: Float64Array.from(select(out.logits, 1, prompt.length - 1).dataSync()),
          cache: out.pastKeyValues!,
        };
      }),
    );
    seq.cache = cache;
    if (seq.finishReason !== null) return disposeCache(cache);
    this.running.push(seq);
    seq.accept(logits, this.step);
    this.count(1);
  }

  /** One decode step of every running sequence. */
  private decode(): void {
    this.step++;
    const batch = [...this.running];
    const longest = Math.max(...batch.map((s) => s.cachedLength));
    const { logits, caches } = noGrad(() =>
      tidy(() => {
        const past = batch.length === 1 ? batch[0]!.cache! : padCaches(batch, longest);
        const mask = batch.flatMap((s) => [
          ...new Array<number>(longest - s.cachedLength).fill(0),
          ...new Array<number>(s.cachedLength + 1).fill(1),
        ]);
        const out = this.model.forward(
          {
            inputIds: tensor(
              Int32Array.from(batch.map((s) => s.tokens[s.tokens.length - 1]!)),
              [batch.length, 1],
              "int32",
            ),
            attentionMask: tensor(Int32Array.from(mask), [batch.length, longest + 1], "int32"),
            positionIds: tensor(Int32Array.from(batch.map((s) => s.cachedLength)), [batch.length, 1], "int32"),
            pastKeyValues: past,
            useCache: true,
          },
          batch.map((s) => s.adapter),
        );
        const next = out.pastKeyValues!;
        const caches =
          batch.length === 1
            ? [next]
            : batch.map((s, r) =>
                next.map((layer) => ({
                  key: contiguous(
                    narrow(narrow(layer.key, 0, r, 1), 2, longest - s.cachedLength, s.cachedLength + 1),
                    true,
                  ),
                  value: contiguous(
                    narrow(narrow(layer.value, 0, r, 1), 2, longest - s.cachedLength, s.cachedLength + 1),
                    true,
                  ),
                })),
              );
        return { logits: out.logits.dataSync().slice(), caches };
      }),
    );
    const vocab = logits.length / batch.length;
    batch.forEach((s, r) => {
      disposeCache(s.cache); // the step's cache is new tensors (the past is concatenated with the new position)
      s.cache = caches[r]!;
      if (s.finishReason !== null)
        disposeCache(s.cache); // cancelled during the step
      else s.accept(Float64Array.from(logits.subarray(r * vocab, (r + 1) * vocab)), this.step);
    });
    this.count(batch.length);
  }
}

/** The running sequences' caches as one batch, each left-padded with zeros to `longest` positions. */
function padCaches(batch: Sequence[], longest: number): PastKeyValues {
  return batch[0]!.cache!.map((_, l) => {
    const side = (name: "key" | "value") =>
      cat(
        batch.map((s) => {
          const t = s.cache![l]![name];
          const pad = longest - s.cachedLength;
          if (pad === 0) return t;
          const [, heads, , dim] = t.shape as [number, number, number, number];
          return cat([zeros([1, heads, pad, dim], t.dtype), t], 2);
        }),
        0,
      );
    return { key: side("key"), value: side("value") };
  });
}
