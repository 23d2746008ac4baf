/** README "Fine-tuning in less memory": bf16 weights, bf16 mixed precision and gradient checkpointing on the tiny model. */
import {
  AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, LoraConfig, TaskType, Trainer, TrainingArguments, getPeftModel,
  loadDataset, tokenizeInstruction,
} from "peft-ts";

const base = AutoModelForCausalLM.fromPretrained("assets/tiny-bard", { dtype: "bfloat16" });   // frozen weights stay bf16
const lowMem = getPeftModel(base, LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, target_modules: ["q_proj", "v_proj"] }));
const lowMemArgs = TrainingArguments({ output_dir: "output/bf16", bf16: true, gradient_checkpointing: true, max_steps: 2 });

const tokenizer = await AutoTokenizer.fromPretrained("assets/tiny-bard");
const data = loadDataset("assets/identity.json").map((e) => tokenizeInstruction(tokenizer, e));
const collator = DataCollatorForSeq2Seq({ padTokenId: tokenizer.padTokenId! });
const out = new Trainer({ model: lowMem, args: lowMemArgs, trainDataset: data, dataCollator: collator }).train();
console.log(base.dtype, out.trainingLoss);
