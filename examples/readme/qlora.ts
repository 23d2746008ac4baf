/** README "QLoRA": LoRA on a 4-bit (NF4, double-quantised) copy of the shipped tiny model. */
import { AutoModelForCausalLM, LoraConfig, TaskType, dequantizeModel, getPeftModel, prepareModelForKbitTraining } from "peft-ts";

const quantizationConfig = { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true } as const;
const model = AutoModelForCausalLM.fromPretrained("assets/tiny-bard", { quantizationConfig });   // quantised on load
const qlora = getPeftModel(prepareModelForKbitTraining(model), LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 16, lora_alpha: 32 }));
// … train as usual; the adapter is a normal peft adapter and loads on the float model too.
qlora.mergeAndUnload();                  // W + ΔW re-quantised, as peft does
// dequantizeModel(qlora).mergeAndUnload() gives a float32 model instead
console.log(typeof dequantizeModel, model.config["quantization_config"]);
