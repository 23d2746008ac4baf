/**
 * kill -9 during saves: a child process (kill-child.ts) repeats `peft train`'s end-of-run save (adapter folder swapped
 * whole, tokenizer files, trainer_state.json, loss.svg; checkpoint-1 beside them) and is killed at random moments.
 * After every kill the output folder loads, its adapter_config.json matches its weights (never two saves mixed), no
 * file is empty, and nothing is lost; the next save removes the temporaries the killed one left.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { PeftModel } from "../src/peft/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { parseJson } from "../src/io/json.js";
import { rng, tempDirs } from "./helpers.js";
import { TRAINER_GPT2 } from "./tiny-models.js";
import { bpeTokenizerJson, qwenConfig } from "./tokenizer-fixtures.js";

const CHILD = fileURLToPath(new URL("./kill-child.js", import.meta.url));
const dirs = tempDirs("peft-ts-kill-");
after(() => dirs.removeAll());

/** Files under `dir` (recursively), with their sizes. */
function files(dir: string): [string, number][] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile())
    .map((f) => [f, statSync(f).size]);
}

/** Start the child, wait for its first save, kill -9 it `delayMs` later; resolves with the number of saves it reported. */
function killDuringSaves(args: string[], delayMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let saves = 0,
      stderr = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      if (saves === 0) setTimeout(() => child.kill("SIGKILL"), delayMs);
      saves += d.toString().split("saved").length - 1;
    });
    child.on("exit", (code, signal) => {
      clearTimeout(guard);
      if (signal === "SIGKILL" && saves > 0) resolve(saves);
      else reject(new Error(`child ended with ${code ?? signal} after ${saves} saves:\n${stderr}`));
    });
  });
}

describe("kill -9 during the end-of-run save", () => {
  it(
    "the output folder always loads, its config matches its weights, no empty files, " + "temporaries cleaned",
    async () => {
      const root = dirs.make();
      const tok = join(root, "tok"),
        out = join(root, "out");
      spawnSync("mkdir", [tok]);
      writeFileSync(join(tok, "tokenizer.json"), JSON.stringify(bpeTokenizerJson("qwen2")));
      writeFileSync(join(tok, "tokenizer_config.json"), JSON.stringify(qwenConfig()));
      const base = AutoModelForCausalLM.fromConfig(TRAINER_GPT2);
      const r = rng(2026);
      let midSwap = 0,
        saves = 0;

      const check = (what: string) => {
        if (!existsSync(out)) {
          // Killed between the two renames of the swap: the previous folder waits beside it, whole, for the next save.
          assert.ok(
            readdirSync(root).some((n) => n.startsWith(".out.old-")),
            `${what}: out is missing and no previous folder waits`,
          );
          midSwap++;
          return;
        }
        const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8")) as { lora_alpha: number };
        const weights = loadSafetensors(join(out, "adapter_model.safetensors"));
        for (const [name, t] of weights) {
          assert.ok(
            t.dataSync().every((v) => v === config.lora_alpha / 8),
            `${what}: ${name} is not from the save of lora_alpha ${config.lora_alpha}`,
          );
          t.dispose();
        }
        PeftModel.fromPretrained(base, out).unload();
        for (const f of ["tokenizer.json", "tokenizer_config.json"])
          assert.deepEqual(readFileSync(join(out, f)), readFileSync(join(tok, f)), `${what}: ${f}`);
        assert.equal(
          (parseJson(readFileSync(join(out, "trainer_state.json"), "utf8")) as { global_step: number }).global_step,
          1,
          what,
        );
        assert.match(readFileSync(join(out, "loss.svg"), "utf8"), /<\/svg>\s*$/, `${what}: loss.svg`);
        // checkpoint-1 (a folder) sits in out, or, right after a swap, still in the previous folder waiting to be moved over.
        const inOld = readdirSync(root).some(
          (n) => n.startsWith(".out.old-") && existsSync(join(root, n, "checkpoint-1")),
        );
        assert.ok(
          existsSync(join(out, "checkpoint-1", "adapter_model.safetensors")) || inOld,
          `${what}: checkpoint-1 lost`,
        );
        for (const [f, size] of files(out))
          if (!f.split("/").some((part) => part.startsWith("."))) assert.ok(size > 0, `${what}: ${f} is empty`);
      };

      for (let kill = 0; kill < 15; kill++) {
        saves += await killDuringSaves([out, tok, String(kill)], Math.floor(r() * 40));
        check(`after kill ${kill + 1}`);
      }
      assert.ok(saves >= 15, `${saves} saves`);
      const last = spawnSync(process.execPath, [CHILD, out, tok, "99", "once"], { encoding: "utf8", timeout: 60_000 });
      assert.equal(last.status, 0, last.stderr);
      check("after a full save");
      assert.ok(existsSync(join(out, "checkpoint-1")));
      const leftovers = [...readdirSync(root), ...readdirSync(out)].filter((n) => n.startsWith("."));
      assert.deepEqual(leftovers, [], "the last save removed every temporary");
      process.stdout.write(`# ${saves} saves, 15 kills (${midSwap} between the two renames of a swap)\n`);
    },
  );
});
