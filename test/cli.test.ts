/**
 * The `peft` command end to end, as a child process on a tiny random Qwen2 model with the byte-level BPE fixture:
 * train → info → generate (with, without the adapter) → merge → generate from the merged model; resume from a
 * checkpoint; training_log.jsonl and loss.svg; one-line errors for bad inputs.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as T from "../src/tensor/index.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { bpeTokenizerJson, qwenConfig, ENDOFTEXT, IM_END } from "./tokenizer-fixtures.js";
import { lossCurveSvg, niceTicks } from "../src/cli/loss-plot.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

const MODEL_CONFIG = {
  model_type: "qwen2",
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  initializer_range: 0.2,
  bos_token_id: ENDOFTEXT,
  eos_token_id: IM_END,
  pad_token_id: ENDOFTEXT,
};

/** Instruction records in the fixture's alphabet (a-z, space, newline, "!"). */
const RECORDS = [
  { instruction: "say hello", output: "hello world!" },
  { instruction: "greet the world", output: "hello hello world" },
  { instruction: "shout", input: "loud", output: "world!" },
  { instruction: "whisper", output: "hello" },
];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

let root = "";

function peft(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run, what: string): Run {
  assert.equal(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stderr}`);
  return r;
}

/** A well-formed one-line error: "error: …" and "hint: …", exit code 1, no stack trace. */
function assertOneLineError(r: Run, pattern: RegExp, what: string): void {
  assert.equal(r.status, 1, `${what}: exit code ${r.status}\n${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("warning: "));
  assert.equal(lines.length, 2, `${what}: expected an error line and a hint line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^error: \S/, what);
  assert.match(lines[1]!, /^hint: \S/, what);
  assert.match(lines[0]!, pattern, what);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: stack trace printed`);
}

/** Minimal XML well-formedness: tags nest and close; returns the tags seen. */
function xmlTags(svg: string): { name: string; attrs: string }[] {
  const stack: string[] = [];
  const tags: { name: string; attrs: string }[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)([^>]*?)(\/?)>/g)) {
    const [, closing, name, attrs, selfClosing] = m as unknown as [string, string, string, string, string];
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else {
      tags.push({ name, attrs });
      if (!selfClosing) stack.push(name);
    }
  }
  assert.deepEqual(stack, [], "unclosed elements");
  assert.doesNotMatch(svg.replace(/<[^>]*>/g, ""), /[<>]/, "stray angle brackets in text");
  return tags;
}

function readJsonl(path: string): Record<string, number>[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, number>);
}

