/**
 * A small byte-level BPE trainer that writes a Hugging Face tokenizer.json (GPT-2's byte-to-unicode alphabet,
 * GPT-2's pre-tokenizer regex, merges learned by pair frequency). Only the demo model's build script uses it:
 * the JavaScript tokenizers package can load BPE tokenizers but not train them.
 */

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible map from bytes to printable unicode characters. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return map;
}

/** Options of trainBpe. */
export interface BpeOptions {
  merges: number;
  specialTokens: string[];
}

/** Learn `merges` merges over the texts; returns a tokenizer.json object (special tokens after the vocabulary). */
export function trainBpe(texts: Iterable<string>, opts: BpeOptions): Record<string, unknown> {
  const alphabet = bytesToUnicode();
  const encoder = new TextEncoder();
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const word = Array.from(encoder.encode(m[0]), (b) => alphabet[b]!).join("");
      wordCounts.set(word, (wordCounts.get(word) ?? 0) + 1);
    }
  }
  const words = [...wordCounts].map(([w, count]) => ({ symbols: Array.from(w), count }));
  const vocab = new Map<string, number>(alphabet.map((c, i) => [c, i]));
  const merges: string[] = [];
  for (let step = 0; step < opts.merges; step++) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best = "",
      bestCount = 1;
    for (const [k, c] of pairs)
      if (c > bestCount || (c === bestCount && best !== "" && k < best)) [best, bestCount] = [k, c];
    if (best === "") break;
    const [a, b] = best.split(" ") as [string, string];
    const merged = a + b;
    merges.push(best);
    vocab.set(merged, vocab.size);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(merged);
          i++;
        } else out.push(w.symbols[i]!);
      }
      w.symbols = out;
    }
  }
  const added = opts.specialTokens.map((content, i) => ({
    id: vocab.size + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
}
