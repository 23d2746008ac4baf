/**
 * Trainer robustness: non-finite numbers in the logs and checkpoints, batches with nothing to learn, divergence
 * reports, and resume refusing another run's checkpoint.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import {
  DataCollatorForSeq2Seq,
  Dataset,
  Trainer,
  TrainingArguments,
  listCheckpoints,
  type TrainOutput,
} from "../src/train/index.js";
import { CheckpointError } from "../src/errors.js";
import { parseJson } from "../src/io/json.js";
import { JsonlLogCallback } from "../src/train/progress.js";
import { tempDirs } from "./helpers.js";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { LoraConfig, getPeftModel, type PeftModel } from "../src/peft/index.js";
import { TRAINER_GPT2, patternDataset, tinyPeft } from "./tiny-models.js";

const collator = DataCollatorForSeq2Seq({ padTokenId: 0 });
const dirs = tempDirs("peft-ts-trainer-robust-");
after(() => dirs.removeAll());

type LogEntries = Record<string, number>[];

/** The tiny LoRA GPT-2 with one NaN in its (frozen, tied) embedding matrix: every logit row has a NaN, so every loss is NaN. */
function poisonedPeft(seed: number) {
  const model = tinyPeft(seed);
  const wte = model.namedParameters().find(([n]) => n.endsWith("wte.weight"))![1];
  const values = wte.dataSync() as Float32Array;
  values[0] = Number.NaN;
  wte.copy_(T.tensor(values, [...wte.shape]));
  return model;
}

/** Run `fn`, collecting the messages of the warnings it emits (synchronously, instead of printing them). */
function captureWarnings(fn: () => void): string[] {
  const seen: string[] = [];
  const original = process.emitWarning;
  process.emitWarning = ((w: string | Error) =>
    void seen.push(typeof w === "string" ? w : w.message)) as typeof process.emitWarning;
  try {
    fn();
  } finally {
    process.emitWarning = original;
  }
  return seen;
}

function savedState(checkpoint: string): { log_history: LogEntries; global_step: number } {
  return parseJson(readFileSync(join(checkpoint, "trainer_state.json"), "utf8")) as {
    log_history: LogEntries;
    global_step: number;
  };
}

describe("Trainer: non-finite numbers", () => {
  it("max_grad_norm 0 (clipping off) logs the true gradient norm and saves checkpoints", () => {
    const data = patternDataset(4);
    const dir = dirs.make();
    const args = TrainingArguments({
      output_dir: dir,
      learning_rate: 1e-2,
      per_device_train_batch_size: 4,
      max_steps: 1,
      logging_steps: 1,
      save_steps: 1,
      max_grad_norm: 0,
    });
    new Trainer({ model: tinyPeft(4), args, trainDataset: data, dataCollator: collator }).train();
    const logged = savedState(listCheckpoints(dir)[0]!).log_history[0]!;

    // The same first step by hand: one batch of all four (equal-length) rows, the norm summed in float64.
    const model = tinyPeft(4).train();
    const batch = collator(data.examples);
    T.tidy(() => (model.forward({ ...batch }) as ModelOutput).loss!.backward());
    let squares = 0;
    for (const [, p] of model.namedParameters())
      if (p.requiresGrad) for (const g of p.grad!.dataSync()) squares += g * g;
    const norm = Math.sqrt(squares);
    assert.ok(norm > 0);
    assert.ok(Math.abs(logged["grad_norm"]! - norm) <= 1e-5 * norm, `grad_norm ${logged["grad_norm"]} vs ${norm}`);
  });

  it("a NaN loss does not abort the run: training_log.jsonl holds NaN in Python's spelling and reads back", () => {
    const dir = dirs.make();
    const model = poisonedPeft(5);
    const log = new JsonlLogCallback(join(dir, "training_log.jsonl"));
    const args = TrainingArguments({
      output_dir: dir,
      learning_rate: 1e-2,
      per_device_train_batch_size: 4,
      max_steps: 2,
      logging_steps: 1,
      save_steps: 1,
    });
    const warnings = captureWarnings(() =>
      new Trainer({ model, args, trainDataset: patternDataset(8), dataCollator: collator, callbacks: [log] }).train(),
    );
    const lines = readFileSync(log.path, "utf8").trim().split("\n");
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.match(line, /"loss":NaN,"grad_norm":NaN,/);
      assert.ok(Number.isNaN((parseJson(line) as Record<string, number>)["loss"]));
    }
    assert.deepEqual(listCheckpoints(dir), [], "no checkpoint of NaN weights");
    assert.equal(warnings.filter((w) => /checkpoint-\d not written: NaN or infinite values/.test(w)).length, 2);
  });

  it(
    "a batch whose labels are all -100 is skipped: no NaN in the logs, and the same weights as " + "a run without it",
    () => {
      const [good] = patternDataset(1).examples;
      const ignored = { input_ids: good!["input_ids"], labels: (good!["input_ids"] as number[]).map(() => -100) };
      const run = (examples: Dataset["examples"]) => {
        const model = tinyPeft(6);
        const args = TrainingArguments({
          output_dir: dirs.make(),
          learning_rate: 1e-2,
          per_device_train_batch_size: 1,
          max_steps: examples.length,
          logging_steps: 1,
          save_steps: 1,
          lr_scheduler_type: "constant",
        });
        new Trainer({ model, args, trainDataset: new Dataset([...examples]), dataCollator: collator }).train();
        const weights = model
          .namedParameters()
          .filter(([, p]) => p.requiresGrad)
          .flatMap(([, p]) => Array.from(p.dataSync()));
        return { weights, state: savedState(listCheckpoints(args.output_dir).pop()!) };
      };
      // Two copies of one example, so the shuffle cannot change what the two learning steps see.
      const mixed = run([good!, good!, ignored]);
      const losses = mixed.state.log_history.filter((e) => e["loss"] !== undefined);
      assert.equal(losses.length, 2, "the step that only saw the ignored batch logs no loss");
      for (const e of mixed.state.log_history)
        for (const v of Object.values(e)) assert.ok(Number.isFinite(v), JSON.stringify(e));
      // A skipped batch leaves no gradient, so AdamW leaves the weights (and their step counts) alone on that step.
      assert.deepEqual(mixed.weights, run([good!, good!]).weights);
    },
  );
});

