/**
 * The README's TypeScript snippets are checked examples: each ```ts block stands verbatim in a file under
 * examples/readme/ (compiled with the rest of the project by `npm test`), and every such file runs to completion
 * on the shipped tiny model; Hub ids resolve against a local mock Hub (test/hub-server.ts) serving that model and an
 * adapter of it.
 */
import { describe, it, after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { LoraConfig, configFromJson, getPeftModel } from "../src/peft/index.js";
import { parseTrainConfig } from "../src/cli/train-config.js";
import { TrainingArguments } from "../src/train/index.js";
import { startMockHub, type MockHub } from "./hub-server.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const sources = join(root, "examples", "readme");
const examples = readdirSync(sources)
  .filter((f) => f.endsWith(".ts"))
  .sort();
const texts = new Map(examples.map((f) => [f, readFileSync(join(sources, f), "utf8")]));

/** The ```<lang> blocks of a markdown file, with the line each starts on. */
function codeBlocks(markdown: string, lang = "ts"): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== `\`\`\`${lang}`) continue;
    const end = lines.indexOf("```", i + 1);
    out.push({ line: i + 1, code: lines.slice(i + 1, end).join("\n") });
    i = end;
  }
  return out;
}

describe("README snippets", () => {
  const blocks = codeBlocks(readFileSync(join(root, "README.md"), "utf8"));

  it("every ```json block of the README is a peft train config of examples/configs/ that parses", () => {
    const configs = join(root, "examples", "configs");
    const files = readdirSync(configs).map((f) => [f, readFileSync(join(configs, f), "utf8")] as const);
    const json = codeBlocks(readFileSync(join(root, "README.md"), "utf8"), "json");
    assert.ok(json.length >= 1);
    for (const { line, code } of json) {
      const home = files.find(([, text]) => text.trim() === code.trim());
      assert.ok(home, `README.md:${line}: this config is in no file of examples/configs/`);
      const cfg = parseTrainConfig(JSON.parse(code) as Record<string, unknown>, home[0]);
      TrainingArguments(cfg.training_args as Partial<TrainingArguments>);
      configFromJson(cfg.peft, false);
    }
  });

  it("every ```ts block of the README stands verbatim in an example under examples/readme/", () => {
    assert.ok(blocks.length >= 5, `found ${blocks.length} blocks`);
    for (const { line, code } of blocks) {
      const home = examples.find((f) => texts.get(f)!.includes(code));
      assert.ok(
        home,
        `README.md:${line}: this snippet is in no file of examples/readme/; put it in one so that ` +
          `it is compiled and run:\n${code}`,
      );
    }
  });

  const cwd = mkdtempSync(join(tmpdir(), "peft-ts-readme-"));
  symlinkSync(join(root, "assets"), join(cwd, "assets"));
  let hub: MockHub;
  before(async () => {
    const folder = (dir: string, names: string[]) =>
      Object.fromEntries(names.map((n) => [n, new Uint8Array(readFileSync(join(dir, n)))]));
    const model = join(root, "assets", "tiny-bard");
    const adapter = join(cwd, "adapter");
    const peft = getPeftModel(
      AutoModelForCausalLM.fromPretrained(model),
      LoraConfig({ task_type: "CAUSAL_LM", r: 8, target_modules: ["q_proj", "v_proj"] }),
    );
    peft.peftConfig["default"]!.base_model_name_or_path = "Qwen/Qwen2.5-0.5B-Instruct";
    peft.savePretrained(adapter);
    hub = await startMockHub([
      {
        id: "Qwen/Qwen2.5-0.5B-Instruct",
        commits: [
          {
            refs: ["main"],
            files: folder(model, ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]),
          },
        ],
      },
      {
        id: "someone/qwen2.5-lora",
        commits: [{ refs: ["main"], files: folder(adapter, ["adapter_config.json", "adapter_model.safetensors"]) }],
      },
    ]);
  });
  after(async () => {
    await hub.stop();
    rmSync(cwd, { recursive: true, force: true });
  });
  for (const file of examples) {
    it(`examples/readme/${file} runs`, () => {
      const script = join(root, "dist", "examples", "readme", file.replace(/\.ts$/, ".js"));
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        HF_ENDPOINT: hub.url,
        HF_HOME: join(cwd, "hf-home"),
        HF_TOKEN: "hf_readme",
        HF_HUB_DISABLE_PROGRESS_BARS: "1",
      };
      for (const k of ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
        delete env[k];
      execFileSync(process.execPath, [script], { cwd, env, stdio: "pipe", timeout: 120_000 });
    });
  }
});
