/** Adding special tokens around already-encoded ids with tokenizer.json's post-processor. */
import type { BackendTokenizer, PostProcessed } from "./backend.js";

/** Ids with their token type ids (0 for the first sequence, 1 for the pair). */
export interface WithTypes {
  ids: number[];
  typeIds: number[];
}

// The package applies its post-processor to token strings inside encode(text) only, so truncating before the special
// tokens are added (as transformers does) needs the post-processor on ids: each id travels through it as a sentinel
// string that no template token can equal, and comes back as the same id.
const MARK_A = "\u0000peft-ts:A:";
const MARK_B = "\u0000peft-ts:B:";

/** Runs the post-processor (template, BERT, RoBERTa, byte-level, sequence) on ids; `add` false keeps only the sequences. */
export function postProcessIds(
  tokenizer: BackendTokenizer,
  a: number[],
  b: number[] | null,
  add: boolean,
  unkId: number | null,
): WithTypes {
  const processor = tokenizer.post_processor;
  if (processor === null) {
    const ids = b === null ? [...a] : [...a, ...b];
    return { ids, typeIds: ids.map((_, i) => (i < a.length ? 0 : 1)) };
  }
  const out: PostProcessed = processor(
    a.map((id) => MARK_A + id),
    b === null ? null : b.map((id) => MARK_B + id),
    add,
  );
  // The package's ByteLevel post-processor returns the pair apart (tokens_pair) instead of appending it as tokenizers does.
  const tokens: string[] = out.tokens_pair ? [...out.tokens, ...out.tokens_pair] : out.tokens;
  const given = out.token_type_ids;
  const useGiven = given !== undefined && given.length === tokens.length && given.every((t) => typeof t === "number");
  const ids: number[] = [];
  const typeIds: number[] = [];
  let currentType = 0;
  tokens.forEach((token, i) => {
    if (token.startsWith(MARK_A) || token.startsWith(MARK_B)) {
      currentType = token.startsWith(MARK_A) ? 0 : 1;
      ids.push(Number(token.slice(MARK_A.length)));
    } else {
      const id = tokenizer.token_to_id(token) ?? unkId;
      if (id === null)
        throw new Error(`The post-processor adds the token ${JSON.stringify(token)}, which is not in the vocabulary`);
      ids.push(id);
    }
    typeIds.push(useGiven ? (given as number[])[i]! : currentType);
  });
  return { ids, typeIds };
}

/** How many special tokens the post-processor adds to one sequence (pair = false) or to a pair. */
export function numSpecialTokensToAdd(tokenizer: BackendTokenizer, pair: boolean): number {
  return postProcessIds(tokenizer, [], pair ? [] : null, true, -1).ids.length;
}
