/** Builds the @huggingface/tokenizers Tokenizer from tokenizer.json plus what transformers adds from tokenizer_config.json. */
import { Tokenizer } from "@huggingface/tokenizers";
import { tokenText, type SpecialTokens } from "./special-tokens.js";

type Json = Record<string, unknown>;

/** What the package's post-processors return. */
export interface PostProcessed {
  tokens: string[];
  tokens_pair?: string[] | null;
  token_type_ids?: (number | undefined)[];
}

/** The part of the package's Tokenizer that peft-ts uses. Its .d.ts files import each other without file extensions,
 * which NodeNext resolution cannot follow, so the package's own types arrive as `any`: this restates them. */
export interface BackendTokenizer {
  encode(
    text: string,
    options?: { text_pair?: string | null; add_special_tokens?: boolean },
  ): { ids: (number | undefined)[]; tokens: string[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  tokenize(text: string, options?: { text_pair?: string | null; add_special_tokens?: boolean }): string[];
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_added_tokens_decoder(): Map<number, { content: string; special: boolean }>;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  post_processor: ((tokens: string[], pair: string[] | null, addSpecialTokens: boolean) => PostProcessed) | null;
}

/** An entry of tokenizer.json's `added_tokens`. */
interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
}

/** Tokenizer classes whose fast tokenizer rebuilds its post-processor from add_bos_token/add_eos_token (transformers 4.44), with their defaults. */
const BOS_EOS_CLASSES: Record<string, [boolean, boolean]> = {
  LlamaTokenizer: [true, false],
  CodeLlamaTokenizer: [true, false],
  GemmaTokenizer: [true, false],
  GPTNeoXTokenizer: [false, false],
};

/** Id of `token` in the model vocabulary of tokenizer.json (a BPE/WordPiece dict or a Unigram list of [piece, score]). */
export function modelVocabId(model: Json, token: string): number | undefined {
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    const i = vocab.findIndex((entry) => Array.isArray(entry) && entry[0] === token);
    return i >= 0 ? i : undefined;
  }
  if (vocab !== null && typeof vocab === "object" && Object.hasOwn(vocab, token))
    return (vocab as Record<string, number>)[token];
  return undefined;
}

/** Number of entries in the model vocabulary (transformers' `vocab_size`, added tokens not counted). */
export function modelVocabSize(model: Json): number {
  const vocab = model.vocab;
  if (Array.isArray(vocab)) return vocab.length;
  return vocab !== null && typeof vocab === "object" ? Object.keys(vocab).length : 0;
}

/** Added tokens of tokenizer.json completed as transformers' PreTrainedTokenizerFast.__init__ does: entries of
 * `added_tokens_decoder` and special tokens of the config that are not added tokens yet become special added tokens
 * (keeping their vocabulary id, or getting the next free id). */
function completeAddedTokens(json: Json, config: Json, specials: SpecialTokens): AddedTokenJson[] {
  const model = json.model as Json;
  const added = ((json.added_tokens as AddedTokenJson[] | undefined) ?? []).map((t) => ({ ...t }));
  const has = (content: string): boolean => added.some((t) => t.content === content);
  const decoder = (config.added_tokens_decoder ?? {}) as Record<string, Json>;
  for (const [id, entry] of Object.entries(decoder)) {
    const content = tokenText(entry);
    if (content === null || has(content)) continue;
    added.push({ ...(entry as object), id: Number(id), content } as AddedTokenJson);
  }
  const wanted = [...Object.values(specials.named), ...specials.additional].filter((t): t is string => t !== null);
  for (const content of wanted) {
    if (has(content)) continue;
    const nextId = Math.max(modelVocabSize(model), ...added.map((t) => t.id + 1));
    added.push({
      id: modelVocabId(model, content) ?? nextId,
      content,
      special: true,
      normalized: false,
      lstrip: false,
      rstrip: false,
      single_word: false,
    });
  }
  return added;
}

/** The TemplateProcessing post-processor that LlamaTokenizerFast.update_post_processor builds, or null for other classes. */
function bosEosPostProcessor(
  config: Json,
  specials: SpecialTokens,
  idOf: (t: string) => number | undefined,
): Json | null {
  const cls = String(config.tokenizer_class ?? "").replace(/Fast$/, "");
  const defaults = BOS_EOS_CLASSES[cls];
  if (defaults === undefined) return null;
  const addBos = typeof config.add_bos_token === "boolean" ? config.add_bos_token : defaults[0];
  const addEos = typeof config.add_eos_token === "boolean" ? config.add_eos_token : defaults[1];
  const bos = specials.named.bos_token;
  const eos = specials.named.eos_token;
  if (addBos && bos === null) throw new Error("add_bos_token = True but bos_token = None (tokenizer_config.json)");
  if (addEos && eos === null) throw new Error("add_eos_token = True but eos_token = None (tokenizer_config.json)");
  const special = (token: string, typeId: number): Json => ({ SpecialToken: { id: token, type_id: typeId } });
  const side = (typeId: number, seq: string): Json[] => [
    ...(addBos ? [special(bos as string, typeId)] : []),
    { Sequence: { id: seq, type_id: typeId } },
    ...(addEos ? [special(eos as string, typeId)] : []),
  ];
  const tokens = [...(addBos ? [bos as string] : []), ...(addEos ? [eos as string] : [])];
  return {
    type: "TemplateProcessing",
    single: side(0, "A"),
    pair: [...side(0, "A"), ...side(1, "B")],
    special_tokens: Object.fromEntries(tokens.map((t) => [t, { id: t, ids: [idOf(t) ?? 0], tokens: [t] }])),
  };
}

/** Creates the package's Tokenizer from tokenizer.json, the tokenizer config and the resolved special tokens. */
export function createBackend(json: Json, config: Json, specials: SpecialTokens): BackendTokenizer {
  if (json.model === null || typeof json.model !== "object") throw new Error("tokenizer.json has no `model` section");
  const added = completeAddedTokens(json, config, specials);
  const prepared: Json = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...json,
    added_tokens: added,
  };
  const idOf = (t: string): number | undefined =>
    added.find((a) => a.content === t)?.id ?? modelVocabId(json.model as Json, t);
  const postProcessor = bosEosPostProcessor(config, specials, idOf);
  if (postProcessor !== null) prepared.post_processor = postProcessor;
  // The package reads special tokens from its config as plain strings (AddedToken objects would break it).
  const packageConfig: Json = {
    ...config,
    ...Object.fromEntries(Object.entries(specials.named).map(([k, v]) => [k, v ?? undefined])),
    additional_special_tokens: specials.additional,
  };
  delete packageConfig.chat_template;
  delete packageConfig.added_tokens_decoder;
  return new Tokenizer(prepared, packageConfig) as BackendTokenizer;
}
