/** The tokenizer's settings: tokenizer_config.json, special_tokens_map.json and tokenizer.json defaults, plus overrides. */
import type { TokenizerFiles } from "./files.js";
import { resolveSpecialTokens, type SpecialTokens } from "./special-tokens.js";
import type { Side } from "./types.js";

/** Settings that override the folder's files, as keyword arguments of transformers' from_pretrained do. */
export interface TokenizerOverrides {
  paddingSide?: Side;
  truncationSide?: Side;
  modelMaxLength?: number;
  chatTemplate?: string;
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  sepToken?: string;
  clsToken?: string;
  maskToken?: string;
  addBosToken?: boolean;
  addEosToken?: boolean;
  cleanUpTokenizationSpaces?: boolean;
}

/** The merged config (HF snake_case fields) and the special tokens it names. */
export interface ResolvedConfig {
  config: Record<string, unknown>;
  specials: SpecialTokens;
}

/** Tokenizer classes whose models take token_type_ids (transformers' model_input_names). */
const TOKEN_TYPE_CLASSES = new Set([
  "BertTokenizer",
  "AlbertTokenizer",
  "ElectraTokenizer",
  "MobileBertTokenizer",
  "ConvBertTokenizer",
  "DebertaTokenizer",
  "DebertaV2Tokenizer",
  "FunnelTokenizer",
  "XLNetTokenizer",
  "LayoutLMTokenizer",
  "SqueezeBertTokenizer",
  "RoFormerTokenizer",
]);

/** camelCase override name → snake_case config key. */
function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Merges the files and overrides with transformers' precedence: overrides > special_tokens_map.json > tokenizer_config.json
 * > chat_template.jinja over the config's template > tokenizer.json's padding section (defaults only). */
export function resolveConfig(files: TokenizerFiles, overrides: TokenizerOverrides): ResolvedConfig {
  const config: Record<string, unknown> = { ...(files.tokenizerConfig ?? {}) };
  const specialTokensMap: Record<string, unknown> = { ...(files.specialTokensMap ?? {}) };
  if (files.chatTemplate !== undefined) config.chat_template = files.chatTemplate;
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    config[snakeCase(key)] = value;
    if (key.endsWith("Token") && key !== "addBosToken" && key !== "addEosToken")
      specialTokensMap[snakeCase(key)] = value;
  }
  const padding = files.tokenizerJson.padding as { pad_token?: unknown; direction?: unknown } | null | undefined;
  if (
    padding &&
    config.pad_token === undefined &&
    specialTokensMap.pad_token === undefined &&
    typeof padding.pad_token === "string"
  ) {
    config.pad_token = padding.pad_token;
  }
  if (padding && config.padding_side === undefined && typeof padding.direction === "string")
    config.padding_side = padding.direction.toLowerCase();
  return { config, specials: resolveSpecialTokens(config, specialTokensMap) };
}

/** The model's input names: the config's model_input_names, else transformers' default for the tokenizer class. */
export function modelInputNames(config: Record<string, unknown>): string[] {
  if (Array.isArray(config.model_input_names)) return config.model_input_names.map(String);
  const cls = String(config.tokenizer_class ?? "").replace(/Fast$/, "");
  return TOKEN_TYPE_CLASSES.has(cls)
    ? ["input_ids", "token_type_ids", "attention_mask"]
    : ["input_ids", "attention_mask"];
}
