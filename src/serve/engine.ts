/**
 * The decode engine behind `peft serve`: continuous batching over one shared KV cache (BatchCache). Requests that
 * arrive together are prefilled together (one forward pass, prompts left-padded), then join the running decode
 * batch at the next step; a finished or cancelled one leaves it at once and its rows of the cache are freed. Each
 * decode step runs every running sequence in one forward pass, with its own LoRA adapter per row (peft's
 * adapter_names), the cache extended in place and each row's padding masked out.
 */
import { backend } from "../backend/index.js";
import { Generator, type Tensor, narrow, noGrad, reshape, tensor, tidy } from "../tensor/index.js";
import type { ModelInputs, ModelOutput } from "../models/outputs.js";
import { eosIds, type PretrainedConfig } from "../models/config.js";
import {
  StopStrings,
  chooseTokens,
  uniformDraw,
  type FinishReason,
  type RowChoice,
  type TokenChoice,
  type SamplingOptions,
  type TokenDecoder,
} from "../generation/index.js";
import { BASE_ROW } from "../peft/index.js";
import { BatchCache } from "./batch-cache.js";

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
  /** The prompt and the tokens so far (for the repetition penalty). */
  private readonly history: number[];
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
    this.history = [...request.promptIds];
    this.generator = new Generator(request.seed ?? 0);
    this.stopIds = [...(request.ignoreEos ? [] : eosIds(config)), ...(request.stopTokenIds ?? [])];
    this.stopStrings = request.stopStrings?.length ? new StopStrings(request.stopStrings, request.tokenizer, 1) : null;
    this.done = new Promise((resolve) => (this.resolve = resolve));
  }

  /** Stop now: its rows of the cache are freed at once and done resolves with finishReason "abort". */
  cancel(): void {
    if (this.finishReason === null) this.finish("abort");
  }

  /** How this sequence's next token is picked (null once it has finished or was cancelled). */
  choice(): RowChoice | null {
    if (this.finishReason !== null) return null;
    return { opts: this.request, previous: this.history, uniform: () => uniformDraw(this.generator) };
  }

  /** Take the chosen next token; finishes the sequence when it should stop. */
  accept(token: number, logprob: number): void {
    this.tokens.push(token);
    this.history.push(token);
    this.logprobs.push(logprob);
    this.request.onToken?.(token, logprob);
    if (this.finishReason !== null) return; // cancelled from onToken
    if (this.stopIds.includes(token) || this.stopStrings?.hit(0, this.tokens)) this.finish("stop");
    else if (this.tokens.length >= this.request.maxNewTokens) this.finish("length");
  }

  finish(reason: SequenceFinish): void {
    this.finishReason = reason;
    this.release(this);
    this.resolve({ tokens: this.tokens, logprobs: this.logprobs, finishReason: reason });
  }
}

/** Options of the engine. */
export interface EngineOptions {
  /** Most sequences in the decode batch; more requests wait (default 32). */
  maxBatch?: number;
  /** Most prompt positions (rows × the longest prompt) prefilled in one forward pass (default 2048). */
  maxPrefillTokens?: number;
  /**
   * The bound the engine sets on the backend's buffer pool (setPoolLimit; default 16 MiB). The pool keeps freed
   * buffers by exact size, and requests of varied lengths free ever new sizes: unbounded, a server's memory grows
   * with every new size. (Emptying it whenever the engine fell idle made RSS creep instead: 99 → 136 MiB over
   * 10,000 short requests, against 103 → 108 MiB with the bound alone.)
   */
  poolLimitBytes?: number;
  /**
   * While sequences are decoding, waiting requests are prefilled once there are at least this many times as many
   * of them as running sequences (text-generation-inference's waiting_served_ratio, default 1.2, compared without
   * rounding down), once they would fill the batch, or once maxWaitingTokens decode steps have passed since the
   * last prefill. With nothing decoding they start at once. On a CPU every forward pass streams all the weights,
   * so a prefill of one prompt costs nearly as much as one of eight, and each stalls the whole decode batch: a few
   * arrivals waiting for more share one pass, and a batch split into out-of-step groups merges again. 0: every
   * arrival joins at the next step.
   */
  waitingServedRatio?: number;
  /**
   * The most decode steps between prefills while requests wait (default 4; text-generation-inference's is 20, but
   * a decode step on a CPU takes ~10× as long as on a GPU, and this is the latency an arrival may pay).
   */
  maxWaitingTokens?: number;
  /**
   * After the decode batch has drained, until as many requests have arrived as it held, the waiting ones wait up to
   * this long (ms) from the drain before the prefill (default 30; 0: at once). Clients that resubmit as their
   * requests end (agents, batch jobs) come back over a few milliseconds; prefilled as they come, they would split
   * into groups that stay out of step. (Triton's max_queue_delay, applied only after a batch has drained.)
   */
  maxQueueDelayMs?: number;
  /**
   * While every running sequence will reach its max_tokens within this many decode steps, waiting requests are not
   * prefilled: they start when the batch drains, with the requests its clients send next (default 8; 0: off).
   * Requests of one length that started a few steps apart (a client late for the batch, an arrival that waited
   * maxWaitingTokens) would otherwise stay out of step for good, each group's prefill stalling the other's decode
   * (8 closed-loop GPT-2 clients over HTTP: prefills of 8 8 8 8 4 4 1 5 2 without it; with it, 8 after one cycle).
   */
  drainWaitSteps?: number;
}

