/**
 * The README's TypeScript snippets are checked examples: each ```ts block stands verbatim in a file under
 * examples/readme/ (compiled with the rest of the project by `npm test`), and every such file runs to completion
 * on the shipped tiny model.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const sources = join(root, "examples", "readme");
const examples = readdirSync(sources).filter((f) => f.endsWith(".ts")).sort();
const texts = new Map(examples.map((f) => [f, readFileSync(join(sources, f), "utf8")]));

/** The ```ts blocks of a markdown file, with the line each starts on. */
function tsBlocks(markdown: string): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```ts") continue;
    const end = lines.indexOf("```", i + 1);
    out.push({ line: i + 1, code: lines.slice(i + 1, end).join("\n") });
    i = end;
  }
  return out;
}

describe("README snippets", () => {
  const blocks = tsBlocks(readFileSync(join(root, "README.md"), "utf8"));

  it("every ```ts block of the README stands verbatim in an example under examples/readme/", () => {
    assert.ok(blocks.length >= 5, `found ${blocks.length} blocks`);
    for (const { line, code } of blocks) {
      const home = examples.find((f) => texts.get(f)!.includes(code));
      assert.ok(home, `README.md:${line}: this snippet is in no file of examples/readme/; put it in one so that it is compiled and run:\n${code}`);
    }
  });

  const cwd = mkdtempSync(join(tmpdir(), "peft-ts-readme-"));
  symlinkSync(join(root, "assets"), join(cwd, "assets"));
  after(() => rmSync(cwd, { recursive: true, force: true }));
  for (const file of examples) {
    it(`examples/readme/${file} runs`, () => {
      const script = join(root, "dist", "examples", "readme", file.replace(/\.ts$/, ".js"));
      execFileSync(process.execPath, [script], { cwd, stdio: "pipe", timeout: 120_000 });
    });
  }
});