describe("peft CLI", () => {
  let modelDir = "",
    emptyDir = "",
    out = "",
    merged = "";
  let modelParams = 0;

  before(() => {
    root = mkdtempSync(join(tmpdir(), "peft-ts-cli-"));
    modelDir = join(root, "model");
    T.manualSeed(7);
    const model = AutoModelForCausalLM.fromConfig(MODEL_CONFIG);
    modelParams = model.parameters().reduce((n, p) => n + p.size, 0);
    model.savePretrained(modelDir);
    writeFileSync(join(modelDir, "tokenizer.json"), JSON.stringify(bpeTokenizerJson("qwen2")));
    writeFileSync(join(modelDir, "tokenizer_config.json"), JSON.stringify(qwenConfig()));
    writeFileSync(join(root, "train.jsonl"), `${RECORDS.map((r) => JSON.stringify(r)).join("\n")}\n`);
    writeFileSync(join(root, "eval.json"), JSON.stringify(RECORDS.slice(0, 2)));
    emptyDir = join(root, "empty");
    mkdirSync(emptyDir);
    out = join(root, "out");
    merged = join(root, "merged");
    writeFileSync(
      join(root, "config.json"),
      JSON.stringify(
        {
          model_name_or_path: "model",
          dataset: "train.jsonl",
          dataset_format: "instruction",
          eval_dataset: "eval.json",
          max_length: 64,
          system_prompt: "you are a bot",
          peft: {
            peft_type: "LORA",
            r: 4,
            lora_alpha: 8,
            target_modules: ["q_proj", "v_proj"],
            lora_dropout: 0,
            task_type: "CAUSAL_LM",
          },
          training_args: {
            output_dir: "out",
            learning_rate: 0.05,
            per_device_train_batch_size: 2,
            max_steps: 6,
            logging_steps: 1,
            save_steps: 3,
            eval_strategy: "steps",
            eval_steps: 3,
            lr_scheduler_type: "constant",
            seed: 3,
          },
        },
        null,
        2,
      ),
    );
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it(
    "train: prints the trainable parameters, shows progress, writes the adapter, tokenizer, " + "log and loss curve",
    () => {
      const r = ok(peft("train", "config.json"), "peft train");
      assert.match(r.stdout, /trainable params: 896 \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}/);
      assert.match(r.stderr, /step 6\/6 \| loss \d/, "progress lines on stderr");
      for (const f of [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_log.jsonl",
        "loss.svg",
        "checkpoint-3",
        "checkpoint-6",
      ]) {
        assert.ok(existsSync(join(out, f)), `${f} in output_dir`);
      }
      const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8")) as Record<string, unknown>;
      assert.equal(config["peft_type"], "LORA");
      assert.equal(config["r"], 4);

      const log = readJsonl(join(out, "training_log.jsonl"));
      const losses = log.filter((e) => e["loss"] !== undefined);
      assert.deepEqual(
        losses.map((e) => e["step"]),
        [1, 2, 3, 4, 5, 6],
      );
      for (const e of losses)
        assert.ok(Number.isFinite(e["loss"]) && Number.isFinite(e["learning_rate"]), JSON.stringify(e));
      assert.deepEqual(
        log.filter((e) => e["eval_loss"] !== undefined).map((e) => e["step"]),
        [3, 6],
      );

      const svg = readFileSync(join(out, "loss.svg"), "utf8");
      assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      const tags = xmlTags(svg);
      const lines = tags.filter((t) => t.name === "polyline");
      assert.equal(lines.length, 1);
      const points = /points="([^"]*)"/.exec(lines[0]!.attrs)![1]!.trim().split(/\s+/);
      assert.equal(points.length, losses.length, "one polyline point per logged loss");
      for (const p of points) assert.ok(p.split(",").map(Number).every(Number.isFinite), `point ${p}`);
      assert.equal(
        tags.filter((t) => t.name === "circle" && t.attrs.includes("eval-loss")).length,
        2,
        "eval loss points",
      );
    },
  );

  it("info describes the adapter and the model, as text and as JSON", () => {
    const text = ok(peft("info", "out"), "peft info adapter").stdout;
    assert.match(text, /adapter/);
    assert.match(text, /peft_type: +LORA/);
    assert.match(text, /q_proj/);
    const a = JSON.parse(ok(peft("info", "out", "--json"), "peft info --json").stdout) as Record<string, unknown>;
    assert.equal(a["kind"], "adapter");
    assert.equal(a["peft_type"], "LORA");
    assert.equal(a["task_type"], "CAUSAL_LM");
    assert.equal(a["base_model_name_or_path"], "model");
    assert.deepEqual([...(a["target_modules"] as string[])].sort(), ["q_proj", "v_proj"]);
    assert.equal((a["fields"] as Record<string, unknown>)["r"], 4);
    assert.equal((a["fields"] as Record<string, unknown>)["lora_alpha"], 8);
    // q_proj 32→32 and v_proj 32→16 with r = 4 in each of 2 layers: 2 · (4·32 + 32·4 + 4·32 + 16·4) = 896.
    assert.equal(a["parameters"], 896);
    assert.equal(a["tensors"], 8);

    const m = JSON.parse(ok(peft("info", "model", "--json"), "peft info model").stdout) as Record<string, unknown>;
    assert.equal(m["kind"], "model");
    assert.equal(m["model_type"], "qwen2");
    assert.deepEqual(m["architectures"], ["Qwen2ForCausalLM"]);
    assert.equal(m["parameters"], modelParams);
    assert.equal(m["vocab_size"], 40);
    assert.equal(m["num_layers"], 2);
    assert.deepEqual(m["dtypes"], { F32: modelParams });
    const mt = ok(peft("info", "model"), "peft info model text").stdout;
    assert.match(mt, /model_type: +qwen2/);
    assert.match(mt, new RegExp(`parameters: +${modelParams.toLocaleString("en-US")}`));
  });

  const prompts = ["--prompt", "say hello", "--prompt", "shout\nloud"];
  const gen = ["--chat", "--system", "you are a bot", "--max-new-tokens", "6", "--json"];
  let withAdapter: { prompt: string; output: string }[] = [];

  it("generate: adapter on and off; off equals the base model", () => {
    withAdapter = JSON.parse(
      ok(peft("generate", "--model", "model", "--adapter", "out", ...prompts, ...gen), "generate with adapter").stdout,
    );
    assert.equal(withAdapter.length, 2);
    assert.deepEqual(
      withAdapter.map((o) => o.prompt),
      ["say hello", "shout\nloud"],
    );
    const disabled = JSON.parse(
      ok(
        peft("generate", "--model", "model", "--adapter", "out", "--no-adapter", ...prompts, ...gen),
        "generate --no-adapter",
      ).stdout,
    );
    const base = JSON.parse(ok(peft("generate", "--model", "model", ...prompts, ...gen), "generate base").stdout);
    assert.deepEqual(disabled, base);
    // Without --json, one prompt prints just its continuation.
    const single = ok(
      peft(
        "generate",
        "--model",
        "model",
        "--adapter",
        "out",
        "--prompt",
        "say hello",
        "--chat",
        "--system",
        "you are a bot",
        "--max-new-tokens",
        "6",
      ),
      "single prompt",
    ).stdout;
    assert.equal(single, `${withAdapter[0]!.output}\n`);
    // The adapter's base model is found from adapter_config.json when --model is left out.
    const auto = JSON.parse(
      ok(peft("generate", "--adapter", "out", ...prompts, ...gen), "generate --adapter only").stdout,
    );
    assert.deepEqual(auto, withAdapter);
  });

  it("generate: seeded sampling is reproducible", () => {
    const args = [
      "generate",
      "--model",
      "model",
      "--adapter",
      "out",
      ...prompts,
      ...gen,
      "--do-sample",
      "--temperature",
      "1.5",
      "--top-k",
      "20",
      "--top-p",
      "0.95",
      "--seed",
      "11",
    ];
    assert.deepEqual(
      JSON.parse(ok(peft(...args), "sample 1").stdout),
      JSON.parse(ok(peft(...args), "sample 2").stdout),
    );
  });

  it("merge: a plain checkpoint whose greedy outputs equal the adapter's", () => {
    const r = ok(peft("merge", "--model", "model", "--adapter", "out", "--out", "merged"), "peft merge");
    assert.match(r.stdout, /saved to merged/);
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
      assert.ok(existsSync(join(merged, f)), f);
    assert.ok(!existsSync(join(merged, "adapter_config.json")));
    const m = JSON.parse(ok(peft("info", "merged", "--json"), "info merged").stdout) as Record<string, unknown>;
    assert.equal(m["kind"], "model");
    assert.equal(m["parameters"], modelParams);
    const fromMerged = JSON.parse(
      ok(peft("generate", "--model", "merged", ...prompts, ...gen), "generate merged").stdout,
    );
    assert.deepEqual(fromMerged, withAdapter);
  });

  it("generate --dtype bfloat16: half weights give the float32 run's output on the same rounded weights", () => {
    ok(peft("merge", "--model", "model", "--adapter", "out", "--out", "merged-bf16", "--dtype", "bfloat16"), "merge");
    // Loaded by default, the bfloat16 file is widened to float32; with --dtype bfloat16 the weights stay half.
    const widened = JSON.parse(ok(peft("generate", "--model", "merged-bf16", ...prompts, ...gen), "float32").stdout);
    const half = JSON.parse(
      ok(peft("generate", "--model", "merged-bf16", "--dtype", "bfloat16", ...prompts, ...gen), "bfloat16").stdout,
    );
    assert.deepEqual(half, widened);
    assertOneLineError(
      peft("generate", "--model", "model", "--prompt", "x", "--dtype", "half"),
      /--dtype must be one of auto, float32, bfloat16, float16, got "half"/,
      "bad dtype",
    );
  });

  it("generate --quantization bitsandbytes: the base model in 4-bit NF4, with the adapter found from its config", () => {
    const quantized = JSON.parse(
      ok(peft("generate", "--adapter", "out", "--quantization", "bitsandbytes", ...prompts, ...gen), "nf4").stdout,
    ) as { prompt: string; output: string }[];
    assert.deepEqual(
      quantized.map((o) => o.prompt),
      ["say hello", "shout\nloud"],
    );
    assert.ok(quantized.every((o) => typeof o.output === "string"));
    assertOneLineError(
      peft("generate", "--model", "model", "--prompt", "x", "--quantization", "int4"),
      /--quantization must be bitsandbytes, got "int4"/,
      "bad quantization",
    );
  });

  it("train --resume continues from the latest checkpoint without repeating logged steps (YAML config)", () => {
    writeFileSync(
      join(root, "resume.yaml"),
      `${[
        "# the same run, written as YAML",
        "model_name_or_path: model",
        "dataset: train.jsonl",
        "max_length: 64",
        "peft:",
        "  peft_type: LORA",
        "  r: 2",
        "  target_modules: [q_proj]",
        "training_args:",
        "  output_dir: out-resume",
        "  learning_rate: 0.01",
        "  per_device_train_batch_size: 2",
        "  max_steps: 4",
        "  logging_steps: 1",
        "  save_steps: 2",
        "  lr_scheduler_type: constant",
      ].join("\n")}\n`,
    );
    ok(peft("train", "resume.yaml", "--max-steps", "2"), "first part");
    assert.deepEqual(
      readJsonl(join(root, "out-resume", "training_log.jsonl")).map((e) => e["step"]),
      [1, 2],
    );
    const r = ok(peft("train", "resume.yaml", "--resume"), "resumed part");
    assert.match(r.stderr, /resuming at step 2/);
    assert.deepEqual(
      readJsonl(join(root, "out-resume", "training_log.jsonl")).map((e) => e["step"]),
      [1, 2, 3, 4],
    );
    const svg = readFileSync(join(root, "out-resume", "loss.svg"), "utf8");
    assert.equal(/points="([^"]*)"/.exec(svg)![1]!.trim().split(/\s+/).length, 4);
  });

  it("bad inputs give a one-line error, a hint and exit code 1 (a stack trace only with --debug)", () => {
    const config = JSON.parse(readFileSync(join(root, "config.json"), "utf8")) as Record<string, unknown>;
    const variant = (name: string, change: (c: Record<string, unknown>) => void) => {
      const c = structuredClone(config);
      change(c);
      writeFileSync(join(root, name), JSON.stringify(c));
      return name;
    };
    assertOneLineError(peft("train", "nope.json"), /config file nope\.json does not exist/, "missing config file");
    assertOneLineError(
      peft(
        "train",
        variant("c1.json", (c) => delete c["model_name_or_path"]),
      ),
      /missing required field "model_name_or_path"/,
      "missing model field",
    );
    assertOneLineError(
      peft(
        "train",
        variant("c2.json", (c) => (c["dataset_format"] = "instructions")),
      ),
      /unknown dataset_format "instructions" \(did you mean "instruction"\?\)/,
      "bad format",
    );
    assertOneLineError(
      peft(
        "train",
        variant("c3.json", (c) => (c["dataset"] = "missing.jsonl")),
      ),
      /dataset: file missing\.jsonl does not exist/,
      "missing dataset",
    );
    assertOneLineError(
      peft(
        "train",
        variant("c4.json", (c) => (c["model_name_or_path"] = "empty")),
      ),
      /empty has no config\.json/,
      "model folder without config.json",
    );
    assertOneLineError(
      peft(
        "train",
        variant("c5.json", (c) => (c["peft"] = { peft_type: "NOPE" })),
      ),
      /peft_type "NOPE" is not supported/,
      "unknown method",
    );
    assertOneLineError(
      peft(
        "train",
        variant("c6.json", (c) => (c["datset"] = "x")),
      ),
      /unknown field "datset" \(did you mean "dataset"\?\)/,
      "typo in a field",
    );
    assertOneLineError(
      peft(
        "train",
        variant("c7.json", (c) => delete c["training_args"]),
      ),
      /missing required field "training_args"/,
      "no training_args",
    );
    writeFileSync(join(root, "broken.yaml"), "model_name_or_path: [unclosed\n");
    assertOneLineError(peft("train", "broken.yaml"), /broken\.yaml is not valid YAML/, "broken YAML");
    assertOneLineError(peft("generate", "--model", "model", "--bogus"), /Unknown option '--bogus'/, "unknown option");
    assertOneLineError(
      peft("generate", "--model", "out", "--prompt", "x"),
      /is an adapter folder, not a model folder/,
      "adapter given as model",
    );
    assertOneLineError(peft("generate", "--model", "model"), /no prompts given/, "no prompts");
    assertOneLineError(
      peft("generate", "--model", "model", "--prompt", "x", "--max-new-tokens", "many"),
      /--max-new-tokens expects a whole number/,
      "bad number",
    );
    assertOneLineError(peft("merge", "--model", "model", "--adapter", "out"), /needs --out/, "merge without --out");
    assertOneLineError(peft("info", "does-not-exist"), /does-not-exist does not exist/, "info on a missing folder");
    assertOneLineError(
      peft("info", "empty"),
      /has neither config\.json nor adapter_config\.json/,
      "info on an empty folder",
    );
    assertOneLineError(peft("trian"), /unknown command "trian" \(did you mean "train"\?\)/, "unknown command");
    const debug = peft("info", "does-not-exist", "--debug");
    assert.equal(debug.status, 1);
    assert.match(debug.stderr, /^\s+at /m, "--debug prints the stack");
  });

  it("help and version", () => {
    assert.match(ok(peft("--help"), "help").stdout, /commands:/);
    assert.match(ok(peft("train", "--help"), "train help").stdout, /dataset_format/);
    assert.match(ok(peft("--version"), "version").stdout, /^\d+\.\d+\.\d+/);
    assert.equal(peft().status, 1);
  });
});

describe("loss plot", () => {
  it("round ticks cover the range", () => {
    assert.deepEqual(niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
    assert.deepEqual(niceTicks(1.23, 2.9, 4), [1, 1.5, 2, 2.5, 3]);
    assert.deepEqual(niceTicks(3, 3, 5).length > 1, true);
  });

  it("one polyline point per training loss, eval losses as points, an empty history still draws", () => {
    const svg = lossCurveSvg([
      { loss: 2, step: 1 },
      { loss: 1.5, step: 2 },
      { eval_loss: 1.7, step: 2 },
      { loss: 1.2, step: 3 },
      { train_loss: 1.5, step: 3 },
    ]);
    const tags = xmlTags(svg);
    assert.equal(/points="([^"]*)"/.exec(svg)![1]!.split(" ").length, 3);
    assert.equal(tags.filter((t) => t.attrs.includes("eval-loss")).length, 1);
    const empty = lossCurveSvg([]);
    xmlTags(empty);
    assert.match(empty, /no losses logged/);
    assert.doesNotMatch(empty, /NaN/);
    assert.doesNotMatch(svg, /NaN/);
  });
});
