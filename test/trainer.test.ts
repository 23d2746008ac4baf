/** Trainer: learning, accumulation equivalence, schedules in the logs, exact resume, crash-safe checkpoints, label masking. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftModel } from "../src/peft/index.js";
import {
  DataCollatorForSeq2Seq,
  Trainer,
  TrainingArguments,
  listCheckpoints,
  saveCheckpoint,
  tokenizeInstruction,
} from "../src/train/index.js";
import { AutoTokenizer } from "../src/tokenizers/index.js";
import { bpeTokenizerJson, qwenConfig, writeFolder, IM_END } from "./tokenizer-fixtures.js";
import { assertClose } from "./helpers.js";
import { patternDataset, tinyPeft } from "./tiny-models.js";

const collator = DataCollatorForSeq2Seq({ padTokenId: 0 });
const tmp = () => mkdtempSync(join(tmpdir(), "peft-ts-trainer-"));

function adapterValues(m: PeftModel): number[] {
  return m
    .namedParameters()
    .filter(([n]) => n.includes("lora_"))
    .flatMap(([, p]) => Array.from(p.dataSync()));
}

describe("Trainer", () => {
  it("the loss of a tiny LoRA model falls over a few dozen steps", () => {
    const model = tinyPeft();
    const args = TrainingArguments({
      output_dir: tmp(),
      learning_rate: 2e-2,
      per_device_train_batch_size: 4,
      max_steps: 40,
      logging_steps: 5,
      save_strategy: "no",
      lr_scheduler_type: "constant",
    });
    const trainer = new Trainer({ model, args, trainDataset: patternDataset(16), dataCollator: collator });
    trainer.train();
    const losses = trainer.state.log_history.map((e) => e["loss"]!).filter((l) => l !== undefined);
    assert.ok(losses[losses.length - 1]! < 0.6 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(" ")}`);
  });

  it("accumulating k micro-batches gives the same update as one batch k times larger", () => {
    const run = (bs: number, accum: number) => {
      const model = tinyPeft(3);
      const args = TrainingArguments({
        output_dir: tmp(),
        learning_rate: 1e-2,
        per_device_train_batch_size: bs,
        gradient_accumulation_steps: accum,
        max_steps: 2,
        max_grad_norm: 0,
        save_strategy: "no",
        lr_scheduler_type: "constant",
        logging_steps: 1,
      });
      new Trainer({ model, args, trainDataset: patternDataset(8), dataCollator: collator }).train();
      return adapterValues(model);
    };
    // Equal-length sequences: the mean of k per-batch mean losses equals the mean over the big batch.
    assertClose(run(2, 2), run(4, 1), 2e-6, 1e-4, "LoRA weights after 2 steps");
  });

  it("logs the learning rates of the linear schedule with warmup", () => {
    const model = tinyPeft();
    const args = TrainingArguments({
      output_dir: tmp(),
      learning_rate: 0.01,
      per_device_train_batch_size: 4,
      max_steps: 10,
      warmup_steps: 2,
      logging_steps: 1,
      save_strategy: "no",
    });
    const trainer = new Trainer({ model, args, trainDataset: patternDataset(8), dataCollator: collator });
    trainer.train();
    // After optimizer step s (1-based) the scheduler has stepped s times: lr = 0.01 · λ(s), λ = s/2 during warmup, then (10 − s)/8.
    const expected = [0.005, 0.01, 0.00875, 0.0075, 0.00625, 0.005, 0.00375, 0.0025, 0.00125, 0];
    assertClose(
      trainer.state.log_history.map((e) => e["learning_rate"]!),
      expected,
      1e-12,
      0,
      "logged learning rates",
    );
  });

  it("resuming from a checkpoint reproduces the uninterrupted run exactly", () => {
    const argsFor = (dir: string) =>
      TrainingArguments({
        output_dir: dir,
        learning_rate: 5e-3,
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 2,
        max_steps: 6,
        save_steps: 3,
        logging_steps: 1,
        lr_scheduler_type: "cosine",
        warmup_steps: 1,
      });
    const data = patternDataset(10);
    const fullDir = tmp();
    const full = tinyPeft(7);
    new Trainer({ model: full, args: argsFor(fullDir), trainDataset: data, dataCollator: collator }).train();
    assert.deepEqual(
      listCheckpoints(fullDir).map((d) => d.split("/").pop()),
      ["checkpoint-3", "checkpoint-6"],
    );
    const resumed = tinyPeft(7);
    let stepsRun = 0;
    new Trainer({
      model: resumed,
      args: argsFor(tmp()),
      trainDataset: data,
      dataCollator: collator,
      callbacks: [{ onStepEnd: () => void stepsRun++ }],
    }).train({ resumeFromCheckpoint: join(fullDir, "checkpoint-3") });
    assert.equal(stepsRun, 3, "only the steps after the checkpoint are run");
    assert.deepEqual(adapterValues(resumed), adapterValues(full));
  });

  it("a run killed while writing a checkpoint leaves the previous one intact and loadable", () => {
    const dir = tmp();
    const model = tinyPeft(9);
    const args = TrainingArguments({
      output_dir: dir,
      learning_rate: 1e-2,
      per_device_train_batch_size: 4,
      max_steps: 2,
      save_steps: 2,
      logging_steps: 1,
    });
    const trainer = new Trainer({ model, args, trainDataset: patternDataset(8), dataCollator: collator });
    trainer.train();
    const good = listCheckpoints(dir);
    assert.equal(good.length, 1);
    trainer.state.global_step = 4;
    assert.throws(
      () =>
        saveCheckpoint(
          dir,
          {
            saveModel: (d) => model.savePretrained(d),
            optimizer: (trainer as unknown as { optimizer: never }).optimizer,
            scheduler: (trainer as unknown as { scheduler: never }).scheduler,
            state: trainer.state,
            args,
          },
          () => {
            throw new Error("killed");
          },
        ),
      /killed/,
    );
    assert.deepEqual(listCheckpoints(dir), good, "no partial checkpoint-4");
    const reloaded = PeftModel.fromPretrained(tinyPeft(9).unload(), good[0]!);
    assert.deepEqual(adapterValues(reloaded), adapterValues(model));
    // The next run cleans the temporary folder up.
    new Trainer({
      model: tinyPeft(9),
      args: TrainingArguments({ ...args, max_steps: 1, save_strategy: "no" }),
      trainDataset: patternDataset(8),
      dataCollator: collator,
    }).train();
    assert.ok(
      readdirSync(dir).every((n) => !n.startsWith(".")),
      readdirSync(dir).join(", "),
    );
    assert.ok(existsSync(join(good[0]!, "adapter_model.safetensors")));
  });
});

describe("instruction data", () => {
  it("labels prompt tokens -100 and learns the response plus eos, token by token", async () => {
    const tok = await AutoTokenizer.fromPretrained(
      writeFolder({ "tokenizer.json": bpeTokenizerJson("qwen2"), "tokenizer_config.json": qwenConfig() }),
    );
    const ex = tokenizeInstruction(tok, { instruction: "hello", output: "hello world" });
    // The prompt exactly as Qwen2's template renders it, written out by hand.
    const prompt = tok.encode(
      "<|im_start|>system\nYou are a helpful " +
        "assistant.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
      { addSpecialTokens: false },
    );
    const response = [...tok.encode("hello world", { addSpecialTokens: false }), IM_END];
    assert.deepEqual(ex["input_ids"], [...prompt, ...response]);
    assert.deepEqual(ex["labels"], [...prompt.map(() => -100), ...response]);
    assert.deepEqual(response.slice(0, 2), [32, 35], "hello → 32, Ġwor… (the fixture's merges)");
  });

  it("the collator pads ids with the pad id, masks with 0 and labels with -100", () => {
    const batch = DataCollatorForSeq2Seq({ padTokenId: 7 })([
      { input_ids: [1, 2, 3], labels: [-100, 2, 3] },
      { input_ids: [4], labels: [4] },
    ]);
    assert.deepEqual(batch.inputIds.toArray(), [
      [1, 2, 3],
      [4, 7, 7],
    ]);
    assert.deepEqual(batch.attentionMask.toArray(), [
      [1, 1, 1],
      [1, 0, 0],
    ]);
    assert.deepEqual(batch.labels!.toArray(), [
      [-100, 2, 3],
      [4, -100, -100],
    ]);
  });
});
