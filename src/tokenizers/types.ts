/** Option and result types of the tokenizer API: camelCase versions of transformers' keyword arguments. */
import type { Tensor } from "../tensor/index.js";

/** `padding` as in transformers: true/"longest" pads to the longest sequence, "max_length" to `maxLength`. */
export type PaddingStrategy = boolean | "longest" | "max_length" | "do_not_pad";

/** `truncation` as in transformers (true = "longest_first"). */
export type TruncationStrategy = boolean | "longest_first" | "only_first" | "only_second" | "do_not_truncate";

/** Which end of a sequence padding or truncation applies to. */
export type Side = "left" | "right";

/** Options of `encode` (one text, or one pair of texts). */
export interface EncodeOptions {
  /** Add the post-processor's special tokens ([CLS]/[SEP], </s>, …); default true. */
  addSpecialTokens?: boolean;
  /** Second text of a pair (BERT's sentence B). */
  textPair?: string;
  /** Truncation strategy; when left out and `maxLength` is given without padding, "longest_first" (as transformers). */
  truncation?: TruncationStrategy;
  /** Length limit for truncation and for padding="max_length"; default `modelMaxLength`. */
  maxLength?: number;
  /** Overrides `tokenizer.truncationSide` for this call. */
  truncationSide?: Side;
}

/** Options of `encodeBatch` / `call` on a list of texts. */
export interface BatchEncodeOptions extends Omit<EncodeOptions, "textPair"> {
  /** Padding strategy; default false (no padding). */
  padding?: PaddingStrategy;
  /** Round the padded length up to a multiple of this. */
  padToMultipleOf?: number;
  /** Overrides `tokenizer.paddingSide` for this call. */
  paddingSide?: Side;
  /** Return `attentionMask` (default true). */
  returnAttentionMask?: boolean;
  /** Return `tokenTypeIds` (default: true when the tokenizer's model takes them, as BERT does). */
  returnTokenTypeIds?: boolean;
}

/** Options of `pad` (padding already-encoded sequences). */
export interface PadOptions {
  padding?: PaddingStrategy;
  maxLength?: number;
  padToMultipleOf?: number;
  paddingSide?: Side;
}

/** Encoded batch: plain number arrays (`returnTensors: true` gives TensorEncoding instead). */
export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
  tokenTypeIds?: number[][];
}

/** One encoded sequence, as returned by `call(text)`. */
export interface Encoding {
  inputIds: number[];
  attentionMask: number[];
  tokenTypeIds?: number[];
}

/** Options of `decode` / `batchDecode`. */
export interface DecodeOptions {
  /** Drop special tokens (added tokens marked special, e.g. <|im_end|>, [CLS], </s>, <pad>). */
  skipSpecialTokens?: boolean;
  /** Remove spaces before punctuation (" ." → "."); default from tokenizer_config.json (transformers 4.44: true). */
  cleanUpTokenizationSpaces?: boolean;
}

/** A chat message as the templates expect it (extra fields such as tool_calls pass through). */
export interface ChatMessage {
  role: string;
  content?: unknown;
  [key: string]: unknown;
}

/** Options of `applyChatTemplate`. */
export interface ChatTemplateOptions {
  /** Append the prompt that starts an assistant turn (`add_generation_prompt`). */
  addGenerationPrompt?: boolean;
  /** Return token ids (default, as transformers) instead of the rendered string. */
  tokenize?: boolean;
  /** A template string, or the name of one of the tokenizer's named templates. */
  chatTemplate?: string;
  /** Tool JSON schemas, passed to the template as `tools`. */
  tools?: Record<string, unknown>[];
  /** Documents for RAG templates, passed as `documents`. */
  documents?: Record<string, unknown>[];
  /** End the output inside the final message so that generation continues it (no end-of-turn token). */
  continueFinalMessage?: boolean;
  /** Extra variables for the template (they override the special-token variables). */
  templateKwargs?: Record<string, unknown>;
  /** Truncation when tokenizing (as in `encode`). */
  truncation?: TruncationStrategy;
  maxLength?: number;
}

/** An encoded batch as int32 tensors `[batch, length]`, ready for `model.forward` / `generate` (transformers' return_tensors). */
export interface TensorEncoding {
  inputIds: Tensor;
  attentionMask: Tensor;
  tokenTypeIds?: Tensor;
}
