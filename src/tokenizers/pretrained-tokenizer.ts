/** A Hugging Face tokenizer with transformers' PreTrainedTokenizerFast behaviour, built on @huggingface/tokenizers. */
import { createBackend, modelVocabSize, type BackendTokenizer } from "./backend.js";
import {
  cutAfterFinalMessage,
  parseChatTemplate,
  renderChatTemplate,
  selectChatTemplate,
  type ChatTemplates,
} from "./chat-template.js";
import { modelInputNames, resolveConfig, type TokenizerOverrides } from "./config.js";
import { checkTokenizerJson, type TokenizerFiles } from "./files.js";
import { CheckpointError } from "../errors.js";
import { padSequences, type Padded } from "./padding.js";
import { numSpecialTokensToAdd, postProcessIds, type WithTypes } from "./post-process.js";
import { SPECIAL_TOKEN_KEYS, type SpecialTokenKey } from "./special-tokens.js";
import { resolveStrategies, VERY_LARGE_INTEGER, type Strategies } from "./strategies.js";
import { truncatePair } from "./truncation.js";
import type {
  BatchEncodeOptions,
  BatchEncoding,
  ChatMessage,
  ChatTemplateOptions,
  DecodeOptions,
  EncodeOptions,
  Encoding,
  PadOptions,
  Side,
  TensorEncoding,
} from "./types.js";
import { tensor } from "../tensor/index.js";

/** Checks a padding/truncation side. */
function checkSide(value: unknown, what: string): Side {
  if (value !== "left" && value !== "right")
    throw new Error(`${what} should be "left" or "right", got ${JSON.stringify(value)}`);
  return value;
}

/** Options of calling the tokenizer as a function with tensors out (transformers' `return_tensors="pt"`). */
export type TensorCallOptions = BatchEncodeOptions & { returnTensors: true };

/**
 * Calling the tokenizer as a function, as in transformers: `tokenizer(texts, { padding: true, returnTensors: true })`
 * gives `{ inputIds, attentionMask }` tensors for `generate`/`forward`; without returnTensors, plain arrays (see `call`).
 */
export interface PreTrainedTokenizer {
  (texts: string | (string | [string, string])[], options: TensorCallOptions): TensorEncoding;
  (text: string, options?: BatchEncodeOptions & { textPair?: string }): Encoding;
  (texts: (string | [string, string])[], options?: BatchEncodeOptions): BatchEncoding;
}

/** A tokenizer loaded from tokenizer.json (+ tokenizer_config.json, special_tokens_map.json); ids are plain number arrays. */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above declares the call signatures the constructor's callable provides
export class PreTrainedTokenizer {
  /** The @huggingface/tokenizers Tokenizer doing the work (transformers' `backend_tokenizer`). */
  readonly backendTokenizer: BackendTokenizer;
  /** tokenizer_config.json with the overrides applied (HF snake_case fields). */
  readonly initKwargs: Readonly<Record<string, unknown>>;
  /** The folder the tokenizer came from. */
  readonly nameOrPath: string;
  /** Longest input the model takes (1e30, transformers' VERY_LARGE_INTEGER, when the config sets none). */
  modelMaxLength: number;
  /** The chat template(s): one string or named ones; null when the folder has none. */
  chatTemplate: ChatTemplates | null;
  /** Default of decode's cleanUpTokenizationSpaces (tokenizer_config.json; transformers 4.44 default true). */
  cleanUpTokenizationSpaces: boolean;
  /** Inputs the model takes, e.g. ["input_ids", "token_type_ids", "attention_mask"]. */
  modelInputNames: string[];
  /** Extra special tokens (additional_special_tokens). */
  additionalSpecialTokens: string[];
  private readonly special: Record<SpecialTokenKey, string | null>;
  private readonly baseVocabSize: number;
  private fullVocabSize: number | null = null;
  private specialAddedIds: Set<number> | null = null;
  private _paddingSide: Side;
  private _truncationSide: Side;

