/** README draft "Combining, stacking and swapping LoRA adapters" (docs/readme-drafts/lora-api.md), run on the shipped tiny model. */
import { LoraConfig, TaskType, getPeftModel } from "peft-ts";
import { AutoModelForCausalLM } from "peft-ts";
import { MODEL } from "./model.js";

const lora = (r: number) => LoraConfig({ task_type: TaskType.CAUSAL_LM, r, lora_alpha: 2 * r, target_modules: ["q_proj", "v_proj"], init_lora_weights: false });
const peft = getPeftModel(AutoModelForCausalLM.fromPretrained(MODEL), lora(8), "math");
peft.addAdapter("code", lora(8));
peft.savePretrained("adapters"); // adapters/ (math) and adapters/code/

// TIES: keep the 50% largest entries of each adapter's factors, elect a sign per entry, average the agreeing ones.
peft.addWeightedAdapter(["math", "code"], [1.0, 0.7], "both", { combinationType: "ties", density: 0.5 });
// The same on the dense deltas, refactored by a truncated SVD of rank 8.
peft.addWeightedAdapter(["math", "code"], [1.0, 0.7], "both_svd", { combinationType: "ties_svd", density: 0.5, majoritySignMethod: "frequency" });
peft.setAdapter("both");

import { getModelStatus, getLayerStatus } from "peft-ts";
peft.baseModel.setAdapter(["math", "code"]); // both active: their deltas add up
const status = getModelStatus(peft);
console.log(status.activeAdapters, status.mergedAdapters, status.requiresGrad); // [ 'math', 'code' ] [] { math: true, code: true, ... }
console.log(getLayerStatus(peft)[0]!.moduleType); // lora.Linear

import { hotswapAdapter, getPeftModelStateDict, setPeftModelStateDict } from "peft-ts";
hotswapAdapter(peft, "adapters/code", "math"); // "math" now holds code's weights, in place
const tensors = getPeftModelStateDict(peft, "code"); // keys as in adapter_model.safetensors
const { unexpectedKeys } = setPeftModelStateDict(peft, tensors, "math");
console.log(unexpectedKeys.length); // 0
peft.setRequiresGrad(["code"], false); // freeze an adapter whether or not it is active
