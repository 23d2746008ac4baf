/**
 * The text of a growing list of generated ids, decoded a few ids at a time (vLLM's incremental detokenization).
 * Decoding the whole list at every step costs O(n) per token and O(n²) per sequence; here each step decodes only a
 * short window: the ids since the last emitted piece, plus the piece's own ids as context, so that a tokenizer's
 * handling of a window's first token (a SentencePiece word's leading space, byte-level BPE's partial characters)
 * is the same in both decodes and cancels out.
 */

/** Decodes ids to text. */
export type IdsDecoder = (ids: number[]) => string;

/** The decoded text of a list of ids that only grows between calls. */
export class IncrementalText {
  private text = "";
  /** ids[prefix, read) produced the end of text: the context of the next window. */
  private prefix = 0;
  private read = 0;

  constructor(private readonly decode: IdsDecoder) {}

  /** The text of `ids` (the list seen before, grown), without a trailing character whose bytes are incomplete. */
  update(ids: readonly number[]): string {
    if (ids.length <= this.read) return this.text;
    const before = this.decode(ids.slice(this.prefix, this.read));
    const now = this.decode(ids.slice(this.prefix));
    // A trailing U+FFFD is a character whose bytes have not all arrived yet: wait for the rest.
    if (now.length > before.length && !now.endsWith("\uFFFD")) {
      this.text += now.slice(before.length);
      this.prefix = this.read;
      this.read = ids.length;
    }
    return this.text;
  }
}