  /** Builds the tokenizer from parsed files (see AutoTokenizer.fromPretrained for loading a folder). */
  constructor(files: TokenizerFiles, overrides: TokenizerOverrides = {}) {
    checkTokenizerJson(files.tokenizerJson, files.nameOrPath ?? "the given tokenizer files");
    const { config, specials } = resolveConfig(files, overrides);
    try {
      this.backendTokenizer = createBackend(files.tokenizerJson, config, specials);
    } catch (e) {
      throw new CheckpointError(
        `Cannot build the tokenizer of ${files.nameOrPath ?? "the given files"} from ` +
          `tokenizer.json: ${(e as Error).message}`,
        "the file is corrupt or written by a tokenizers version with features this one lacks: " +
          "re-save it with tokenizer.save_pretrained(dir)",
      );
    }
    this.initKwargs = config;
    this.nameOrPath = files.nameOrPath ?? String(config.name_or_path ?? "");
    this.special = { ...specials.named };
    this.additionalSpecialTokens = specials.additional;
    this._paddingSide = checkSide(config.padding_side ?? "right", "padding_side");
    this._truncationSide = checkSide(config.truncation_side ?? "right", "truncation_side");
    this.modelMaxLength = typeof config.model_max_length === "number" ? config.model_max_length : VERY_LARGE_INTEGER;
    this.chatTemplate = parseChatTemplate(config.chat_template);
    this.cleanUpTokenizationSpaces =
      typeof config.clean_up_tokenization_spaces === "boolean" ? config.clean_up_tokenization_spaces : true;
    this.modelInputNames = modelInputNames(config);
    this.baseVocabSize = modelVocabSize(files.tokenizerJson.model as Record<string, unknown>);
    // A class instance cannot be called; return a function that is one (same prototype, same fields), so that
    // `tokenizer(texts)` works as in transformers. The function's own `length`/`name` would hide ours: drop them.
    const callable = ((
      texts: string | (string | [string, string])[],
      options?: BatchEncodeOptions & { returnTensors?: boolean },
    ) =>
      options?.returnTensors
        ? callable.tensors(texts, options)
        : callable.call(texts as string, options)) as PreTrainedTokenizer;
    Object.setPrototypeOf(callable, new.target.prototype);
    delete (callable as { length?: number }).length;
    delete (callable as { name?: string }).name;
    // biome-ignore lint/correctness/noConstructorReturn: the callable instance is the point (transformers' call shape)
    return Object.assign(callable, this);
  }

  // ---- special tokens ----

  /** Side padding goes to ("right" by default; "left" for batched generation). */
  get paddingSide(): Side {
    return this._paddingSide;
  }
  set paddingSide(side: Side) {
    this._paddingSide = checkSide(side, "paddingSide");
  }
  /** Side truncation cuts from ("right" by default). */
  get truncationSide(): Side {
    return this._truncationSide;
  }
  set truncationSide(side: Side) {
    this._truncationSide = checkSide(side, "truncationSide");
  }

  /** Beginning-of-sequence token. */
  get bosToken(): string | null {
    return this.special.bos_token;
  }
  set bosToken(t: string | null) {
    this.special.bos_token = t;
  }
  /** End-of-sequence token. */
  get eosToken(): string | null {
    return this.special.eos_token;
  }
  set eosToken(t: string | null) {
    this.special.eos_token = t;
  }
  /** Unknown-token token. */
  get unkToken(): string | null {
    return this.special.unk_token;
  }
  set unkToken(t: string | null) {
    this.special.unk_token = t;
  }
  /** Separator token (BERT's [SEP]). */
  get sepToken(): string | null {
    return this.special.sep_token;
  }
  set sepToken(t: string | null) {
    this.special.sep_token = t;
  }
  /** Padding token; often set with `tokenizer.padToken = tokenizer.eosToken`. */
  get padToken(): string | null {
    return this.special.pad_token;
  }
  set padToken(t: string | null) {
    this.special.pad_token = t;
  }
  /** Classifier token (BERT's [CLS]). */
  get clsToken(): string | null {
    return this.special.cls_token;
  }
  set clsToken(t: string | null) {
    this.special.cls_token = t;
  }
  /** Mask token (BERT's [MASK]). */
  get maskToken(): string | null {
    return this.special.mask_token;
  }
  set maskToken(t: string | null) {
    this.special.mask_token = t;
  }

  /** Id of the beginning-of-sequence token. */
  get bosTokenId(): number | null {
    return this.idOfSpecial("bos_token");
  }
  /** Id of the end-of-sequence token. */
  get eosTokenId(): number | null {
    return this.idOfSpecial("eos_token");
  }
  /** Id of the unknown token. */
  get unkTokenId(): number | null {
    return this.idOfSpecial("unk_token");
  }
  /** Id of the separator token. */
  get sepTokenId(): number | null {
    return this.idOfSpecial("sep_token");
  }
  /** Id of the padding token. */
  get padTokenId(): number | null {
    return this.idOfSpecial("pad_token");
  }
  set padTokenId(id: number | null) {
    this.special.pad_token = id === null ? null : this.convertIdsToTokens(id);
  }
  /** Id of the classifier token. */
  get clsTokenId(): number | null {
    return this.idOfSpecial("cls_token");
  }
  /** Id of the mask token. */
  get maskTokenId(): number | null {
    return this.idOfSpecial("mask_token");
  }

