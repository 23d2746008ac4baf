/**
 * `peft train --engine accelerate`: the hand-off folder's contents (always), the errors without Python, and, where
 * Python has torch, transformers, peft and accelerate (pyref locally; PEFT_TS_PYTHON elsewhere), real runs: one
 * process against peft-ts' own Trainer (same first-step loss), two processes (gloo on CPU) whose adapter loads back.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { PeftModel, configFromJson } from "../src/peft/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { cliWorkspace, type CliWorkspace } from "./cli-workspace.js";
import { LLAMA } from "./tiny-models.js";
import { IM_END } from "./tokenizer-fixtures.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const PYREF_ENV = "/work/shared/pyref/env.sh";

let ws: CliWorkspace;
before(() => (ws = cliWorkspace("peft-ts-accelerate-", { ...LLAMA, vocab_size: 40 })));
after(() => rmSync(ws.root, { recursive: true, force: true }));

const RECORDS = [
  { instruction: "say hello", output: "hello world!" },
  { instruction: "whisper", output: "hello" },
  { instruction: "say it twice", input: "hello", output: "hello hello" },
];
const LORA = { peft_type: "LORA", r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ["q_proj", "v_proj"] };

/** Write `<name>.json`: a LoRA run on the workspace's model, every example in one batch (so data order cannot matter). */
function config(name: string, args: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): string {
  writeFileSync(join(ws.root, "records.json"), JSON.stringify(RECORDS));
  writeFileSync(
    join(ws.root, `${name}.json`),
    JSON.stringify({
      model_name_or_path: "model",
      dataset: "records.json",
      max_length: 128,
      peft: LORA,
      training_args: {
        output_dir: `out-${name}`,
        learning_rate: 0.05,
        per_device_train_batch_size: 3,
        max_steps: 3,
        logging_steps: 1,
        save_strategy: "no",
        seed: 5,
        ...args,
      },
      ...extra,
    }),
  );
  return `${name}.json`;
}

/** Run `peft` in the workspace with `env` over the process's environment. */
function peft(args: string[], env: Record<string, string> = {}, timeout = 60_000) {
  return spawnSync(process.execPath, [CLI, ...args], {
    cwd: ws.root,
    encoding: "utf8",
    timeout,
    env: { ...process.env, ...env },
  });
}