/** Continuous batching over an EngineModel. */
export class DecodeEngine {
  private readonly waiting: Sequence[] = [];
  /** The decode batch, in the order of the cache's rows. */
  private readonly running: Sequence[] = [];
  private readonly cache = new BatchCache();
  private looping = false;
  /** Frees the cache's buffers once the engine has been idle for maxQueueDelayMs (see loop). */
  private idleRelease: NodeJS.Timeout | null = null;
  private generated = 0;
  private step = 0;
  private readonly recent: number[] = [];
  readonly maxBatch: number;
  readonly maxPrefillTokens: number;
  readonly poolLimitBytes: number;
  readonly waitingServedRatio: number;
  readonly maxWaitingTokens: number;
  readonly maxQueueDelayMs: number;
  readonly drainWaitSteps: number;
  /** The decode step count at the last prefill. */
  private lastPrefillStep = 0;
  /** Rows of the last decode step. */
  private lastBatch = 0;
  /** When the decode batch last drained (performance.now()), its rows, and the requests submitted since. */
  private drain = { at: 0, rows: 0, arrivals: 0 };
  /** A step that failed (the model threw): the sequences of that step end with the error; the engine keeps going. */
  onError: (err: unknown) => void = () => {};

  constructor(
    private readonly model: EngineModel,
    opts: EngineOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 32;
    this.maxPrefillTokens = opts.maxPrefillTokens ?? 2048;
    this.poolLimitBytes = opts.poolLimitBytes ?? 16 * 2 ** 20;
    this.waitingServedRatio = nonNegative("waitingServedRatio", opts.waitingServedRatio ?? 1.2);
    this.maxWaitingTokens = nonNegative("maxWaitingTokens", opts.maxWaitingTokens ?? 4);
    this.maxQueueDelayMs = nonNegative("maxQueueDelayMs", opts.maxQueueDelayMs ?? 30);
    this.drainWaitSteps = nonNegative("drainWaitSteps", opts.drainWaitSteps ?? 8);
    backend().setPoolLimit(this.poolLimitBytes);
  }

