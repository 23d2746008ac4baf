/**
 * The child process of the kill -9 tests (kill-save.test.ts): trains a tiny LoRA model for one step (writing
 * checkpoint-1), then repeats `peft train`'s end-of-run save into OUT, each time with a new lora_alpha and adapter
 * weights all equal to lora_alpha / 8, printing "saved N" after each; with "once" it saves one time and exits.
 * Usage: node kill-child.js OUT TOKENIZER_DIR SEED [once]
 */
import * as T from "../src/tensor/index.js";
import { DataCollatorForSeq2Seq, Trainer, TrainingArguments } from "../src/train/index.js";
import { saveRunOutputs } from "../src/cli/train.js";
import { patternDataset, tinyPeft } from "./tiny-models.js";

const [out, tokenizerDir, seed, once] = process.argv.slice(2);
// The test runner also loads every file under test/: without arguments there is nothing to do.
if (out !== undefined && tokenizerDir !== undefined) {
  process.emitWarning = () => undefined;
  const model = tinyPeft(Number(seed));
  const args = TrainingArguments({
    output_dir: out,
    learning_rate: 1e-2,
    per_device_train_batch_size: 4,
    max_steps: 1,
    save_steps: 1,
    logging_steps: 1,
  });
  const trainer = new Trainer({
    model,
    args,
    trainDataset: patternDataset(4),
    dataCollator: DataCollatorForSeq2Seq({ padTokenId: 0 }),
  });
  trainer.train();
  const lora = model.namedParameters().filter(([n]) => n.includes("lora_"));
  for (let i = 0; ; i++) {
    const alpha = 1 + ((Number(seed) * 31 + i) % 97);
    model.peftConfig["default"]!["lora_alpha"] = alpha;
    for (const [, p] of lora) p.copy_(T.tensor(new Float32Array(p.size).fill(alpha / 8), [...p.shape]));
    saveRunOutputs(trainer, tokenizerDir, "loss", false);
    process.stdout.write(`saved ${i}\n`);
    if (once) break;
  }
}
