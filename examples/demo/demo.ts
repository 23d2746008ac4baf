/**
 * The main job: LoRA fine-tuning of the shipped tiny model (assets/tiny-bard, pretrained with peft-ts on
 * Shakespeare and simple chat) on a small identity dataset (assets/identity.json, English and Chinese), then the
 * base model's and the adapted model's answers side by side. Run: npm run demo
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { AutoModelForCausalLM } from "../../src/models/auto.js";
import { LoraConfig, TaskType, getPeftModel, type PeftModel } from "../../src/peft/index.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../../src/tokenizers/index.js";
import {
  DataCollatorForSeq2Seq,
  Trainer,
  TrainingArguments,
  loadDataset,
  tokenizeInstruction,
} from "../../src/train/index.js";
import { tensor } from "../../src/tensor/index.js";
import { backend } from "../../src/backend/index.js";
import { lossCurveSvg } from "../../src/cli/loss-plot.js";
import { IDENTITY_DATA, MODEL_DIR } from "./paths.js";

const { values } = parseArgs({
  options: { steps: { type: "string", default: "250" }, out: { type: "string", default: "output/demo" } },
});
const outDir = resolve(values.out);
// Questions the adapter never saw in training (held out): paraphrases of the identity questions and general chat.
const PROMPTS = [
  "Can you tell me who you are?",
  "What should people call you?",
  "Who is responsible for training you?",
  "你到底是谁？",
  "What is 2 plus 6?",
  "What color is snow?",
];

/** Greedy answers to chat prompts (a left-padded batch), decoded without special tokens. */
function answer(model: PeftModel, tokenizer: PreTrainedTokenizer, prompts: string[]): string[] {
  const rows = prompts.map(
    (p) => tokenizer.applyChatTemplate([{ role: "user", content: p }], { addGenerationPrompt: true }) as number[],
  );
  const width = Math.max(...rows.map((r) => r.length));
  const pad = tokenizer.padTokenId!;
  const ids = rows.flatMap((r) => [...new Array<number>(width - r.length).fill(pad), ...r]);
  const mask = rows.flatMap((r) => [...new Array<number>(width - r.length).fill(0), ...r.map(() => 1)]);
  const out = model.generate({
    inputIds: tensor(Int32Array.from(ids), [rows.length, width]),
    attentionMask: tensor(Int32Array.from(mask), [rows.length, width]),
    maxNewTokens: 40,
    repetitionPenalty: 1.1,
  });
  const total = out.shape[1]!;
  const seqs = out.dataSync();
  return rows.map((_, r) =>
    tokenizer.decode(Array.from(seqs.subarray(r * total + width, (r + 1) * total)), { skipSpecialTokens: true }).trim(),
  );
}

const start = performance.now();
console.log(`peft-ts demo — backend: ${backend().name}; base model: ${MODEL_DIR}`);
const tokenizer = await AutoTokenizer.fromPretrained(MODEL_DIR);
const base = AutoModelForCausalLM.fromPretrained(MODEL_DIR);
const dataset = loadDataset(IDENTITY_DATA).map((e) => tokenizeInstruction(tokenizer, e, { maxLength: 128 }));
const model = getPeftModel(
  base,
  LoraConfig({
    task_type: TaskType.CAUSAL_LM,
    r: 16,
    lora_alpha: 32,
    lora_dropout: 0.05,
    target_modules: "all-linear",
  }),
);
model.printTrainableParameters();

const trainer = new Trainer({
  model,
  args: TrainingArguments({
    output_dir: outDir,
    learning_rate: 2e-3,
    per_device_train_batch_size: 8,
    max_steps: Number(values.steps),
    lr_scheduler_type: "cosine",
    warmup_steps: 10,
    logging_steps: 10,
    save_strategy: "no",
    seed: 42,
  }),
  trainDataset: dataset,
  dataCollator: DataCollatorForSeq2Seq({ padTokenId: tokenizer.padTokenId! }),
  callbacks: [
    {
      onLog: (_a, s, logs) =>
        console.log(
          `  step ${String(s.global_step).padStart(4)}/${s.max_steps}  loss ` +
            `${logs["loss"]!.toFixed(4)}  lr ${logs["learning_rate"]!.toExponential(2)}  ` +
            `${logs["tokens_per_second"]!.toFixed(0)} tokens/s`,
        ),
    },
  ],
});
console.log(`fine-tuning with LoRA on ${dataset.length} identity examples…`);
trainer.train();

const adapterDir = join(outDir, "adapter");
mkdirSync(adapterDir, { recursive: true });
model.savePretrained(adapterDir);
const curve = join(outDir, "loss.svg");
writeFileSync(curve, lossCurveSvg(trainer.state.log_history));

model.eval();
const adapted = answer(model, tokenizer, PROMPTS);
const original = model.withAdapterDisabled(() => answer(model, tokenizer, PROMPTS));
console.log("\nheld-out question → base model | with the LoRA adapter");
PROMPTS.forEach((p, i) => {
  console.log(`\n> ${p}\n  base:    ${original[i]}\n  adapted: ${adapted[i]}`);
});
console.log(
  `\nadapter (HF PEFT format): ${adapterDir}\nloss curve: ${curve}\ntotal time: ` +
    `${((performance.now() - start) / 1000).toFixed(1)} s`,
);
