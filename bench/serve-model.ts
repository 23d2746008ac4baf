/** The served model of the serve benchmarks: a random causal LM from a config with N random LoRA adapters. */
import { AutoModelForCausalLM } from "../src/models/auto.js";
import type { BitsAndBytesConfig } from "../src/models/quantization.js";
import type { ParameterDType } from "../src/nn/index.js";
import { LoraConfig, TaskType, getPeftModel } from "../src/peft/index.js";
import { manualSeed } from "../src/tensor/index.js";
import { ServedModel } from "../src/serve/model.js";

/**
 * A seeded random model with its weights in `dtype` (the Linear layers quantised when a quantizationConfig is given)
 * and adapters a0 … a(N−1) (r 8; GPT-2: c_attn, others: q_proj/v_proj), none when N is 0.
 */
export function randomServedModel(
  config: Record<string, unknown>,
  adapters: number,
  dtype: ParameterDType = "float32",
  quantizationConfig?: BitsAndBytesConfig,
): ServedModel {
  manualSeed(0);
  const base = AutoModelForCausalLM.fromConfig(config, {
    dtype,
    ...(quantizationConfig ? { quantizationConfig } : {}),
  });
  const lora = LoraConfig({
    task_type: TaskType.CAUSAL_LM,
    r: 8,
    lora_alpha: 16,
    lora_dropout: 0,
    init_lora_weights: "gaussian",
    ...(config["model_type"] === "gpt2"
      ? { target_modules: ["c_attn"], fan_in_fan_out: true }
      : { target_modules: ["q_proj", "v_proj"] }),
  });
  if (adapters === 0) return new ServedModel(base);
  const model = getPeftModel(base, lora, "a0");
  for (let i = 1; i < adapters; i++) model.addAdapter(`a${i}`, lora);
  return new ServedModel(model);
}
