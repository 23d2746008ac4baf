/** README "Usage": LoRA on the shipped tiny model, end to end. Run from a folder that holds assets/ (the repository root). */
import { AutoModelForCausalLM, AutoTokenizer, LoraConfig, TaskType, getPeftModel, PeftModel,
         Trainer, TrainingArguments, DataCollatorForSeq2Seq, loadDataset, tokenizeInstruction } from "peft-ts";

const MODEL = "assets/tiny-bard";          // any Hugging Face model folder, e.g. a download of Qwen/Qwen2.5-0.5B-Instruct
const tokenizer = await AutoTokenizer.fromPretrained(MODEL);
const model = AutoModelForCausalLM.fromPretrained(MODEL);
const peft = getPeftModel(model, LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 32, lora_dropout: 0.1 }));
peft.printTrainableParameters();   // trainable params: 20,480 || all params: 1,876,480 || trainable%: 1.0914

const data = loadDataset("assets/identity.json").map((e) => tokenizeInstruction(tokenizer, e));
new Trainer({
  model: peft,
  args: TrainingArguments({ output_dir: "output/usage", per_device_train_batch_size: 4, gradient_accumulation_steps: 2,
                            learning_rate: 2e-3, lr_scheduler_type: "cosine", warmup_ratio: 0.1, max_steps: 10 }),
  trainDataset: data,
  dataCollator: DataCollatorForSeq2Seq({ padTokenId: tokenizer.padTokenId! }),
}).train();
peft.savePretrained("output/usage/adapter");               // adapter_config.json + adapter_model.safetensors

const again = PeftModel.fromPretrained(AutoModelForCausalLM.fromPretrained(MODEL), "output/usage/adapter");
tokenizer.paddingSide = "left";                            // batched generation pads on the left
const chats = ["Who are you?", "你是谁？"].map((q) =>
  tokenizer.applyChatTemplate([{ role: "user", content: q }], { addGenerationPrompt: true, tokenize: false }) as string);
const { inputIds, attentionMask } = tokenizer(chats, { padding: true, returnTensors: true });
const ids = again.generate({ inputIds, attentionMask, maxNewTokens: 20, doSample: true, topP: 0.9, temperature: 0.7 });
const base = again.withAdapterDisabled(() => again.generate({ inputIds, attentionMask, maxNewTokens: 20 }));
const answers = (out: typeof ids) => tokenizer.batchDecode(out.toArray() as number[][], { skipSpecialTokens: true });
console.log(answers(ids), answers(base));                 // prompt + answer, with and without the adapter
again.mergeAndUnload().savePretrained("output/usage/merged");   // a normal HF checkpoint
