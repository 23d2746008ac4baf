/**
 * Builds the demo's base model, assets/tiny-bard/, with peft-ts itself: a byte-level BPE tokenizer learned on
 * the corpus, then a small Qwen2-architecture model pretrained from scratch on Shakespeare plus self-generated
 * English/Chinese chat (assets/corpus/). Reproducible: fixed seeds, fixed data order.
 *
 * Run: npm run build && node dist/examples/demo/pretrain.js [--steps N]   (~15 minutes on 2 cores)
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AutoModelForCausalLM } from "../../src/models/auto.js";
import { manualSeed } from "../../src/tensor/index.js";
import { AutoTokenizer } from "../../src/tokenizers/index.js";
import { Dataset, DataCollatorForSeq2Seq, Trainer, TrainingArguments } from "../../src/train/index.js";
import { pythonJson } from "../../src/io/json.js";
import { trainBpe } from "./bpe.js";
import { syntheticChat, type Exchange } from "./synthetic-chat.js";
import { ASSETS, MODEL_DIR } from "./paths.js";

const { values } = parseArgs({ options: { steps: { type: "string", default: "2400" } } });
const SEQ_LEN = 128;
const SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/** The chat template shipped with the model (Qwen2's layout without a default system prompt). */
export const CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + " +
  "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

function renderChat(e: Exchange): string {
  return `<|im_start|>user\n${e.user}<|im_end|>\n<|im_start|>assistant\n${e.assistant}<|im_end|>\n`;
}

function shuffle<T>(xs: T[], seed: number): T[] {
  let s = seed;
  for (let i = xs.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

const shakespeare = readFileSync(join(ASSETS, "corpus", "tinyshakespeare.txt"), "utf8");
const lines = shakespeare.split("\n").filter((l) => l.length >= 25 && l.length <= 70 && !l.endsWith(":"));
const paragraphs = shakespeare.split("\n\n").filter((p) => p.trim().length > 0);
const chats = syntheticChat(9000, 1234, lines).map(renderChat);

console.log(`training the tokenizer on ${paragraphs.length} paragraphs and ${chats.length} chats…`);
mkdirSync(MODEL_DIR, { recursive: true });
const tokenizerJson = trainBpe([...paragraphs, ...chats.map((c) => c.replace(/<\|im_(start|end)\|>/g, " "))], {
  merges: 1200,
  specialTokens: SPECIAL,
});
writeFileSync(join(MODEL_DIR, "tokenizer.json"), JSON.stringify(tokenizerJson));
writeFileSync(
  join(MODEL_DIR, "tokenizer_config.json"),
  `${pythonJson({
    bos_token: null,
    eos_token: "<|im_end|>",
    pad_token: "<|endoftext|>",
    unk_token: null,
    chat_template: CHAT_TEMPLATE,
    additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
    clean_up_tokenization_spaces: false,
    model_max_length: 512,
    padding_side: "right",
    tokenizer_class: "Qwen2Tokenizer",
  })}\n`,
);
const tokenizer = await AutoTokenizer.fromPretrained(MODEL_DIR);
const eot = tokenizer.convertTokensToIds("<|endoftext|>") as number;

// Documents separated by <|endoftext|>, packed into fixed blocks (standard causal-LM pretraining).
const docs = shuffle([...paragraphs, ...chats], 7);
const stream: number[] = [];
for (const d of docs) stream.push(...tokenizer.encode(d, { addSpecialTokens: false }), eot);
const blocks = new Dataset(
  Array.from({ length: Math.floor(stream.length / SEQ_LEN) }, (_, i) => {
    const ids = stream.slice(i * SEQ_LEN, (i + 1) * SEQ_LEN);
    return { input_ids: ids, labels: ids };
  }),
);
console.log(`${stream.length} tokens → ${blocks.length} blocks of ${SEQ_LEN}; vocabulary ${tokenizer.length}`);

manualSeed(42);
const model = AutoModelForCausalLM.fromConfig({
  model_type: "qwen2",
  vocab_size: tokenizer.length,
  hidden_size: 192,
  intermediate_size: 512,
  num_hidden_layers: 4,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  max_position_embeddings: 512,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  initializer_range: 0.02,
  bos_token_id: null,
  eos_token_id: tokenizer.eosTokenId,
  pad_token_id: eot,
});
console.log(`model: ${model.numParameters().toLocaleString("en-US")} parameters`);
const trainer = new Trainer({
  model,
  args: TrainingArguments({
    output_dir: join(MODEL_DIR, ".pretrain"),
    learning_rate: 3e-3,
    per_device_train_batch_size: 16,
    max_steps: Number(values.steps),
    lr_scheduler_type: "cosine",
    warmup_steps: 100,
    weight_decay: 0.1,
    logging_steps: 50,
    save_strategy: "no",
    seed: 42,
  }),
  trainDataset: blocks,
  dataCollator: DataCollatorForSeq2Seq({ padTokenId: eot }),
  callbacks: [
    {
      onLog: (_a, s, logs) =>
        console.log(
          `step ${s.global_step}/${s.max_steps} loss ${logs["loss"]?.toFixed(3)} ` +
            `(${logs["tokens_per_second"]?.toFixed(0)} tokens/s)`,
        ),
    },
  ],
});
trainer.train();
model.savePretrained(MODEL_DIR, { dtype: "float16" });
console.log(`saved ${MODEL_DIR}`);