  /** Named special tokens that are set, plus additional_special_tokens (the variables chat templates get). */
  get specialTokensMap(): Record<string, string | string[]> {
    const map: Record<string, string | string[]> = {};
    for (const key of SPECIAL_TOKEN_KEYS) if (this.special[key] !== null) map[key] = this.special[key] as string;
    if (this.additionalSpecialTokens.length > 0) map.additional_special_tokens = [...this.additionalSpecialTokens];
    return map;
  }

  /** All special tokens (named ones, then additional ones), without duplicates. */
  get allSpecialTokens(): string[] {
    const all = [...SPECIAL_TOKEN_KEYS.map((k) => this.special[k]), ...this.additionalSpecialTokens];
    return [...new Set(all.filter((t): t is string => t !== null))];
  }

  /** Ids of allSpecialTokens. */
  get allSpecialIds(): number[] {
    return this.allSpecialTokens.map((t) => this.convertTokensToIds(t)).filter((id): id is number => id !== null);
  }

  private idOfSpecial(key: SpecialTokenKey): number | null {
    const token = this.special[key];
    return token === null ? null : this.convertTokensToIds(token);
  }

  // ---- vocabulary ----

  /** Size of the model vocabulary without added tokens (transformers' `vocab_size`). */
  get vocabSize(): number {
    return this.baseVocabSize;
  }

  /** Size of the vocabulary with added tokens (transformers' `len(tokenizer)`). */
  get length(): number {
    this.fullVocabSize ??= this.getVocab().size;
    return this.fullVocabSize;
  }

  /** Token → id for the whole vocabulary, added tokens included. */
  getVocab(): Map<string, number> {
    const vocab = this.backendTokenizer.get_vocab(true);
    vocab.delete(undefined as unknown as string); // ids the package leaves empty when added tokens skip ahead
    return vocab;
  }

  /** Id of a token (or ids of tokens); unknown tokens give the unk id, or null without one. */
  convertTokensToIds(token: string): number | null;
  convertTokensToIds(tokens: string[]): (number | null)[];
  convertTokensToIds(tokens: string | string[]): number | null | (number | null)[] {
    if (Array.isArray(tokens)) return tokens.map((t) => this.convertTokensToIds(t));
    const id = this.backendTokenizer.token_to_id(tokens);
    if (id !== undefined) return id;
    const unk = this.special.unk_token;
    return unk === null ? null : (this.backendTokenizer.token_to_id(unk) ?? null);
  }

  /** Token of an id (or tokens of ids, optionally without special tokens); null for ids outside the vocabulary. */
  convertIdsToTokens(id: number): string | null;
  convertIdsToTokens(ids: ArrayLike<number>, skipSpecialTokens?: boolean): (string | null)[];
  convertIdsToTokens(ids: number | ArrayLike<number>, skipSpecialTokens = false): string | null | (string | null)[] {
    if (typeof ids === "number") return this.backendTokenizer.id_to_token(ids) ?? null;
    const special = new Set(skipSpecialTokens ? this.allSpecialIds : []);
    return Array.from(ids)
      .filter((id) => !special.has(id))
      .map((id) => this.backendTokenizer.id_to_token(id) ?? null);
  }

  /** Token strings of a text (transformers' tokenize: no special tokens unless asked). */
  tokenize(text: string, options: { addSpecialTokens?: boolean } = {}): string[] {
    return this.backendTokenizer.tokenize(text, { add_special_tokens: options.addSpecialTokens ?? false });
  }

  /** How many special tokens encode adds to one text (pair false) or to a pair. */
  numSpecialTokensToAdd(pair = false): number {
    return numSpecialTokensToAdd(this.backendTokenizer, pair);
  }

  // ---- encoding ----

  /** Ids of a text (with special tokens unless addSpecialTokens is false), optionally paired and truncated. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const strategies = resolveStrategies(options, this.modelMaxLength);
    const side = checkSide(options.truncationSide ?? this._truncationSide, "truncationSide");
    return this.encodeOne(text, options.textPair ?? null, options.addSpecialTokens ?? true, strategies, side).ids;
  }

  /** Like transformers' `tokenizer(text)`: one text gives one Encoding, a list gives a BatchEncoding. */
  call(text: string, options?: BatchEncodeOptions & { textPair?: string }): Encoding;
  call(texts: (string | [string, string])[], options?: BatchEncodeOptions): BatchEncoding;
  call(
    texts: string | (string | [string, string])[],
    options: BatchEncodeOptions & { textPair?: string } = {},
  ): Encoding | BatchEncoding {
    if (typeof texts !== "string") return this.encodeBatch(texts, options);
    const batch = this.encodeBatch([options.textPair === undefined ? texts : [texts, options.textPair]], options);
    const one: Encoding = { inputIds: batch.inputIds[0]!, attentionMask: batch.attentionMask[0]! };
    if (batch.tokenTypeIds) one.tokenTypeIds = batch.tokenTypeIds[0];
    return one;
  }

