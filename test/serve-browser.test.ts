/**
 * The chat page of `peft serve` in a real headless browser (Debian's chromium driven by puppeteer-core, no browser
 * download): two panes side by side, one on the base model and one on an adapter, stream their replies, which equal
 * what the API returns for the same requests. Skipped, saying why, when chromium is not installed.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer, { type Browser } from "puppeteer-core";
import { fromPretrained } from "../src/models/auto.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { PeftServer } from "../src/serve/server.js";
import { ServedModel } from "../src/serve/model.js";
import { bpeTokenizerJson, qwenConfig, writeFolder } from "./tokenizer-fixtures.js";

const ROOT = fileURLToPath(new URL("../../test/fixtures/mixed-batch/gpt2/", import.meta.url));
const CHROMIUM = [process.env["CHROMIUM_PATH"], "/usr/bin/chromium", "/usr/bin/chromium-browser"].find(
  (p) => p && existsSync(p),
);
const TEMPLATE = "{% for m in messages %}{{ m['content'] + '\\n' }}{% endfor %}";

describe("peft serve: the chat page in chromium", {
  skip: CHROMIUM ? false : "chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)",
}, () => {
  let server: PeftServer;
  let browser: Browser;
  let url = "";
  before(async () => {
    const model = new ServedModel(fromPretrained(join(ROOT, "model"), "causal-lm"));
    model.loadAdapter("left", join(ROOT, "adapters", "left"));
    const tokenizer = AutoTokenizer.fromPretrainedSync(
      writeFolder({
        "tokenizer.json": bpeTokenizerJson("qwen2"),
        "tokenizer_config.json": { ...qwenConfig(), chat_template: TEMPLATE },
      }),
    );
    server = new PeftServer(model, tokenizer, { modelName: "tiny", maxTokens: 12 });
    url = await server.listen(0);
    browser = await puppeteer.launch({
      executablePath: CHROMIUM!,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu"],
    });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it("two panes (base and adapter) stream replies equal to the API's", async () => {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll(".pane select option").length >= 4);
    const panes = await page.$$(".pane select");
    assert.equal(panes.length, 2);
    await panes[0]!.select("tiny");
    await panes[1]!.select("left");
    await page.type("#message", "hello");
    await page.click("#send button");
    await page.waitForFunction(() => document.querySelectorAll(".assistant[data-done=true]").length === 2, {
      timeout: 20000,
    });
    const replies = await page.$$eval(".pane .assistant", (els) => els.map((e) => e.textContent));
    for (const [i, model] of ["tiny", "left"].entries()) {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "hello" }] }),
      });
      assert.equal(replies[i], (await res.json()).choices[0].message.content, model);
    }
    assert.notEqual(replies[0], replies[1], "the adapter changes the reply");
  });
});