describe("Trainer: divergence", () => {
  it("warns at the step the loss or gradient norm stops being finite, reports it, and keeps a good adapter", () => {
    const dir = dirs.make();
    const args = TrainingArguments({
      output_dir: dir,
      learning_rate: 1e30,
      per_device_train_batch_size: 4,
      max_steps: 4,
      logging_steps: 1,
      save_strategy: "no",
    });
    const trainer = new Trainer({ model: tinyPeft(8), args, trainDataset: patternDataset(8), dataCollator: collator });
    // A good adapter from an earlier run in the same folder.
    const good = tinyPeft(8);
    good.savePretrained(dir);
    const before = readFileSync(join(dir, "adapter_model.safetensors"));
    let result: TrainOutput | undefined;
    const warnings = captureWarnings(() => {
      result = trainer.train();
    });
    // The first logged step whose loss or grad_norm is not finite, found independently in the log history.
    const first = trainer.state.log_history.find(
      (e) => !Number.isFinite(e["loss"]) || !Number.isFinite(e["grad_norm"]),
    )!;
    assert.ok(first, "lr 1e30 diverges within 4 steps");
    assert.equal(result!.divergedAtStep, first["step"]);
    const warned = warnings.filter((w) => w.startsWith("training diverged"));
    assert.equal(warned.length, 1, warnings.join("\n"));
    assert.match(
      warned[0]!,
      new RegExp(
        `^training diverged at step ${first["step"]}: .*learning_rate 1e\\+30 is too high, float16 ` +
          `overflow, or bad data`,
      ),
    );

    const notReplaced = /not replacing .*adapter_model\.safetensors with non-finite weights/;
    assert.throws(
      () => trainer.saveModel(dir),
      (err: Error) => err instanceof CheckpointError && notReplaced.test(err.message),
    );
    assert.deepEqual(readFileSync(join(dir, "adapter_model.safetensors")), before, "the good adapter is untouched");
    const fresh = join(dirs.make(), "diverged");
    assert.match(captureWarnings(() => trainer.saveModel(fresh)).join("\n"), /saving non-finite weights to .*diverged/);
  });

  it("a run that stays finite reports no divergence", () => {
    const args = TrainingArguments({
      output_dir: dirs.make(),
      learning_rate: 1e-2,
      per_device_train_batch_size: 4,
      max_steps: 2,
      logging_steps: 1,
      save_strategy: "no",
    });
    const result = new Trainer({
      model: tinyPeft(8),
      args,
      trainDataset: patternDataset(8),
      dataCollator: collator,
    }).train();
    assert.equal(result.divergedAtStep, null);
  });
});

