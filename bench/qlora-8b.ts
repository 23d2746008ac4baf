/**
 * Memory of QLoRA on a Llama-3-8B-shaped model (hidden 4096, 32 layers, intermediate 14336, 32 heads / 8 key-value
 * heads, vocabulary 128256), built by AutoModelForCausalLM.fromConfig with NF4 + double quantisation one layer at a
 * time, then one LoRA training step (r 16 on q_proj, v_proj; AdamW) at batch 1 × 64.
 *
 *   node dist/bench/qlora-8b.js [--layers N] [--seq S] [--steps N] [--no-train]
 *
 * Prints RSS (current and peak, from the OS) after building and after the step, the quantised weights' bytes and the
 * float32 parameters' bytes, and the times. Measured once here (2 shared cores, busy): quantised weights 3.35 GiB,
 * float32 parameters (embeddings, lm_head, norms) 3.92 GiB, RSS 7.94 GiB after building (1316 s); the LoRA step took
 * 88 s at a peak RSS of 8.68 GiB. bfloat16 embeddings and lm_head would bring the model to ~5.3 GiB.
 */
import { AutoModelForCausalLM } from "../src/models/auto.js";
import { QuantizedLinear } from "../src/nn/index.js";
import { LoraConfig, TaskType, getPeftModel, prepareModelForKbitTraining } from "../src/peft/index.js";
import { AdamW } from "../src/optim/index.js";
import { manualSeed, tensor, tidy } from "../src/tensor/index.js";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const layers = arg("--layers", 32), seq = arg("--seq", 64);
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const rss = () => `rss ${gib(process.memoryUsage().rss)}, peak ${gib(process.resourceUsage().maxRSS * 1024)}`;

const config = {
  model_type: "llama", vocab_size: 128256, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: layers,
  num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 8192, rope_theta: 500000, rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};
manualSeed(0);
let t = performance.now();
const model = AutoModelForCausalLM.fromConfig(config, {
  quantizationConfig: { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true },
});
const quantBytes = model.modules().reduce((n, m) => n + (m instanceof QuantizedLinear ? m.weightBytes() : 0), 0);
const floatBytes = model.parameters().reduce((n, p) => n + p.size * 4, 0);
console.log(`built ${layers} layers in ${((performance.now() - t) / 1000).toFixed(1)} s: quantised weights ${gib(quantBytes)}, float32 parameters ${gib(floatBytes)}; ${rss()}`);
if (!process.argv.includes("--no-train")) {
  const peft = getPeftModel(prepareModelForKbitTraining(model, { useGradientCheckpointing: false }),
    LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 16, lora_alpha: 32, lora_dropout: 0 }));
  peft.printTrainableParameters();
  const opt = new AdamW(peft.parameters().filter((p) => p.requiresGrad), { lr: 1e-4 });
  const ids = tensor(Int32Array.from({ length: seq }, (_, i) => (i * 7919) % 128256), [1, seq]);
  for (let step = 0; step < arg("--steps", 1); step++) {
    t = performance.now();
    const loss = tidy(() => {
      const l = peft.forward({ inputIds: ids, labels: ids }).loss!;
      l.backward();
      opt.step();
      opt.zeroGrad();
      return l.item();
    });
    console.log(`step ${step} (batch 1 × ${seq}): loss ${loss.toFixed(4)} in ${((performance.now() - t) / 1000).toFixed(1)} s; ${rss()}`);
  }
}
