/**
 * Gradient checkpointing: gradients must be bit-identical to a run that keeps every activation (the reference is
 * the same model, seeds and batch without checkpointing), with dropout on so that the recomputation has to replay
 * the same masks; and a training step must hold less memory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setGradientCheckpointing, type PreTrainedModel } from "../src/models/pretrained.js";
import { AutoModelForSequenceClassification } from "../src/models/auto.js";
import { Dataset, DataCollatorForSeq2Seq, Trainer, TrainingArguments } from "../src/train/index.js";
import { ConfigError } from "../src/errors.js";
import { LoraConfig, TaskType, getPeftModel } from "../src/peft/index.js";
import * as T from "../src/tensor/index.js";
import { assertSame } from "./helpers.js";
import { gpt2, llama, toyIds } from "./tiny-models.js";

interface Run {
  loss: number;
  grads: Map<string, number[]>;
  peakBytes: number;
}

/** One forward/backward in train mode with dropout seeded; the loss, every gradient, and the step's peak bytes. */
function step(model: PreTrainedModel, lora: boolean, checkpointing: boolean): Run {
  const root = lora
    ? getPeftModel(
        model,
        LoraConfig({
          task_type: TaskType.CAUSAL_LM,
          r: 4,
          lora_alpha: 8,
          lora_dropout: 0.1,
          target_modules: "all-linear",
        }),
      )
    : model;
  if (checkpointing) model.gradientCheckpointingEnable();
  assert.equal(model.isGradientCheckpointing, checkpointing);
  root.train();
  T.manualSeed(99);
  T.resetPeakBytes();
  const before = T.memory().liveBytes;
  const ids = toyIds();
  const loss = T.tidy(() => {
    const l = (root.forward({ inputIds: ids, labels: ids }) as { loss: T.Tensor }).loss;
    l.backward();
    return l.item();
  });
  const grads = new Map<string, number[]>();
  for (const [name, p] of root.namedParameters()) if (p.requiresGrad) grads.set(name, Array.from(p.grad!.dataSync()));
  return { loss, grads, peakBytes: T.memory().peakBytes - before };
}

const families: [string, (extra: Record<string, unknown>) => PreTrainedModel][] = [
  ["gpt2", (extra) => gpt2(5, { resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1, n_layer: 4, ...extra })],
  ["llama", (extra) => llama(6, { attention_dropout: 0.1, num_hidden_layers: 4, ...extra })],
];

for (const [family, make] of families) {
  for (const lora of [false, true]) {
    test(`${family}${lora ? " + LoRA" : ""}: checkpointed gradients are bit-identical, with less memory`, () => {
      const plain = step(make({}), lora, false);
      const ckpt = step(make({}), lora, true);
      assert.equal(ckpt.loss, plain.loss);
      assert.deepEqual([...ckpt.grads.keys()], [...plain.grads.keys()]);
      assert.ok(plain.grads.size > 0);
      for (const [name, g] of plain.grads) assertSame(ckpt.grads.get(name)!, g, name);
      assert.ok(
        ckpt.peakBytes < plain.peakBytes,
        `peak ${ckpt.peakBytes} B with checkpointing vs ${plain.peakBytes} B without`,
      );
    });
  }
}

test("gradientCheckpointingDisable turns it off, and eval/noGrad forwards never checkpoint", () => {
  const model = llama();
  model.gradientCheckpointingEnable().gradientCheckpointingDisable();
  assert.equal(model.isGradientCheckpointing, false);
  model.gradientCheckpointingEnable();
  const ids = toyIds();
  const a = T.noGrad(() => Array.from((model.forward({ inputIds: ids }) as { logits: T.Tensor }).logits.dataSync()));
  model.gradientCheckpointingDisable();
  const b = T.noGrad(() => Array.from((model.forward({ inputIds: ids }) as { logits: T.Tensor }).logits.dataSync()));
  assertSame(a, b, "logits");
});

test("checkpoint() alone: the gradient of the input and of a parameter match the plain tape", () => {
  const w = T.parameter(T.tensor([0.5, -1, 2], [3]));
  const fn = (x: T.Tensor) => T.mul(T.tanh(T.mul(x, w)), T.dropout(x, 0.5, true));
  const run = (ckpt: boolean) => {
    w.grad = null;
    const x = T.tensor([0.3, 0.7, -0.2], [3]).requiresGrad_();
    T.manualSeed(3);
    const y = ckpt ? T.checkpoint(fn, [x], [w]) : fn(x);
    T.sum(y).backward();
    return { x: Array.from(x.grad!.dataSync()), w: Array.from(w.grad!.dataSync()) };
  };
  const plain = run(false),
    ckpt = run(true);
  assertSame(ckpt.x, plain.x, "dx");
  assertSame(ckpt.w, plain.w, "dw");
});

test(
  "Trainer with gradient_checkpointing: the same losses as without, and a model without " + "decoder layers is refused",
  () => {
    const run = (ckpt: boolean) => {
      const dir = mkdtempSync(join(tmpdir(), "peft-ts-ckpt-"));
      const model = gpt2(5, { resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1 });
      const peft = getPeftModel(
        model,
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 4, lora_alpha: 8, target_modules: ["c_attn"] }),
      );
      const ids = toyIds();
      const rows = Array.from({ length: 8 }, (_, i) => {
        const row = Array.from(ids.dataSync().slice(i * 16, (i + 1) * 16));
        return { input_ids: row, labels: row };
      });
      const args = TrainingArguments({
        output_dir: dir,
        max_steps: 3,
        per_device_train_batch_size: 4,
        learning_rate: 1e-2,
        logging_steps: 1,
        save_strategy: "no",
        gradient_checkpointing: ckpt,
      });
      const trainer = new Trainer({
        model: peft,
        args,
        trainDataset: new Dataset(rows),
        dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
      });
      trainer.train();
      rmSync(dir, { recursive: true, force: true });
      assert.equal(model.isGradientCheckpointing, ckpt);
      return trainer.state.log_history.map((e) => e["loss"]);
    };
    const plain = run(false),
      ckpt = run(true);
    assert.equal(plain.length, 3);
    assert.deepEqual(ckpt, plain);
    const bert = AutoModelForSequenceClassification.fromConfig({
      model_type: "bert",
      vocab_size: 32,
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 32,
    });
    assert.throws(
      () => setGradientCheckpointing(bert, true),
      (err: unknown) => err instanceof ConfigError && /does not support/.test(err.message),
    );
  },
);
