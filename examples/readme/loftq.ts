/** README draft "LoftQ" (docs/readme-drafts/loftq.md): LoftQ initialisation on the shipped tiny model. */
import { AutoModelForCausalLM, LoraConfig, TaskType, getPeftModel } from "peft-ts";

const model = AutoModelForCausalLM.fromPretrained("assets/tiny-bard");
const config = LoraConfig({
  task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 8,
  init_lora_weights: "loftq", loftq_config: { loftq_bits: 4, loftq_iter: 1 },
});
const peft = getPeftModel(model, config); // q_proj / v_proj now hold 4-bit NF dequantised weights Q; B·A ≈ W − Q
// … train as usual …
peft.savePretrained("output/loftq");      // loading it re-runs LoftQ on the original weights, as peft does
