/**
 * IncrementalText: the text of generated ids, decoded a few ids at a time, against decoding the whole list, with a
 * real byte-level BPE tokenizer (multi-byte characters split over several ids) and a Metaspace one (leading spaces).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { IncrementalText, StopStrings } from "../src/generation/index.js";
import { AutoTokenizer, PreTrainedTokenizer } from "../src/tokenizers/index.js";
import { t5Config, t5TokenizerJson } from "./tokenizer-fixtures.js";

const TINY_BARD = join(fileURLToPath(new URL("../..", import.meta.url)), "assets", "tiny-bard");

/** Feeds ids one at a time; checks every step against the whole decode and returns the longest window decoded. */
function follow(decode: (ids: number[]) => string, ids: number[]): number {
  let longest = 0;
  const text = new IncrementalText((window) => {
    longest = Math.max(longest, window.length);
    return decode(window);
  });
  for (let n = 1; n <= ids.length; n++) {
    const got = text.update(ids.slice(0, n));
    const whole = decode(ids.slice(0, n));
    assert.ok(
      whole.startsWith(got),
      `after ${n} ids: ${JSON.stringify(got)} is not a prefix of ${JSON.stringify(whole)}`,
    );
    // Behind the whole decode by at most its incomplete characters.
    if (!whole.endsWith("\uFFFD")) assert.equal(got, whole, `after ${n} ids`);
  }
  return longest;
}

describe("IncrementalText", () => {
  it("byte-level BPE: equals the whole decode whenever its characters are complete, decoding a few ids a step", () => {
    const tok = AutoTokenizer.fromPretrainedSync(TINY_BARD);
    const ids = tok.encode("Once upon a time, héllo wörld — 你好 🎉 the end.\nNew line", { addSpecialTokens: false });
    assert.ok(
      ids.some((_, n) => tok.decode(ids.slice(0, n + 1)).endsWith("\uFFFD")),
      "some characters span several ids",
    );
    const longest = follow((w) => tok.decode(w), ids);
    assert.ok(longest <= 8, `windows stay short (longest ${longest} of ${ids.length} ids)`);
  });

  it("Metaspace (SentencePiece-style): a window's first word keeps the space it has in the whole text", () => {
    const tok = new PreTrainedTokenizer({ tokenizerJson: t5TokenizerJson(), tokenizerConfig: t5Config() });
    const ids = tok.encode("hello world hellos wor ld.", { addSpecialTokens: false });
    const longest = follow((w) => tok.decode(w), ids);
    assert.ok(longest <= 3, `windows stay short (longest ${longest})`);
  });

  it("stop strings are found across ids as the text grows", () => {
    const tok = AutoTokenizer.fromPretrainedSync(TINY_BARD);
    const ids = tok.encode("say 你好 twice", { addSpecialTokens: false });
    const stops = new StopStrings(["好 tw"], tok, 1);
    const hitAt = ids.findIndex((_, n) => stops.hit(0, ids.slice(0, n + 1)));
    const whole = (n: number) => tok.decode(ids.slice(0, n + 1));
    assert.ok(hitAt >= 0 && whole(hitAt).includes("好 tw") && !whole(hitAt - 1).includes("好 tw"));
  });
});