  /** Encodes texts as int32 tensors [batch, length]; sequences of unequal length need `padding`. */
  tensors(texts: string | (string | [string, string])[], options: BatchEncodeOptions = {}): TensorEncoding {
    const { returnTensors: _, ...rest } = options as TensorCallOptions;
    const batch = this.encodeBatch(typeof texts === "string" ? [texts] : texts, rest);
    const toTensor = (rows: number[][], what: string) => {
      const length = rows[0]?.length ?? 0;
      if (rows.some((r) => r.length !== length)) {
        throw new Error(
          `returnTensors: the ${rows.length} sequences have different lengths; pass padding: true ` +
            `(or "max_length") to make ${what} rectangular`,
        );
      }
      return tensor(Int32Array.from(rows.flat()), [rows.length, length], "int32");
    };
    const out: TensorEncoding = {
      inputIds: toTensor(batch.inputIds, "inputIds"),
      attentionMask: toTensor(batch.attentionMask, "attentionMask"),
    };
    if (batch.tokenTypeIds) out.tokenTypeIds = toTensor(batch.tokenTypeIds, "tokenTypeIds");
    return out;
  }

  /** Encodes texts (or [textA, textB] pairs) with optional truncation and left/right padding, plus attention masks. */
  encodeBatch(
    texts: (string | [string, string])[],
    options: BatchEncodeOptions & { returnAttentionMask: false },
  ): Omit<BatchEncoding, "attentionMask">;
  encodeBatch(texts: (string | [string, string])[], options?: BatchEncodeOptions): BatchEncoding;
  encodeBatch(
    texts: (string | [string, string])[],
    options: BatchEncodeOptions = {},
  ): BatchEncoding | Omit<BatchEncoding, "attentionMask"> {
    if (!Array.isArray(texts)) throw new TypeError("encodeBatch expects an array of texts or of [textA, textB] pairs");
    const strategies = resolveStrategies(options, this.modelMaxLength);
    if (strategies.padding !== "none") this.requirePadToken();
    const side = checkSide(options.truncationSide ?? this._truncationSide, "truncationSide");
    const add = options.addSpecialTokens ?? true;
    const encoded: WithTypes[] = texts.map((t) =>
      Array.isArray(t)
        ? this.encodeOne(t[0], t[1], add, strategies, side)
        : this.encodeOne(t, null, add, strategies, side),
    );
    const ids = encoded.map((e) => e.ids);
    const typeIds =
      (options.returnTokenTypeIds ?? this.modelInputNames.includes("token_type_ids"))
        ? encoded.map((e) => e.typeIds)
        : undefined;
    let out: Padded;
    if (strategies.padding === "none") {
      out = { inputIds: ids, attentionMask: ids.map((s) => s.map(() => 1)) };
      if (typeIds) out.tokenTypeIds = typeIds;
    } else {
      out = padSequences(ids, {
        length: strategies.padding === "max_length" ? strategies.maxLength : null,
        multipleOf: options.padToMultipleOf,
        side: checkSide(options.paddingSide ?? this._paddingSide, "paddingSide"),
        padId: this.padTokenId as number,
        typeIds,
      });
    }
    if (options.returnAttentionMask === false) {
      const { attentionMask: _dropped, ...rest } = out;
      return rest;
    }
    return out;
  }

  /** Pads already-encoded sequences (default: to the longest) and builds their attention masks. */
  pad(inputIds: number[][], options: PadOptions = {}): BatchEncoding {
    const strategies = resolveStrategies(
      { padding: options.padding ?? true, maxLength: options.maxLength, truncation: false },
      this.modelMaxLength,
    );
    if (strategies.padding === "none")
      return { inputIds: inputIds.map((s) => [...s]), attentionMask: inputIds.map((s) => s.map(() => 1)) };
    this.requirePadToken();
    return padSequences(inputIds, {
      length: strategies.padding === "max_length" ? strategies.maxLength : null,
      multipleOf: options.padToMultipleOf,
      side: checkSide(options.paddingSide ?? this._paddingSide, "paddingSide"),
      padId: this.padTokenId as number,
    });
  }

