/** README draft "DARE with torch's masks" (docs/readme-drafts/dare-torch.md), run on the shipped tiny model. */
import { LoraConfig, TaskType, getPeftModel } from "peft-ts";
import { AutoModelForCausalLM } from "peft-ts";
import { MODEL } from "./model.js";

const lora = LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 16, target_modules: ["q_proj", "v_proj"], init_lora_weights: false });
const peft = getPeftModel(AutoModelForCausalLM.fromPretrained(MODEL), lora, "math");
peft.addAdapter("code", lora);

import { TorchGenerator } from "peft-ts/tensor";
// Python: torch.manual_seed(42); model.add_weighted_adapter(["math", "code"], [1.0, 0.7], "dare",
//                                   combination_type="dare_ties", density=0.3)
const generator = new TorchGenerator().manualSeed(42);
peft.addWeightedAdapter(["math", "code"], [1.0, 0.7], "dare", { combinationType: "dare_ties", density: 0.3, generator });
console.log(generator.rand([2]).dataSync()); // what torch.rand(2) gives right after the Python call