  /** Queue a request; it starts at the next step. */
  submit(request: SequenceRequest): Sequence {
    const seq = new Sequence(request, this.model.config, (s) => this.remove(s));
    this.waiting.push(seq);
    this.drain.arrivals++;
    if (!this.looping) {
      // Start on a later tick, so that the caller holds the Sequence before its first token is reported.
      this.looping = true;
      if (this.idleRelease) clearTimeout(this.idleRelease);
      this.idleRelease = null;
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
    const waiting = this.waiting.indexOf(seq);
    if (waiting >= 0) this.waiting.splice(waiting, 1);
    const row = this.running.indexOf(seq);
    if (row < 0) return;
    // The last row takes its place, in the list as in the cache.
    const last = this.running.pop()!;
    if (last !== seq) this.running[row] = last;
    this.cache.remove(row);
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
        const hold = this.holdForArrivals();
        if (hold > 0) {
          await new Promise<void>((resolve) => setTimeout(resolve, Math.min(hold, 1)));
          continue;
        }
        if (this.prefillDue()) {
          const joining = this.joining();
          this.lastPrefillStep = this.step;
          this.guard(joining, () => this.prefill(joining));
          // The first tokens go out now, not a decode step later (a client's time to first token).
          await nextTurn();
        }
        if (this.running.length) {
          this.lastBatch = this.running.length;
          this.guard([...this.running], () => this.decode());
          if (!this.running.length) this.drain = { at: performance.now(), rows: this.lastBatch, arrivals: 0 };
        }
        // Let the HTTP side read requests, write tokens and notice disconnects between steps.
        await nextTurn();
      }
    } finally {
      this.looping = false;
      // The next batch reuses the cache's buffers; the clients of this one come back within maxQueueDelayMs.
      this.idleRelease = setTimeout(() => {
        this.idleRelease = null;
        this.cache.clear();
      }, this.maxQueueDelayMs);
      this.idleRelease.unref();
    }
  }

  /** With the decode batch empty, how much longer (ms) the waiting requests hold for the rest of the last batch. */
  private holdForArrivals(): number {
    if (this.running.length || !this.waiting.length || this.drain.arrivals >= this.drain.rows) return 0;
    return this.maxQueueDelayMs - (performance.now() - this.drain.at);
  }

  /**
   * Whether waiting requests are prefilled before the next decode step (see EngineOptions.waitingServedRatio and
   * drainWaitSteps).
   */
  private prefillDue(): boolean {
    if (!this.waiting.length || this.running.length >= this.maxBatch) return false;
    if (this.running.length === 0) return true;
    if (this.running.every((s) => s.request.maxNewTokens - s.tokens.length <= this.drainWaitSteps)) return false;
    return (
      this.waiting.length >= this.maxBatch - this.running.length ||
      this.waiting.length >= this.waitingServedRatio * this.running.length ||
      this.step - this.lastPrefillStep >= this.maxWaitingTokens
    );
  }

  /** The waiting requests prefilled next: in arrival order, as many as the batch and the prefill budget take. */
  private joining(): Sequence[] {
    const room = this.maxBatch - this.running.length;
    const picked: Sequence[] = [];
    let longest = 0;
    for (const seq of this.waiting) {
      const width = Math.max(longest, seq.request.promptIds.length);
      if (picked.length === room || (picked.length > 0 && width * (picked.length + 1) > this.maxPrefillTokens)) break;
      picked.push(seq);
      longest = width;
    }
    return picked;
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

  /**
   * Run new sequences' prompts in one forward pass (left-padded to the longest, padding masked, positions counted
   * per row), pick their first tokens, and move them into the decode batch.
   */
  private prefill(joining: Sequence[]): void {
    for (const seq of joining) this.waiting.splice(this.waiting.indexOf(seq), 1);
    const lengths = joining.map((s) => s.request.promptIds.length);
    const width = Math.max(...lengths);
    const ids = new Int32Array(joining.length * width),
      mask = new Int32Array(joining.length * width),
      positions = new Int32Array(joining.length * width);
    joining.forEach((seq, r) => {
      const pad = width - lengths[r]!;
      ids.set(seq.request.promptIds, r * width + pad);
      mask.fill(1, r * width + pad, (r + 1) * width);
      for (let j = 0; j < lengths[r]!; j++) positions[r * width + pad + j] = j;
    });
    const padded = lengths.some((len) => len < width);
    const choices = noGrad(() =>
      tidy(() => {
        const shape = [joining.length, width];
        const out = this.model.forward(
          {
            inputIds: tensor(ids, shape, "int32"),
            ...(padded
              ? { attentionMask: tensor(mask, shape, "int32"), positionIds: tensor(positions, shape, "int32") }
              : {}),
            useCache: true,
            numLogitsToKeep: 1,
          },
          joining.map((s) => s.adapter),
        );
        // The cache's rows and the running list change together (a failure after this leaves both consistent).
        this.cache.join(out.pastKeyValues!, lengths);
        this.running.push(...joining);
        return chooseTokens(
          lastLogits(out),
          joining.map((seq) => seq.choice()),
          this.step,
        );
      }),
    );
    this.pick(joining, choices);
  }

  /** One decode step of every running sequence. */
  private decode(): void {
    this.step++;
    const batch = [...this.running];
    const cache = this.cache;
    const choices = noGrad(() =>
      tidy(() => {
        const rows = batch.length;
        const out = this.model.forward(
          {
            inputIds: tensor(
              Int32Array.from(batch, (s) => s.tokens[s.tokens.length - 1]!),
              [rows, 1],
              "int32",
            ),
            ...(cache.unpadded ? {} : { attentionMask: tensor(cache.stepMask(), [rows, cache.length + 1], "int32") }),
            positionIds: tensor(Int32Array.from(cache.lengths), [rows, 1], "int32"),
            pastKeyValues: cache.past(),
            useCache: true,
          },
          batch.map((s) => s.adapter),
        );
        cache.advance(out.pastKeyValues!);
        return chooseTokens(
          lastLogits(out),
          batch.map((seq) => seq.choice()),
          this.step,
        );
      }),
    );
    this.pick(batch, choices);
  }

  /** Give each sequence its chosen token (sequences cancelled meanwhile are skipped). */
  private pick(batch: readonly Sequence[], choices: readonly TokenChoice[]): void {
    for (const [r, s] of batch.entries()) if (s.finishReason === null) s.accept(choices[r]!.token, choices[r]!.logprob);
    this.count(batch.length);
  }
}

/** Resolves on the event loop's next turn (after pending I/O callbacks). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** An engine option's value, checked to be a number ≥ 0. */
function nonNegative(name: string, value: number): number {
  if (!(value >= 0)) throw new RangeError(`DecodeEngine: ${name} must be a number ≥ 0, got ${value}`);
  return value;
}

/** The last position's logits [rows, vocab] (the forward may have kept every position's). */
function lastLogits(out: ModelOutput): Tensor {
  const [rows, length, vocab] = out.logits.shape as [number, number, number];
  return reshape(narrow(out.logits, 1, length - 1, 1), [rows, vocab]);
}
