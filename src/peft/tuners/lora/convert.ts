/**
 * peft's save_pretrained(path_initial_model_for_weight_conversion): a PiSSA / OLoRA adapter trained on a residual
 * base becomes a plain LoRA adapter on the original base. With W = W_res + B₀·A₀ and the trained W_res + B·A,
 * ΔW = B·A − B₀·A₀ = [B | −B₀]·[A ; A₀], a LoRA of rank 2r whose alpha keeps the scaling.
 */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { CheckpointError, ConfigError } from "../../../errors.js";
import { writeFileAtomic } from "../../../io/atomic.js";
import { pythonJson } from "../../../io/json.js";
import { loadSafetensors } from "../../../io/safetensors.js";
import { cat, neg, type Tensor } from "../../../tensor/index.js";
import { PeftType, type PeftConfig } from "../../config.js";
import type { LoraConfig } from "./config.js";

/**
 * The config and tensors to save for adapter `config`/`tensors` converted against the initial adapter saved (before
 * training) in `initialDir`. As peft does, the initial folder's adapter_config.json is rewritten with
 * init_lora_weights true. Unlike peft 0.15.2, tensors other than lora_A / lora_B (modules_to_save, biases) are
 * kept rather than dropped.
 */
export function mutatedAdapterAsLora(
  config: PeftConfig,
  tensors: Map<string, Tensor>,
  initialDir: string,
): { config: LoraConfig; tensors: Map<string, Tensor> } {
  if (config.peft_type !== PeftType.LORA)
    throw new ConfigError(
      `pathInitialModelForWeightConversion converts PiSSA/OLoRA LoRA adapters, but this adapter ` +
        `is ${config.peft_type}; save without it`,
    );
  const lora = config as LoraConfig;
  if (lora.use_rslora && (Object.keys(lora.rank_pattern).length > 0 || Object.keys(lora.alpha_pattern).length > 0)) {
    throw new ConfigError(
      "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported " +
        "when using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`.",
    );
  }
  if (lora.lora_bias)
    throw new ConfigError(
      "pathInitialModelForWeightConversion cannot convert an adapter with lora_bias (its bias " +
        "has no rank to concatenate; peft 0.15.2 fails on it too); save without it",
    );
  if (!/^(pissa|corda|olora|true)/.test(String(lora.init_lora_weights).toLowerCase())) {
    process.emitWarning(
      "`path_initial_model_for_weight_conversion` only works for converting a PiSSA/CorDA/OLoRA " +
        "adapter to a LoRA adapter",
    );
  }
  const file = join(initialDir, "adapter_model.safetensors");
  if (!existsSync(file))
    throw new CheckpointError(
      `pathInitialModelForWeightConversion: ${initialDir} has no adapter_model.safetensors; save ` +
        `the adapter right after getPeftModel (before training) to that folder first`,
    );
  writeFileAtomic(
    join(initialDir, "adapter_config.json"),
    pythonJson({ ...lora, init_lora_weights: true, inference_mode: true }),
  );
  const initial = loadSafetensors(file);
  const out = new Map<string, Tensor>();
  for (const [key, t] of tensors) {
    const isA = key.includes("lora_A"),
      isB = key.includes("lora_B");
    if (!isA && !isB) {
      out.set(key, t);
      continue;
    }
    const t0 = initial.get(key);
    if (!t0)
      throw new CheckpointError(
        `pathInitialModelForWeightConversion: the initial adapter in ${initialDir} has no ${key}; ` +
          `was it saved from this adapter before training?`,
      );
    out.set(key, isA ? cat([t, t0], 0) : cat([t, neg(t0)], 1));
  }
  const doubled = (p: Record<string, number>) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, 2 * v]));
  return {
    config: {
      ...lora,
      init_lora_weights: true,
      r: 2 * lora.r,
      // Scaling alpha / r (or alpha / √r with rsLoRA) stays the same at rank 2r.
      lora_alpha: lora.use_rslora ? lora.lora_alpha * 2 ** 0.5 : 2 * lora.lora_alpha,
      rank_pattern: doubled(lora.rank_pattern),
      alpha_pattern: doubled(lora.alpha_pattern),
    },
    tensors: out,
  };
}
