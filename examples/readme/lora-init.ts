/** README draft "LoRA initialisers" (docs/readme-drafts/lora-init.md): PiSSA on the shipped tiny model, saved as a plain LoRA. */
import { AutoModelForCausalLM, LoraConfig, TaskType, getPeftModel } from "peft-ts";

const model = AutoModelForCausalLM.fromPretrained("assets/tiny-bard");
const peft = getPeftModel(model, LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 8, init_lora_weights: "pissa" }));
peft.savePretrained("output/pissa-init");          // the adapter before training (W = W_res + B₀·A₀)
// … train as usual …
peft.savePretrained("output/pissa-lora", { pathInitialModelForWeightConversion: "output/pissa-init" });
// output/pissa-lora is a rank-16 LoRA for the original weights; output/pissa-init's config now says init_lora_weights: true
