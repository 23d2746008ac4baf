/**
 * generate(): autoregressive decoding with a KV cache for decoder-only and encoder-decoder models — greedy or
 * sampled (temperature, top-k, top-p), repetition penalty, eos stopping, batches with left padding — following
 * transformers' GenerationMixin (positions from the attention mask, finished rows continued with pad ids).
 */
import { Generator, Tensor, noGrad, ones, select, tensor, tidy } from "../../tensor/index.js";
import { eosIds, type PretrainedConfig } from "../config.js";
import type { ModelOutput, PastKeyValues, Seq2SeqInputs } from "../outputs.js";
import { CheckpointError } from "../../errors.js";
import { applyRepetitionPenalty, applyTemperature, applyTopK, applyTopP, argmax, sampleIndex, softmax } from "./logits.js";

/** Options of generate (transformers' names in camelCase). */
export interface GenerateOptions {
  /** Prompt ids [batch, length] (int32); rows shorter than the longest are left-padded. */
  inputIds: Tensor;
  /** 1 for prompt tokens, 0 for padding; all ones when absent. */
  attentionMask?: Tensor;
  /** Number of tokens to add (default 20). */
  maxNewTokens?: number;
  /** Sample instead of taking the most likely token. */
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  /** Stop a row when it emits one of these (default: the config's eos). */
  eosTokenId?: number | number[];
  /** Id written after a row has finished (default: the config's pad, else eos). */
  padTokenId?: number;
  /** Seed of the sampling generator. */
  seed?: number;
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

interface Stepper {
  /** Logits [batch, vocab] of the next token, given the newest tokens [batch, n] (the whole prompt at first). */
  next(tokens: Tensor): Tensor;
  /** The cache after the last step (returned from each step's memory scope so that it outlives it). */
  cache(): PastKeyValues | undefined;
}

/** The error for NaN logits: decoding them would print garbage (argmax of NaN is token 0) and look like success. */
function nanLogits(step: number, row: number): CheckpointError {
  return new CheckpointError(
    `generate: the model's logits are NaN at step ${step + 1} (batch row ${row}), so no token can be chosen`,
    "likely causes: NaN or infinite weights in the model or adapter (e.g. saved by a diverged training run: retrain with a lower learning_rate), " +
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
  };
}

/** Encoder-decoder stepping: encode once, then feed decoder tokens with the decoder cache. */
function encoderDecoderStepper(model: Generative, inputIds: Tensor, attentionMask: Tensor, taskIds?: Tensor): Stepper {
  const encoderOutputs = model.encode!({ inputIds, attentionMask, ...(taskIds ? { taskIds } : {}) });
  let past: PastKeyValues | undefined;
  return {
    next(tokens) {
      const out = model.forward({
        attentionMask, encoderOutputs, decoderInputIds: tokens, ...(past ? { pastKeyValues: past } : {}), ...(taskIds ? { taskIds } : {}), useCache: true,
      });
      replaceCache(past, out.pastKeyValues);
      past = out.pastKeyValues;
      return select(out.logits, 1, out.logits.shape[1]! - 1);
    },
    cache: () => past,
  };
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
      if (t && !(next.some((l) => (l as unknown as Record<string, Tensor>)[name] === t))) t.dispose();
    }
  }
}

/** Generate continuations; returns [batch, length + new] for decoder-only models, decoder ids for seq2seq ones. */
export function generate(model: Generative, opts: GenerateOptions): Tensor {
  const maxNew = opts.maxNewTokens ?? 20;
  const [batch, length] = opts.inputIds.shape as [number, number];
  const eos = opts.eosTokenId === undefined ? eosIds(model.config) : [opts.eosTokenId].flat();
  const pad = opts.padTokenId ?? model.config.pad_token_id ?? eos[0];
  if (pad === undefined || pad === null) throw new Error("generate: no padTokenId given and the config has neither pad_token_id nor eos_token_id");
  const maskRows = opts.attentionMask ? intRows(opts.attentionMask) : Array.from({ length: batch }, () => new Array<number>(length).fill(1));
  const gen = new Generator(opts.seed ?? 0);
  const wasTraining = model.training;
  model.eval();
  try {
    // One memory scope for the whole generation: the encoder output, the cache and the fed tokens are freed when it
    // ends; only the returned sequences survive. Tensors passed in (inputs, prefixes, parameters) are not owned here.
    return noGrad(() => tidy(() => {
      let sequences: number[][];
      let stepper: Stepper;
      let feed: Tensor;
      if (model.isEncoderDecoder) {
        const start = opts.decoderStartTokenId ?? model.config.decoder_start_token_id ?? pad;
        sequences = Array.from({ length: batch }, () => [start]);
        const mask = opts.attentionMask ?? ones([batch, length], "int32");
        stepper = encoderDecoderStepper(model, opts.inputIds, mask, opts.taskIds);
        feed = tensor(Int32Array.from(sequences.flat()), [batch, 1]);
      } else {
        sequences = intRows(opts.inputIds);
        stepper = decoderOnlyStepper(model, maskRows, opts.taskIds);
        feed = opts.inputIds;
      }
      const finished = new Array<boolean>(batch).fill(false);
      for (let step = 0; step < maxNew && !finished.every(Boolean); step++) {
        const { logits } = tidy(() => ({ logits: stepper.next(feed).dataSync(), cache: stepper.cache() }));
        const vocab = logits.length / batch;
        const chosen = sequences.map((seq, r) => {
          if (finished[r]) return pad;
          const scores = Float64Array.from(logits.subarray(r * vocab, (r + 1) * vocab));
          if (scores.some(Number.isNaN)) throw nanLogits(step, r);
          applyRepetitionPenalty(scores, seq, opts.repetitionPenalty ?? 1);
          if (!opts.doSample) return argmax(scores);
          applyTemperature(scores, opts.temperature ?? 1);
          applyTopK(scores, opts.topK ?? 50);
          applyTopP(scores, opts.topP ?? 1);
          return sampleIndex(softmax(scores), tidy(() => gen.uniform([1]).dataSync()[0]!));
        });
        chosen.forEach((tok, r) => {
          sequences[r]!.push(tok);
          if (eos.includes(tok)) finished[r] = true;
          maskRows[r]!.push(1);
        });
        if (feed !== opts.inputIds) feed.dispose();
        feed = tensor(Int32Array.from(chosen), [batch, 1]);
      }
      return tensor(Int32Array.from(sequences.flat()), [batch, sequences[0]!.length]);
    }));
  } finally {
    if (wasTraining) model.train();
  }
}
