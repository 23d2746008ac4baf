/**
 * Trainer robustness: non-finite numbers in the logs and checkpoints, batches with nothing to learn, divergence
 * reports, and resume refusing another run's checkpoint.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as T from "../src/tensor/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { DataCollatorForSeq2Seq, Dataset, Trainer, TrainingArguments, listCheckpoints } from "../src/train/index.js";
import { parseJson } from "../src/io/json.js";
import { tempDirs } from "./helpers.js";
import { patternDataset, tinyPeft } from "./tiny-models.js";

const collator = DataCollatorForSeq2Seq({ padTokenId: 0 });
const dirs = tempDirs("peft-ts-trainer-robust-");
after(() => dirs.removeAll());

type LogEntries = Record<string, number>[];

function savedState(checkpoint: string): { log_history: LogEntries; global_step: number } {
  return parseJson(readFileSync(join(checkpoint, "trainer_state.json"), "utf8")) as { log_history: LogEntries; global_step: number };
}

describe("Trainer: non-finite numbers", () => {
  it("max_grad_norm 0 (clipping off) logs the true gradient norm and saves checkpoints", () => {
    const data = patternDataset(4);
    const dir = dirs.make();
    const args = TrainingArguments({ output_dir: dir, learning_rate: 1e-2, per_device_train_batch_size: 4, max_steps: 1, logging_steps: 1, save_steps: 1, max_grad_norm: 0 });
    new Trainer({ model: tinyPeft(4), args, trainDataset: data, dataCollator: collator }).train();
    const logged = savedState(listCheckpoints(dir)[0]!).log_history[0]!;

    // The same first step by hand: one batch of all four (equal-length) rows, the norm summed in float64.
    const model = tinyPeft(4).train();
    const batch = collator(data.examples);
    T.tidy(() => (model.forward({ ...batch }) as ModelOutput).loss!.backward());
    let squares = 0;
    for (const [, p] of model.namedParameters()) if (p.requiresGrad) for (const g of p.grad!.dataSync()) squares += g * g;
    const norm = Math.sqrt(squares);
    assert.ok(norm > 0);
    assert.ok(Math.abs(logged["grad_norm"]! - norm) <= 1e-5 * norm, `grad_norm ${logged["grad_norm"]} vs ${norm}`);
  });

  it("a NaN loss is logged and checkpointed as NaN (Python's spelling), and the checkpoint resumes", () => {
    const dir = dirs.make();
    const poisoned = () => {
      const model = tinyPeft(5);
      // One NaN in the tied embedding matrix: every logit row then has a NaN, so every loss is NaN.
      const wte = model.namedParameters().find(([n]) => n.endsWith("wte.weight"))![1];
      const values = wte.dataSync() as Float32Array;
      values[0] = Number.NaN;
      wte.copy_(T.tensor(values, [...wte.shape]));
      return model;
    };
    const args = TrainingArguments({ output_dir: dir, learning_rate: 1e-2, per_device_train_batch_size: 4, max_steps: 2, logging_steps: 1, save_steps: 1 });
    new Trainer({ model: poisoned(), args, trainDataset: patternDataset(8), dataCollator: collator }).train();
    const checkpoints = listCheckpoints(dir);
    assert.equal(checkpoints.length, 2);
    const text = readFileSync(join(checkpoints[1]!, "trainer_state.json"), "utf8");
    assert.match(text, /"loss": NaN,/);
    assert.ok(Number.isNaN(savedState(checkpoints[1]!).log_history[1]!["loss"]));
    const resumed = new Trainer({ model: poisoned(), args: TrainingArguments({ ...args, max_steps: 3 }), trainDataset: patternDataset(8), dataCollator: collator });
    resumed.train({ resumeFromCheckpoint: checkpoints[1]! });
    assert.equal(resumed.state.global_step, 3);
  });

  it("a batch whose labels are all -100 is skipped: no NaN in the logs, and the same weights as a run without it", () => {
    const [good] = patternDataset(1).examples;
    const ignored = { input_ids: good!["input_ids"], labels: (good!["input_ids"] as number[]).map(() => -100) };
    const run = (examples: Dataset["examples"]) => {
      const model = tinyPeft(6);
      const args = TrainingArguments({
        output_dir: dirs.make(), learning_rate: 1e-2, per_device_train_batch_size: 1, max_steps: examples.length, logging_steps: 1, save_steps: 1,
        lr_scheduler_type: "constant",
      });
      new Trainer({ model, args, trainDataset: new Dataset([...examples]), dataCollator: collator }).train();
      const weights = model.namedParameters().filter(([, p]) => p.requiresGrad).flatMap(([, p]) => Array.from(p.dataSync()));
      return { weights, state: savedState(listCheckpoints(args.output_dir).pop()!) };
    };
    // Two copies of one example, so the shuffle cannot change what the two learning steps see.
    const mixed = run([good!, good!, ignored]);
    const losses = mixed.state.log_history.filter((e) => e["loss"] !== undefined);
    assert.equal(losses.length, 2, "the step that only saw the ignored batch logs no loss");
    for (const e of mixed.state.log_history) for (const v of Object.values(e)) assert.ok(Number.isFinite(v), JSON.stringify(e));
    // A skipped batch leaves no gradient, so AdamW leaves the weights (and their step counts) alone on that step.
    assert.deepEqual(mixed.weights, run([good!, good!]).weights);
  });
});