  private requirePadToken(): void {
    if (this.padToken === null || this.padTokenId === null || this.padTokenId < 0) {
      throw new Error(
        "Asking to pad but the tokenizer does not have a padding token. Please select a token to use as `padToken` " +
          "(`tokenizer.padToken = tokenizer.eosToken` e.g., as `tokenizer.pad_token = " +
          "tokenizer.eos_token` in Python) " +
          "or pass `padToken` to AutoTokenizer.fromPretrained.",
      );
    }
  }

  /** Ids of one text or pair: pieces, truncation (room left for special tokens), then the post-processor. */
  private encodeOne(text: string, pair: string | null, add: boolean, strategies: Strategies, side: Side): WithTypes {
    let a = this.pieces(text);
    let b = pair === null ? null : this.pieces(pair);
    if (strategies.truncation !== null && strategies.maxLength !== null) {
      const special = add ? numSpecialTokensToAdd(this.backendTokenizer, b !== null) : 0;
      if (strategies.maxLength < special) {
        throw new Error(
          `maxLength ${strategies.maxLength} is too small: ${special} special tokens are added to each sequence`,
        );
      }
      [a, b] = truncatePair(a, b, strategies.maxLength - special, strategies.truncation, side);
    }
    return postProcessIds(this.backendTokenizer, a, b, add, this.unkTokenId);
  }

  /** Ids of a text without special tokens (ids the vocabulary lacks, with no unk token, are dropped as tokenizers does). */
  private pieces(text: string): number[] {
    if (typeof text !== "string")
      throw new TypeError(`Text to encode must be a string, got ${text === null ? "null" : typeof text}`);
    const ids = this.backendTokenizer.encode(text, { add_special_tokens: false }).ids;
    return ids.filter((id): id is number => typeof id === "number");
  }

  // ---- decoding ----

  /** Text of ids; skipSpecialTokens drops special tokens; ids outside the vocabulary are ignored (as tokenizers does). */
  decode(ids: number | ArrayLike<number | bigint>, options: DecodeOptions = {}): string {
    const list = (typeof ids === "number" ? [ids] : Array.from(ids, Number)).filter(
      (id) => this.backendTokenizer.id_to_token(id) !== undefined,
    );
    if (list.length === 0) return "";
    if (options.skipSpecialTokens) {
      // As tokenizers' decode: drop the added tokens marked special (which include the config's special tokens).
      this.specialAddedIds ??= new Set(
        [...this.backendTokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id),
      );
      const additional = new Set(this.convertTokensToIds(this.additionalSpecialTokens));
      const kept = list.filter((id) => !this.specialAddedIds?.has(id) && !additional.has(id));
      if (kept.length === 0) return ""; // the package refuses an empty list
      return this.decodeIds(kept, options);
    }
    return this.decodeIds(list, options);
  }

  private decodeIds(ids: number[], options: DecodeOptions): string {
    return this.backendTokenizer.decode(ids, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces,
    });
  }

  /** decode() for each sequence of a batch. */
  batchDecode(sequences: ArrayLike<ArrayLike<number | bigint>>, options: DecodeOptions = {}): string[] {
    return Array.from(sequences, (ids) => this.decode(ids, options));
  }

  // ---- chat ----

  /** Renders a conversation with the chat template (transformers' variables); ids by default, the string with tokenize: false. */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string;
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): number[];
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    if (!Array.isArray(messages)) throw new TypeError("applyChatTemplate expects an array of {role, content} messages");
    const addGenerationPrompt = options.addGenerationPrompt ?? false;
    if (addGenerationPrompt && options.continueFinalMessage) {
      throw new Error(
        "continueFinalMessage and addGenerationPrompt are not compatible: use continueFinalMessage " +
          "to extend the last message, addGenerationPrompt to start a new assistant turn",
      );
    }
    const template = selectChatTemplate(this.chatTemplate, options.chatTemplate, options.tools !== undefined);
    let rendered = renderChatTemplate(template, {
      ...this.specialTokensMap,
      ...options.templateKwargs,
      messages,
      tools: options.tools ?? null,
      documents: options.documents ?? null,
      add_generation_prompt: addGenerationPrompt,
    });
    if (options.continueFinalMessage) rendered = cutAfterFinalMessage(rendered, messages);
    if (options.tokenize === false) return rendered;
    return this.encode(rendered, {
      addSpecialTokens: false,
      truncation: options.truncation,
      maxLength: options.maxLength,
    });
  }
}