describe("Trainer: resume checks what made the checkpoint", () => {
  const argsIn = (dir: string, fields: Partial<TrainingArguments> = {}) =>
    TrainingArguments({
      output_dir: dir,
      learning_rate: 1e-2,
      per_device_train_batch_size: 4,
      max_steps: 2,
      logging_steps: 1,
      save_steps: 1,
      seed: 1,
      ...fields,
    });
  /** Run A: two steps in a fresh folder, checkpoints 1 and 2. */
  const runA = () => {
    const dir = dirs.make();
    new Trainer({
      model: tinyPeft(10),
      args: argsIn(dir),
      trainDataset: patternDataset(8),
      dataCollator: collator,
    }).train();
    return dir;
  };
  const resume = (dir: string, opts: { args?: Partial<TrainingArguments>; model?: PeftModel; data?: Dataset } = {}) =>
    new Trainer({
      model: opts.model ?? tinyPeft(10),
      args: argsIn(dir, opts.args),
      trainDataset: opts.data ?? patternDataset(8),
      dataCollator: collator,
    }).train({ resumeFromCheckpoint: true });
  const refused = (pattern: RegExp) => (err: Error) => err instanceof CheckpointError && pattern.test(err.message);

  it("refuses another run's checkpoint, listing what differs", () => {
    const dir = runA();
    assert.throws(
      () => resume(dir, { args: { learning_rate: 2e-2, seed: 3, max_steps: 5 } }),
      refused(/checkpoint-2 was made by a different run; these differ: learning_rate 0\.01 → 0\.02; seed 1 → 3$/),
    );
    assert.throws(
      () => resume(dir, { data: patternDataset(8, 12, 6) }),
      refused(/these differ: the training data \(8 examples, sha256 [0-9a-f]{12}… → 8 examples/),
    );
    assert.throws(() => resume(dir, { model: tinyPeft(11) }), refused(/these differ: the model weights/));
    assert.throws(() => resume(dir, { model: tinyPeft(10, { n_layer: 3 }) }), refused(/model config\.n_layer 2 → 3/));
    T.manualSeed(10);
    const rank2 = LoraConfig({ task_type: "CAUSAL_LM", r: 2, target_modules: "all-linear", fan_in_fan_out: true });
    const otherRank = getPeftModel(AutoModelForCausalLM.fromConfig(TRAINER_GPT2), rank2);
    assert.throws(
      () => resume(dir, { model: otherRank }),
      refused(/these differ: peft\.init_lora_weights "gaussian" → true; peft\.r 4 → 2$/),
    );
  });

  it("resumes when only fields that may change differ (max_steps, saving, logging, output_dir)", () => {
    const dir = runA();
    const result = resume(dir, { args: { max_steps: 3, save_steps: 7, logging_steps: 2 } });
    assert.equal(result.globalStep, 3);
  });

  it("a checkpoint without a fingerprint (an older peft-ts) is resumed with a warning", () => {
    const dir = runA();
    rmSync(join(dir, "checkpoint-2", "run_fingerprint.json"));
    const warnings = captureWarnings(() => assert.equal(resume(dir, { args: { max_steps: 3 } }).globalStep, 3));
    assert.ok(
      warnings.some((w) =>
        /checkpoint-2 has no run_fingerprint\.json \(made by an older peft-ts\): cannot check/.test(w),
      ),
      warnings.join("\n"),
    );
  });
});

describe("Trainer: progress", () => {
  /** What train() writes to stderr while stderr claims to be a terminal. */
  const stderrOnTerminal = (fields: Partial<TrainingArguments>): string => {
    const args = TrainingArguments({
      output_dir: dirs.make(),
      learning_rate: 1e-2,
      per_device_train_batch_size: 4,
      max_steps: 2,
      save_strategy: "no",
      ...fields,
    });
    const model = tinyPeft(12);
    const { isTTY } = process.stderr,
      write = process.stderr.write;
    let text = "";
    process.stderr.isTTY = true;
    process.stderr.write = ((chunk: string) => {
      text += chunk;
      return true;
    }) as typeof process.stderr.write;
    try {
      new Trainer({ model, args, trainDataset: patternDataset(8), dataCollator: collator }).train();
    } finally {
      process.stderr.isTTY = isTTY;
      process.stderr.write = write;
    }
    return text;
  };

  it("shows a progress bar on a terminal by default, and none with disable_tqdm", () => {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the progress bar's terminal escape is what is tested
    assert.match(stderrOnTerminal({}), /\r\x1b\[K\[#{24}\] step 2\/2 \| loss \d/);
    assert.equal(stderrOnTerminal({ disable_tqdm: true }), "");
  });
});