function readJsonl(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The interpreter named by PEFT_TS_PYTHON, else python3, when it runs at all (the dry-run checks use it to compile the script). */
function plainPython(): string | null {
  const python = process.env["PEFT_TS_PYTHON"] ?? "python3";
  return spawnSync(python, ["-c", "pass"]).status === 0 ? python : null;
}

describe("peft train --engine accelerate --dry-run", () => {
  let dir: string;
  before(() => {
    // No Python is needed to write the folder: the interpreter named does not exist.
    const r = peft(["train", config("dry"), "--engine", "accelerate", "--dry-run", "--num-processes", "2"], {
      PEFT_TS_PYTHON: "/nonexistent/python3",
    });
    assert.equal(r.status, 0, r.stderr);
    dir = join(ws.root, "out-dry", "accelerate");
  });

  it("writes the script, the data, an accelerate config, README.txt and the tokenizer", () => {
    assert.deepEqual(readdirSync(dir).sort(), [
      "README.txt",
      "accelerate_config.yaml",
      "tokenizer",
      "train.jsonl",
      "train.py",
    ]);
    assert.deepEqual(readdirSync(join(dir, "tokenizer")).sort(), ["tokenizer.json", "tokenizer_config.json"]);
    const yaml = parseYaml(readFileSync(join(dir, "accelerate_config.yaml"), "utf8")) as Record<string, unknown>;
    assert.equal(yaml["num_processes"], 2);
    assert.equal(yaml["distributed_type"], "MULTI_GPU");
    assert.match(
      readFileSync(join(dir, "README.txt"), "utf8"),
      /accelerate launch --config_file accelerate_config\.yaml train\.py/,
    );
  });

  it("labels the examples as peft-ts does: the chat prompt -100, the response and eos learned", () => {
    const tok = AutoTokenizer.fromPretrainedSync(join(ws.root, "model"));
    const rows = readJsonl(join(dir, "train.jsonl"));
    assert.equal(rows.length, RECORDS.length);
    rows.forEach((row, i) => {
      const ids = row["input_ids"] as number[],
        labels = row["labels"] as number[];
      assert.deepEqual(
        row["attention_mask"],
        ids.map(() => 1),
      );
      assert.equal(labels.length, ids.length);
      // The learned part is the tail: the response's tokens and eos, the same ids as the input there.
      const first = labels.findIndex((l) => l !== -100);
      assert.ok(
        first > 0 && labels.slice(first).every((l, j) => l === ids[first + j]),
        `record ${i}: learned tokens are a copy of the input's tail`,
      );
      assert.equal(labels.at(-1), IM_END);
      assert.equal(tok.decode(labels.slice(first, -1)), RECORDS[i]!.output);
      // The unlearned prefix is exactly the chat template's rendering of the user turn, with the generation prompt.
      const prompt = tok.applyChatTemplate(
        [
          {
            role: "user",
            content: RECORDS[i]!.input ? `${RECORDS[i]!.instruction}\n${RECORDS[i]!.input}` : RECORDS[i]!.instruction,
          },
        ],
        { addGenerationPrompt: true, tokenize: false },
      ) as string;
      assert.deepEqual(ids.slice(0, first), tok.encode(prompt, { addSpecialTokens: false }));
    });
  });

  it("writes a script that compiles, with peft-ts' adapter config and the training arguments", {
    skip: plainPython() ? false : "no python3 to compile the script with",
  }, () => {
    const python = plainPython()!;
    const script = join(dir, "train.py");
    const compiled = spawnSync(python, ["-m", "py_compile", script], {
      encoding: "utf8",
      env: { ...process.env, PYTHONPYCACHEPREFIX: join(ws.root, "pycache") },
    });
    assert.equal(compiled.status, 0, compiled.stderr);
    // The constants, read back by Python's own parser.
    const read = spawnSync(
      python,
      [
        "-c",
        `import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read())
print(json.dumps({t.targets[0].id: ast.literal_eval(t.value) for t in tree.body
                  if isinstance(t, ast.Assign) and t.targets[0].id in ("MODEL", "PAD_TOKEN_ID", "ADAPTER_CONFIG", "TRAINING_ARGS", "TORCH_DTYPE")}))`,
        script,
      ],
      { encoding: "utf8" },
    );
    assert.equal(read.status, 0, read.stderr);
    const c = JSON.parse(read.stdout) as Record<string, Record<string, unknown>>;
    assert.equal(c["MODEL"], join(ws.root, "model"));
    assert.equal(c["TORCH_DTYPE"], "float32");
    assert.equal(c["PAD_TOKEN_ID"], 36);
    assert.deepEqual(c["ADAPTER_CONFIG"], {
      ...configFromJson({ ...LORA, task_type: "CAUSAL_LM" }, false),
      base_model_name_or_path: join(ws.root, "model"),
    });
    assert.deepEqual(c["TRAINING_ARGS"], {
      report_to: "none",
      output_dir: "out-dry",
      learning_rate: 0.05,
      per_device_train_batch_size: 3,
      max_steps: 3,
      logging_steps: 1,
      save_strategy: "no",
      seed: 5,
    });
  });

  it("text data: every token is learned, eos appended", () => {
    writeFileSync(join(ws.root, "text.json"), JSON.stringify([{ text: "hello world" }, { text: "hello" }]));
    const r = peft([
      "train",
      config("plain", {}, { dataset: "text.json", dataset_format: "text" }),
      "--engine",
      "accelerate",
      "--dry-run",
    ]);
    assert.equal(r.status, 0, r.stderr);
    const tok = AutoTokenizer.fromPretrainedSync(join(ws.root, "model"));
    const rows = readJsonl(join(ws.root, "out-plain", "accelerate", "train.jsonl"));
    assert.deepEqual(
      rows.map((row) => row["labels"]),
      rows.map((row) => row["input_ids"]),
    );
    assert.deepEqual(
      rows.map((row) => row["input_ids"]),
      ["hello world", "hello"].map((text) => [...tok.encode(text), IM_END]),
    );
  });

  it("replaces the folder as a whole and carries eval data and peft-ts' initial adapter when asked", () => {
    writeFileSync(join(dir, "stale.txt"), "from an earlier hand-off");
    const r = peft([
      "train",
      config("dry", {}, { eval_split: 1 }),
      "--engine",
      "accelerate",
      "--dry-run",
      "--same-init",
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync(join(dir, "stale.txt")));
    assert.equal(
      readJsonl(join(dir, "train.jsonl")).length + readJsonl(join(dir, "eval.jsonl")).length,
      RECORDS.length,
    );
    const init = loadSafetensors(join(dir, "initial_adapter", "adapter_model.safetensors"));
    assert.equal(init.size, 2 * 2 * 2, "lora_A and lora_B of q_proj and v_proj in 2 layers");
  });
});

describe("peft train --engine accelerate: options and environment errors", () => {
  it("names the missing interpreter or packages and how to install them", () => {
    const gone = peft(["train", config("env"), "--engine", "accelerate", "--python", "/nonexistent/python3"]);
    assert.equal(gone.status, 1);
    assert.match(gone.stderr, /cannot run the Python interpreter "\/nonexistent\/python3"/);
    assert.match(gone.stderr, /pip install torch transformers peft accelerate/);
    assert.ok(!existsSync(join(ws.root, "out-env")), "nothing is written when the run cannot start");
  });

  it("lists the packages a Python without them lacks", { skip: plainPython() ? false : "no python3" }, () => {
    // The interpreter isolated from site-packages and PYTHONPATH: the standard library only.
    const bare = join(ws.root, "bare-python");
    writeFileSync(bare, `#!/bin/sh\nexec ${plainPython()} -I -S "$@"\n`);
    chmodSync(bare, 0o755);
    const r = peft(["train", config("env"), "--engine", "accelerate", "--python", bare]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /lacks the Python package\(s\) torch, transformers, peft, accelerate/);
    assert.match(r.stderr, /pip install torch transformers peft accelerate/);
  });

  it("refuses accelerate-only options without --engine accelerate, unknown engines and launchers", () => {
    assert.match(
      peft(["train", config("opt"), "--num-processes", "2"]).stderr,
      /--num-processes is an option of --engine accelerate/,
    );
    assert.match(
      peft(["train", config("opt"), "--engine", "deepspeed"]).stderr,
      /--engine must be peft-ts or accelerate, got "deepspeed"/,
    );
    assert.match(
      peft(["train", config("opt"), "--engine", "accelerate", "--launcher", "mpirun", "--dry-run"]).stderr,
      /--launcher must be accelerate or torchrun/,
    );
    assert.match(
      peft(["train", config("opt"), "--engine", "accelerate", "--num-processes", "0", "--dry-run"]).stderr,
      /--num-processes/,
    );
    assert.match(
      peft(["train", config("opt"), "--engine", "accelerate", "--resume"]).stderr,
      /--resume is not available with --engine accelerate/,
    );
  });
});

/** Python with torch, transformers, peft and accelerate: PEFT_TS_PYTHON, else pyref's (when its env.sh exists), else python3; or why not. */
function pythonStack(): { python: string; env: Record<string, string> } | string {
  let env: Record<string, string> = {};
  let python = process.env["PEFT_TS_PYTHON"] ?? "python3";
  if (process.env["PEFT_TS_PYTHON"] === undefined && existsSync(PYREF_ENV)) {
    const dump = spawnSync("bash", ["-c", `source ${PYREF_ENV} >/dev/null && env -0`], { encoding: "utf8" });
    if (dump.status === 0) {
      env = Object.fromEntries(
        dump.stdout
          .split("\0")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
      python = env["PYREF_PYTHON"] ?? python;
    }
  }
  const probe = spawnSync(python, ["-c", "import torch, transformers, peft, accelerate"], {
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
  if (probe.error || probe.status !== 0) {
    return (
      `${python} cannot import torch, transformers, peft and accelerate ` +
      `(${probe.error?.message ?? probe.stderr.trim().split("\n").at(-1)}); set PEFT_TS_PYTHON ` +
      `to one that can`
    );
  }
  return { python, env };
}

const stack = pythonStack();

describe("peft train --engine accelerate with transformers' Trainer", {
  skip: typeof stack === "string" ? stack : false,
}, () => {
  const { python, env } = stack as { python: string; env: Record<string, string> };

  it("on one process starts from the same loss as peft-ts' own Trainer", (t) => {
    const ours = peft(["train", config("same")], {}, 120_000);
    assert.equal(ours.status, 0, ours.stderr);
    const handed = peft(
      [
        "train",
        config("same"),
        "--output-dir",
        "out-same-hf",
        "--engine",
        "accelerate",
        "--same-init",
        "--python",
        python,
      ],
      env,
      300_000,
    );
    assert.equal(handed.status, 0, handed.stdout + handed.stderr);
    const expected = readJsonl(join(ws.root, "out-same", "training_log.jsonl")).map((e) => e["loss"] as number);
    const got = readJsonl(join(ws.root, "out-same-hf", "step_losses.jsonl")).map((e) => e["loss"] as number);
    t.diagnostic(
      `first-step loss: peft-ts ${expected[0]} | transformers ${got[0]}; later steps: ` +
        `${expected.slice(1).join(", ")} | ${got.slice(1).join(", ")}`,
    );
    assert.equal(got.length, 3);
    // The same weights and batch: equal up to float32 rounding. After AdamW steps (divided by √v̂ + ε) the
    // difference may grow a little.
    assert.ok(Math.abs(got[0]! - expected[0]!) <= 1e-5 * expected[0]!, `first-step loss ${got[0]} vs ${expected[0]}`);
    got.slice(1).forEach((l, i) => {
      assert.ok(Math.abs(l - expected[i + 1]!) <= 1e-3 * expected[i + 1]!, `step ${i + 2}: ${l} vs ${expected[i + 1]}`);
    });
  });

  it("on two processes (gloo on CPU) trains an adapter that loads back into peft-ts and generates", (t) => {
    const start = performance.now();
    const r = peft(
      [
        "train",
        config("two", { max_steps: 4 }),
        "--engine",
        "accelerate",
        "--num-processes",
        "2",
        "--launcher",
        "torchrun",
        "--python",
        python,
      ],
      env,
      300_000,
    );
    const seconds = (performance.now() - start) / 1000;
    assert.equal(r.status, 0, r.stdout + r.stderr);
    t.diagnostic(`2-process run: ${seconds.toFixed(1)} s wall (peft train, hand-off written, torchrun, save)`);
    const out = join(ws.root, "out-two");
    const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")) as {
      global_step: number;
      log_history: Record<string, number>[];
    };
    assert.equal(state.global_step, 4);
    t.diagnostic(
      `transformers' train_runtime: ` +
        `${state.log_history.find((e) => e["train_runtime"] !== undefined)?.["train_runtime"]} s`,
    );

    const base = AutoModelForCausalLM.fromPretrained(join(ws.root, "model"));
    const model = PeftModel.fromPretrained(base, out);
    const saved = loadSafetensors(join(out, "adapter_model.safetensors"));
    const loaded = model.adapterStateDict();
    assert.deepEqual([...loaded.keys()].sort(), [...saved.keys()].sort());
    for (const [name, tensor] of saved) {
      assert.deepEqual(Array.from(loaded.get(name)!.dataSync()), Array.from(tensor.dataSync()), name);
      // lora_B starts at zero; after training it is not.
      if (name.includes("lora_B"))
        assert.ok(
          tensor.dataSync().some((v) => v !== 0),
          `${name} was trained`,
        );
    }
    const gen = peft(["generate", "--adapter", "out-two", "--prompt", "say hello", "--chat", "--max-new-tokens", "4"]);
    assert.equal(gen.status, 0, gen.stderr);
    const merged = peft(["merge", "--model", "model", "--adapter", "out-two", "--out", "merged-two"]);
    assert.equal(merged.status, 0, merged.stderr);
    assert.ok(existsSync(join(ws.root, "merged-two", "model.safetensors")));
  });
});
