/** Tiny tokenizer folders written by hand: byte-level BPE (GPT-2/Qwen2), WordPiece (BERT), Unigram (T5). */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

type Json = Record<string, unknown>;

/** Writes the given files (JSON objects or strings) into a fresh temp folder and returns its path. */
export function writeFolder(files: Record<string, Json | string>): string {
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-tok-"));
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === "string" ? content : JSON.stringify(content, null, 2));
  }
  return dir;
}

/** An added special token entry of tokenizer.json. */
function special(id: number, content: string): Json {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** Qwen2's pre-tokenizer regex (tokenizer.json of Qwen/Qwen2.5-0.5B). */
export const QWEN_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| " +
  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Byte-level BPE vocabulary: a..z = 0..25, "Ġ" (space) 26, "Ċ" (newline) 27, "!" 28, then the merge results. */
export const BPE_VOCAB: Record<string, number> = (() => {
  const v: Record<string, number> = {};
  "abcdefghijklmnopqrstuvwxyz".split("").forEach((c, i) => {
    v[c] = i;
  });
  Object.assign(v, { Ġ: 26, Ċ: 27, "!": 28, he: 29, ll: 30, hell: 31, hello: 32, Ġw: 33, or: 34, Ġwor: 35 });
  return v;
})();

/** Special tokens after the vocabulary, as in Qwen2 (<|endoftext|> first). */
export const ENDOFTEXT = 36,
  IM_START = 37,
  IM_END = 38;

/** tokenizer.json of a byte-level BPE; style "qwen2" (NFC + Split regex + ByteLevel without regex) or "gpt2" (ByteLevel with its regex). */
export function bpeTokenizerJson(style: "qwen2" | "gpt2"): Json {
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: style === "gpt2" };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      special(ENDOFTEXT, "<|endoftext|>"),
      special(IM_START, "<|im_start|>"),
      special(IM_END, "<|im_end|>"),
    ],
    normalizer: style === "qwen2" ? { type: "NFC" } : null,
    pre_tokenizer:
      style === "qwen2"
        ? {
            type: "Sequence",
            pretokenizers: [
              { type: "Split", pattern: { Regex: QWEN_PATTERN }, behavior: "Isolated", invert: false },
              byteLevel,
            ],
          }
        : byteLevel,
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: BPE_VOCAB,
      merges: ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"],
    },
  };
}

/** Qwen2's chat template, verbatim. */
export const QWEN2_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ " +
  "'<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif " +
  "%}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + " +
  "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/** tokenizer_config.json in Qwen2's shape (pad <|endoftext|>, eos <|im_end|>, AddedToken entries in added_tokens_decoder). */
export function qwenConfig(): Json {
  const entry = (content: string): Json => ({
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
    special: true,
  });
  return {
    add_prefix_space: false,
    added_tokens_decoder: {
      [ENDOFTEXT]: entry("<|endoftext|>"),
      [IM_START]: entry("<|im_start|>"),
      [IM_END]: entry("<|im_end|>"),
    },
    additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
    bos_token: null,
    chat_template: QWEN2_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    errors: "replace",
    model_max_length: 32768,
    pad_token: "<|endoftext|>",
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null,
  };
}

/** WordPiece vocabulary of the BERT fixture. */
export const WP_VOCAB: Record<string, number> = {
  "[PAD]": 0,
  "[UNK]": 1,
  "[CLS]": 2,
  "[SEP]": 3,
  "[MASK]": 4,
  the: 5,
  cat: 6,
  sat: 7,
  on: 8,
  mat: 9,
  play: 10,
  "##ing": 11,
  "##ed": 12,
  ",": 13,
  ".": 14,
  a: 15,
  "##s": 16,
};

/** tokenizer.json of a BERT-style WordPiece (BertNormalizer lowercasing, [CLS] $A [SEP] template). */
export function bertTokenizerJson(): Json {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map((t) => special(WP_VOCAB[t]!, t)),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [2], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [3], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: WP_VOCAB,
    },
  };
}

/** tokenizer_config.json of bert-base-uncased, special tokens written as AddedToken-like objects. */
export function bertConfig(): Json {
  const t = (content: string): Json => ({
    __type: "AddedToken",
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  });
  return {
    clean_up_tokenization_spaces: true,
    cls_token: t("[CLS]"),
    do_lower_case: true,
    mask_token: t("[MASK]"),
    model_max_length: 512,
    pad_token: t("[PAD]"),
    sep_token: t("[SEP]"),
    strip_accents: null,
    tokenize_chinese_chars: true,
    tokenizer_class: "BertTokenizer",
    unk_token: t("[UNK]"),
  };
}

/** Unigram pieces of the T5 fixture, with log-probabilities chosen so that the best segmentations are easy to see. */
export const T5_PIECES: [string, number][] = [
  ["<pad>", 0],
  ["</s>", 0],
  ["<unk>", 0],
  ["▁", -2],
  ["▁hello", -3],
  ["▁world", -3.5],
  ["▁he", -4],
  ["llo", -4],
  ["h", -5],
  ["e", -5],
  ["l", -5],
  ["o", -5],
  ["▁wor", -4.5],
  ["ld", -4.5],
  ["s", -5],
  [".", -3],
];

/** tokenizer.json of a T5-style Unigram (WhitespaceSplit + Metaspace, $A </s> template, Metaspace decoder). */
export function t5TokenizerJson(): Json {
  const metaspace = { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
    normalizer: { type: "Sequence", normalizers: [{ type: "Replace", pattern: { Regex: " {2,}" }, content: " " }] },
    pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "WhitespaceSplit" }, metaspace] },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
      pair: [
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
        { Sequence: { id: "B", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
      ],
      special_tokens: { "</s>": { id: "</s>", ids: [1], tokens: ["</s>"] } },
    },
    decoder: metaspace,
    model: { type: "Unigram", unk_id: 2, vocab: T5_PIECES, byte_fallback: false },
  };
}

/** tokenizer_config.json of t5-small (no extra ids here). */
export function t5Config(): Json {
  return {
    clean_up_tokenization_spaces: true,
    eos_token: "</s>",
    extra_ids: 0,
    model_max_length: 512,
    pad_token: "<pad>",
    tokenizer_class: "T5Tokenizer",
    unk_token: "<unk>",
  };
}
