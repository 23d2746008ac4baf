/** README "Methods" (docs/readme-drafts/xlora.md): X-LoRA over two LoRA experts, run on the shipped tiny model. */
import { AutoModelForCausalLM, LoraConfig, TaskType, getPeftModel, tensor } from "peft-ts";
import type { XLoraModel } from "peft-ts";
import { MODEL } from "./model.js";

// Two LoRA experts (in practice: adapters trained on different tasks), saved as usual.
for (const dir of ["experts/code", "experts/chat"]) {
  getPeftModel(AutoModelForCausalLM.fromPretrained(MODEL), LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, init_lora_weights: false })).savePretrained(dir);
}

import { XLoraConfig } from "peft-ts";
const model = AutoModelForCausalLM.fromPretrained(MODEL);
const peft = getPeftModel(model, XLoraConfig({
  task_type: TaskType.CAUSAL_LM,
  hidden_size: model.config.hidden_size as number,
  adapters: { "0": "experts/code", "1": "experts/chat" },     // peft names the experts "0", "1", …
  xlora_depth: 2, xlora_size: 64, top_k_lora: 1,
}));
peft.printTrainableParameters();                              // the classifier only: the experts are frozen
const inputIds = tensor(Int32Array.from([5, 6, 7, 8, 9, 10]), [2, 3], "int32");
const { logits } = peft.forward({ inputIds });
const scalings = (peft.baseModel as XLoraModel).latestScalings()!;   // [batch, length, LoRA layers, experts]
const tokens = peft.generate({ inputIds, maxNewTokens: 4 });
peft.savePretrained("xlora-out");                             // the classifier: base_model.internal_xlora_classifier.*
console.log(logits.shape, scalings.shape, tokens.shape);
