/**
 * Stop strings (transformers' StopStringCriteria, vLLM's `stop`): a row ends once the text decoded from its
 * generated tokens contains one of the strings, wherever token boundaries fall.
 */
import { ConfigError } from "../../errors.js";
import { IncrementalText } from "./incremental-text.js";

/** What stop strings need from a tokenizer. */
export interface TokenDecoder {
  decode(ids: number[]): string;
}

/** Per-row stop-string matching; only text that a new token could complete is searched again. */
export class StopStrings {
  private readonly searchedUpTo: number[];
  private readonly texts: IncrementalText[];
  private readonly longest: number;

  constructor(
    private readonly strings: string[],
    tokenizer: TokenDecoder | undefined,
    batch: number,
  ) {
    if (!tokenizer)
      throw new ConfigError(
        "generate: stopStrings need a tokenizer to decode the generated tokens",
        "pass tokenizer: the model's tokenizer",
      );
    if (strings.some((s) => typeof s !== "string" || s.length === 0))
      throw new ConfigError("generate: stopStrings must be non-empty strings", "remove empty stop strings");
    this.searchedUpTo = new Array<number>(batch).fill(0);
    this.texts = Array.from({ length: batch }, () => new IncrementalText((ids) => tokenizer.decode(ids)));
    this.longest = Math.max(...strings.map((s) => s.length));
  }

  /** Whether the row's generated ids (the list of the last call, grown) now contain a stop string. */
  hit(row: number, generated: readonly number[]): boolean {
    const text = this.texts[row]!.update(generated);
    const from = Math.max(0, this.searchedUpTo[row]! - this.longest + 1);
    this.searchedUpTo[row] = text.length;
    return this.strings.some((s) => text.indexOf(s, from) >= 0);
  }
}

/**
 * Where the first stop string starts in text at or after `from` (-1 if none): servers cut the returned text there, as
 * OpenAI's API does.
 */
export function stopStringIndex(text: string, strings: readonly string[], from = 0): number {
  let first = -1;
  for (const s of strings) {
    const i = text.indexOf(s, from);
    if (i >= 0 && (first < 0 || i < first)) first = i;
  }
  return first;
}
