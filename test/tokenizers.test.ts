/** Tokenizers: tiny hand-written tokenizer folders (byte-level BPE, WordPiece, Unigram) against ids worked out by hand. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AutoTokenizer, PreTrainedTokenizer } from "../src/tokenizers/index.js";
import {
  bertConfig,
  bertTokenizerJson,
  bpeTokenizerJson,
  ENDOFTEXT,
  IM_END,
  IM_START,
  qwenConfig,
  QWEN2_TEMPLATE,
  t5Config,
  t5TokenizerJson,
  writeFolder,
} from "./tokenizer-fixtures.js";

// Letter ids of the BPE fixture (a..z = 0..25) and its merged tokens.
const L = (s: string): number[] => s.split("").map((c) => c.charCodeAt(0) - 97);
const NL = 27,
  BANG = 28,
  HELLO = 32,
  G_WOR = 35;
const HELLO_WORLD = [HELLO, G_WOR, ...L("ld")]; // "hello" + "Ġwor" "l" "d"

const qwenDir = writeFolder({ "tokenizer.json": bpeTokenizerJson("qwen2"), "tokenizer_config.json": qwenConfig() });
const gpt2Dir = writeFolder({
  "tokenizer.json": bpeTokenizerJson("gpt2"),
  "tokenizer_config.json": { model_max_length: 1024 },
});
const bertDir = writeFolder({
  "tokenizer.json": bertTokenizerJson(),
  "tokenizer_config.json": bertConfig(),
  "special_tokens_map.json": {
    cls_token: "[CLS]",
    mask_token: "[MASK]",
    pad_token: "[PAD]",
    sep_token: "[SEP]",
    unk_token: "[UNK]",
  },
});
const t5Dir = writeFolder({ "tokenizer.json": t5TokenizerJson(), "tokenizer_config.json": t5Config() });

describe("byte-level BPE (Qwen2 / GPT-2)", () => {
  it("encodes by the merges, with Qwen2's regex split and with GPT-2's ByteLevel regex alike", async () => {
    const qwen = await AutoTokenizer.fromPretrained(qwenDir);
    const gpt2 = await AutoTokenizer.fromPretrained(gpt2Dir);
    for (const tok of [qwen, gpt2]) {
      assert.deepEqual(tok.encode("hello world"), HELLO_WORLD);
      assert.deepEqual(tok.encode("hello world!"), [...HELLO_WORLD, BANG]);
      assert.deepEqual(tok.tokenize("hello world"), ["hello", "Ġwor", "l", "d"]);
      assert.deepEqual(tok.encode("hello world", { addSpecialTokens: false }), HELLO_WORLD); // ByteLevel adds nothing
    }
  });

  it("matches special tokens inside text and decodes round trip, skipping special tokens on request", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwenDir);
    const text = "<|im_start|>user\nhello world<|im_end|>";
    const ids = tok.encode(text);
    assert.deepEqual(ids, [IM_START, ...L("user"), NL, ...HELLO_WORLD, IM_END]);
    assert.equal(tok.decode(ids), text);
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "user\nhello world");
    assert.deepEqual(tok.batchDecode([ids, [HELLO, ENDOFTEXT, ENDOFTEXT]], { skipSpecialTokens: true }), [
      "user\nhello world",
      "hello",
    ]);
    assert.equal(tok.decode([]), "");
    assert.equal(tok.decode([IM_END], { skipSpecialTokens: true }), "");
    assert.equal(tok.decode(Int32Array.from(HELLO_WORLD)), "hello world");
  });

  it("reads special tokens, sizes and conversions from the config", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwenDir);
    assert.equal(tok.eosToken, "<|im_end|>");
    assert.equal(tok.eosTokenId, IM_END);
    assert.equal(tok.padTokenId, ENDOFTEXT);
    assert.equal(tok.bosTokenId, null);
    assert.equal(tok.unkTokenId, null);
    assert.equal(tok.vocabSize, 36);
    assert.equal(tok.length, 39);
    assert.equal(tok.modelMaxLength, 32768);
    assert.deepEqual(tok.convertTokensToIds(["hello", "<|im_start|>", "nope"]), [HELLO, IM_START, null]);
    assert.deepEqual(tok.convertIdsToTokens([HELLO, IM_END, 999]), ["hello", "<|im_end|>", null]);
    assert.deepEqual(tok.convertIdsToTokens([HELLO, IM_END], true), ["hello"]);
    assert.deepEqual(tok.allSpecialIds.sort(), [ENDOFTEXT, IM_START, IM_END].sort());
  });

  it("pads left and right with attention masks once padToken is set (GPT-2 has none)", async () => {
    const tok = await AutoTokenizer.fromPretrained(gpt2Dir);
    assert.equal(tok.padToken, null);
    assert.throws(
      () => tok.encodeBatch(["hello world", "hello"], { padding: true }),
      /does not have a padding token.*tokenizer\.padToken = tokenizer\.eosToken/s,
    );
    tok.eosToken = "<|endoftext|>";
    tok.padToken = tok.eosToken;
    assert.equal(tok.padTokenId, ENDOFTEXT);

    const right = tok.encodeBatch(["hello world", "hello"], { padding: true });
    assert.deepEqual(right.inputIds, [HELLO_WORLD, [HELLO, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT]]);
    assert.deepEqual(right.attentionMask, [
      [1, 1, 1, 1],
      [1, 0, 0, 0],
    ]);

    tok.paddingSide = "left";
    const left = tok.encodeBatch(["hello world", "hello"], { padding: "longest" });
    assert.deepEqual(left.inputIds, [HELLO_WORLD, [ENDOFTEXT, ENDOFTEXT, ENDOFTEXT, HELLO]]);
    assert.deepEqual(left.attentionMask, [
      [1, 1, 1, 1],
      [0, 0, 0, 1],
    ]);
    assert.equal(left.tokenTypeIds, undefined);

    const fixed = tok.encodeBatch(["hello", "hello!"], { padding: "max_length", maxLength: 3, paddingSide: "right" });
    assert.deepEqual(fixed.inputIds, [
      [HELLO, ENDOFTEXT, ENDOFTEXT],
      [HELLO, BANG, ENDOFTEXT],
    ]);
    const multiple = tok.encodeBatch(["hello world!"], { padding: true, padToMultipleOf: 4 });
    assert.deepEqual(multiple.inputIds, [[ENDOFTEXT, ENDOFTEXT, ENDOFTEXT, ...HELLO_WORLD, BANG]]);
    assert.deepEqual(tok.pad([[1], [2, 3]]).inputIds, [
      [ENDOFTEXT, 1],
      [2, 3],
    ]);
    assert.throws(() => (tok.paddingSide = "middle" as "left"), /"left" or "right"/);
  });

  it("is callable like transformers' tokenizer(texts, padding, return_tensors) and gives int32 tensors", async () => {
    const tok = await AutoTokenizer.fromPretrained(gpt2Dir);
    tok.padToken = "<|endoftext|>";
    tok.paddingSide = "left";
    assert.deepEqual(tok("hello world"), { inputIds: HELLO_WORLD, attentionMask: [1, 1, 1, 1] });
    const { inputIds, attentionMask } = tok(["hello world", "hello"], { padding: true, returnTensors: true });
    assert.deepEqual([inputIds.dtype, inputIds.shape], ["int32", [2, 4]]);
    assert.deepEqual(Array.from(inputIds.dataSync()), [...HELLO_WORLD, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT, HELLO]);
    assert.deepEqual(Array.from(attentionMask.dataSync()), [1, 1, 1, 1, 0, 0, 0, 1]);
    assert.throws(
      () => tok(["hello world", "hello"], { returnTensors: true }),
      /different lengths; pass padding: true/,
    );
    assert.equal(tok.length, tok.getVocab().size);
    assert.ok(tok instanceof PreTrainedTokenizer);
  });

  it("truncates from the right or the left (maxLength alone implies truncation)", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwenDir);
    assert.deepEqual(tok.encode("hello world!", { maxLength: 2 }), [HELLO, G_WOR]);
    assert.deepEqual(tok.encode("hello world!", { maxLength: 2, truncationSide: "left" }), [L("d")[0], BANG]);
    assert.deepEqual(tok.encode("hello world!", { maxLength: 2, truncation: false }), [...HELLO_WORLD, BANG]);
    const batch = tok.encodeBatch(["hello world!", "hello"], { truncation: true, maxLength: 3, padding: "max_length" });
    assert.deepEqual(batch.inputIds, [
      [HELLO, G_WOR, L("l")[0]],
      [HELLO, ENDOFTEXT, ENDOFTEXT],
    ]);
    assert.deepEqual(batch.attentionMask, [
      [1, 1, 1],
      [1, 0, 0],
    ]);
  });

  it("loads overrides like from_pretrained keyword arguments, and Llama's add_bos/add_eos flags", () => {
    const tok = AutoTokenizer.fromPretrainedSync(qwenDir, { paddingSide: "left" });
    assert.equal(tok.paddingSide, "left");
    const llamaDir = writeFolder({
      "tokenizer.json": bpeTokenizerJson("gpt2"),
      "tokenizer_config.json": {
        tokenizer_class: "LlamaTokenizerFast",
        bos_token: "<|endoftext|>",
        eos_token: { content: "<|im_end|>" },
        add_eos_token: true,
      },
    });
    const llama = AutoTokenizer.fromPretrainedSync(llamaDir);
    assert.deepEqual(llama.encode("hello"), [ENDOFTEXT, HELLO, IM_END]);
    assert.deepEqual(llama.encode("hello", { maxLength: 3 }), [ENDOFTEXT, HELLO, IM_END]);
    assert.deepEqual(llama.encode("hello world", { maxLength: 3 }), [ENDOFTEXT, HELLO, IM_END]);
    assert.deepEqual(llama.encode("hello", { addSpecialTokens: false }), [HELLO]);
  });
});

describe("chat templates (Qwen2 template through @huggingface/jinja)", () => {
  it("renders with and without the generation prompt, exactly as transformers", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwenDir);
    assert.equal(tok.chatTemplate, QWEN2_TEMPLATE);
    const messages = [{ role: "user", content: "Hi there" }];
    assert.equal(
      tok.applyChatTemplate(messages, { tokenize: false }),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n",
    );
    assert.equal(
      tok.applyChatTemplate(messages, { tokenize: false, addGenerationPrompt: true }),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi " +
        "there<|im_end|>\n<|im_start|>assistant\n",
    );
    const turns = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello!" },
    ];
    assert.equal(
      tok.applyChatTemplate(turns, { tokenize: false }),
      "<|im_start|>system\nBe " +
        "brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
    );
    assert.equal(
      tok.applyChatTemplate(turns, { tokenize: false, continueFinalMessage: true }),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!",
    );
  });

  it("tokenizes the rendered chat without adding special tokens", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwenDir);
    const ids = tok.applyChatTemplate(
      [
        { role: "system", content: "hello" },
        { role: "user", content: "hello world" },
      ],
      { addGenerationPrompt: true },
    );
    assert.deepEqual(ids, [
      IM_START,
      ...L("system"),
      NL,
      HELLO,
      IM_END,
      NL,
      IM_START,
      ...L("user"),
      NL,
      ...HELLO_WORLD,
      IM_END,
      NL,
      IM_START,
      ...L("assistant"),
      NL,
    ]);
  });

  it("passes special tokens and raise_exception to the template", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwenDir);
    const template =
      "{{ eos_token }}|{{ pad_token }}|{{ bos_token is defined }}{% if messages|length > 1 %}{{ " +
      "raise_exception('one message only') }}{% endif %}";
    assert.equal(
      tok.applyChatTemplate([{ role: "user", content: "x" }], { chatTemplate: template, tokenize: false }),
      "<|im_end|>|<|endoftext|>|false",
    );
    assert.throws(
      () =>
        tok.applyChatTemplate(
          [
            { role: "user", content: "x" },
            { role: "user", content: "y" },
          ],
          { chatTemplate: template, tokenize: false },
        ),
      /one message only/,
    );
  });

  it("explains a missing chat template", async () => {
    const tok = await AutoTokenizer.fromPretrained(gpt2Dir);
    assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "x" }]), /chatTemplate is not set/);
  });
});

describe("WordPiece (BERT)", () => {
  it("lowercases, splits words into pieces, adds [CLS] … [SEP] and decodes", async () => {
    const tok = await AutoTokenizer.fromPretrained(bertDir);
    const ids = tok.encode("The CAT is playing.");
    assert.deepEqual(ids, [2, 5, 6, 1, 10, 11, 14, 3]); // [CLS] the cat [UNK] play ##ing . [SEP]
    assert.equal(tok.decode(ids), "[CLS] the cat [UNK] playing. [SEP]");
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "the cat playing.");
    assert.equal(tok.decode(tok.encode("the cat sat on a mat.")), "[CLS] the cat sat on a mat. [SEP]");
    assert.deepEqual(
      [tok.clsTokenId, tok.sepTokenId, tok.padTokenId, tok.unkTokenId, tok.maskTokenId],
      [2, 3, 0, 1, 4],
    );
    assert.equal(tok.padToken, "[PAD]"); // written as an AddedToken-like object in tokenizer_config.json
    assert.equal(tok.vocabSize, 17);
    assert.equal(tok.length, 17);
    assert.equal(tok.numSpecialTokensToAdd(), 2);
    assert.equal(tok.numSpecialTokensToAdd(true), 3);
  });

  it("encodes pairs with token type ids, pads right and truncates longest-first as the Rust tokenizers", async () => {
    const tok = await AutoTokenizer.fromPretrained(bertDir);
    assert.deepEqual(tok.encode("the cat", { textPair: "sat on the mat" }), [2, 5, 6, 3, 7, 8, 5, 9, 3]);
    const one = tok.call("the cat", { textPair: "sat on the mat" });
    assert.deepEqual(one.tokenTypeIds, [0, 0, 0, 0, 1, 1, 1, 1, 1]);
    assert.deepEqual(one.attentionMask, [1, 1, 1, 1, 1, 1, 1, 1, 1]);
    // 2 + 4 tokens, budget 8 − 3 specials = 5: the shorter keeps 2, the longer gets 3.
    assert.deepEqual(tok.encode("the cat", { textPair: "sat on the mat", maxLength: 8 }), [2, 5, 6, 3, 7, 8, 5, 3]);
    // 4 + 4 tokens, budget 5: both cut, the second gets the odd token (Rust rule, not Python's slow one).
    assert.deepEqual(
      tok.encode("the cat sat on", { textPair: "the mat sat on", maxLength: 8 }),
      [2, 5, 6, 3, 5, 9, 7, 3],
    );
    assert.deepEqual(
      tok.encode("the cat sat on", { textPair: "the mat", maxLength: 7, truncation: "only_first" }),
      [2, 5, 6, 3, 5, 9, 3],
    );
    assert.throws(
      () => tok.encode("the cat", { textPair: "sat on the mat", maxLength: 6, truncation: "only_first" }),
      /too short/,
    );

    const batch = tok.encodeBatch(
      [
        ["the cat", "sat"],
        ["a cat", "sat on the mat"],
      ],
      { padding: true },
    );
    assert.deepEqual(batch.inputIds, [
      [2, 5, 6, 3, 7, 3, 0, 0, 0],
      [2, 15, 6, 3, 7, 8, 5, 9, 3],
    ]);
    assert.deepEqual(batch.attentionMask, [
      [1, 1, 1, 1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1, 1, 1],
    ]);
    assert.deepEqual(batch.tokenTypeIds, [
      [0, 0, 0, 0, 1, 1, 0, 0, 0],
      [0, 0, 0, 0, 1, 1, 1, 1, 1],
    ]);
    const noMask = tok.encodeBatch(["the cat"], { returnAttentionMask: false, returnTokenTypeIds: false });
    assert.deepEqual(noMask, { inputIds: [[2, 5, 6, 3]] });
  });
});

describe("Unigram (T5)", () => {
  it("segments by best score, appends </s>, decodes with and without special tokens", async () => {
    const tok = await AutoTokenizer.fromPretrained(t5Dir);
    assert.deepEqual(tok.encode("hello world"), [4, 5, 1]); // ▁hello ▁world </s>
    assert.deepEqual(tok.encode("hello   worlds."), [4, 5, 14, 15, 1]); // ▁hello ▁world s . </s>
    assert.deepEqual(tok.encode("hello x"), [4, 3, 2, 1]); // ▁hello ▁ <unk> </s>
    assert.equal(tok.decode([4, 5, 1]), "hello world</s>");
    assert.equal(tok.decode([4, 5, 1, 0, 0], { skipSpecialTokens: true }), "hello world");
    assert.equal(tok.decode(tok.encode("hello worlds."), { skipSpecialTokens: true }), "hello worlds.");
    assert.deepEqual([tok.eosTokenId, tok.padTokenId, tok.unkTokenId], [1, 0, 2]);
  });

  it("pads right with <pad> and truncates keeping </s>", async () => {
    const tok = await AutoTokenizer.fromPretrained(t5Dir);
    const batch = tok.encodeBatch(["hello world", "hello"], { padding: true });
    assert.deepEqual(batch.inputIds, [
      [4, 5, 1],
      [4, 1, 0],
    ]);
    assert.deepEqual(batch.attentionMask, [
      [1, 1, 1],
      [1, 1, 0],
    ]);
    assert.deepEqual(tok.encode("hello worlds.", { maxLength: 3 }), [4, 5, 1]);
    assert.deepEqual(tok.encode("hello worlds.", { maxLength: 3, truncationSide: "left" }), [14, 15, 1]);
    assert.throws(() => tok.encode("hello", { maxLength: 0, truncation: true }), /too small/);
    // padding="max_length" without maxLength uses model_max_length (512)
    assert.equal(tok.encodeBatch(["hello"], { padding: "max_length" }).inputIds[0]!.length, 512);
  });
});

describe("loading errors and configs", () => {
  it("names the folder and the files found when tokenizer.json is missing", () => {
    const dir = writeFolder({ "vocab.json": {}, "merges.txt": "", "config.json": {} });
    assert.throws(
      () => AutoTokenizer.fromPretrainedSync(dir),
      (e: Error) => {
        assert.match(e.message, new RegExp(`No tokenizer.json in ${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
        assert.match(e.message, /files found: config\.json, merges\.txt, vocab\.json/);
        assert.match(e.message, /save_pretrained/);
        return true;
      },
    );
    assert.throws(() => AutoTokenizer.fromPretrainedSync(`${dir}-nope`), /Tokenizer folder not found/);
  });

  it("lets special_tokens_map.json win, adds missing special tokens, and reads chat_template.jinja", () => {
    const dir = writeFolder({
      "tokenizer.json": bpeTokenizerJson("gpt2"),
      "tokenizer_config.json": { eos_token: "<|endoftext|>", pad_token: "<pad>" },
      "special_tokens_map.json": { eos_token: { content: "<|im_end|>", special: true } },
      "chat_template.jinja": "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
    });
    const tok = AutoTokenizer.fromPretrainedSync(dir);
    assert.equal(tok.eosTokenId, IM_END);
    assert.equal(tok.padTokenId, 39); // "<pad>" is not in the vocabulary: added after it, as transformers does
    assert.deepEqual(tok.encode("hello<pad>"), [HELLO, 39]);
    assert.equal(tok.decode([HELLO, 39], { skipSpecialTokens: true }), "hello");
    assert.equal(tok.applyChatTemplate([{ role: "user", content: "hi" }], { tokenize: false }), "hi<|im_end|>");
  });

  it("takes pad token and side from tokenizer.json's padding section when the config has none", () => {
    const json = {
      ...bpeTokenizerJson("gpt2"),
      padding: {
        strategy: "BatchLongest",
        direction: "Left",
        pad_id: ENDOFTEXT,
        pad_type_id: 0,
        pad_token: "<|endoftext|>",
      },
    };
    const tok = new PreTrainedTokenizer({ tokenizerJson: json });
    assert.equal(tok.padTokenId, ENDOFTEXT);
    assert.equal(tok.paddingSide, "left");
  });

  it("names the folder when tokenizer.json uses a component the package lacks", () => {
    const dir = writeFolder({
      "tokenizer.json": { ...bpeTokenizerJson("gpt2"), pre_tokenizer: { type: "UnicodeScripts" } },
    });
    assert.throws(
      () => AutoTokenizer.fromPretrainedSync(dir),
      /Cannot build the tokenizer of .*peft-ts-tok-.*UnicodeScripts/,
    );
  });

  it("builds from parsed files without a folder", () => {
    const tok = new PreTrainedTokenizer({ tokenizerJson: t5TokenizerJson(), tokenizerConfig: t5Config() });
    assert.deepEqual(tok.encode("hello"), [4, 1]);
  });
});
