/** Special tokens of a tokenizer folder: names, AddedToken-like values, and how tokenizer_config.json and special_tokens_map.json combine. */

/** The named special-token slots of transformers' tokenizers, in transformers' order. */
export const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

/** One named special-token slot (`bos_token`, `pad_token`, …). */
export type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number];

/** The special tokens as plain strings (null where the slot is empty). */
export interface SpecialTokens {
  named: Record<SpecialTokenKey, string | null>;
  additional: string[];
}

/** The text of a token written as a string or as an AddedToken-like object `{content: ...}`; null when absent. */
export function tokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
    return (value as { content: string }).content;
  }
  return null;
}

/** Texts of a list of tokens (strings or AddedToken-like objects); a dict of named extras gives its values. */
export function tokenTexts(value: unknown): string[] {
  const items = Array.isArray(value) ? value : value !== null && typeof value === "object" ? Object.values(value) : [];
  return items.map(tokenText).filter((t): t is string => t !== null);
}

/** Resolves the special tokens: special_tokens_map.json wins over tokenizer_config.json, as in transformers' from_pretrained. */
export function resolveSpecialTokens(
  config: Record<string, unknown>,
  specialTokensMap: Record<string, unknown>,
): SpecialTokens {
  const named = {} as Record<SpecialTokenKey, string | null>;
  for (const key of SPECIAL_TOKEN_KEYS) {
    named[key] = key in specialTokensMap ? tokenText(specialTokensMap[key]) : tokenText(config[key]);
  }
  const additional: string[] = [];
  // transformers ≤4.x writes `additional_special_tokens`; 5.x writes `extra_special_tokens` (a list or a dict).
  for (const source of [config, specialTokensMap]) {
    for (const key of ["additional_special_tokens", "extra_special_tokens"]) {
      for (const t of tokenTexts(source[key])) if (!additional.includes(t)) additional.push(t);
    }
  }
  return { named, additional };
}
