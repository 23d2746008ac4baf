/** Config of the LLaMA family (LLaMA, Qwen2, Mistral): HF names and each model type's defaults. */
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** LLaMA-family configuration (HF names). */
export interface LlamaConfig extends PretrainedConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  hidden_act: string;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: Record<string, unknown> | null;
  attention_bias: boolean;
  attention_dropout: number;
  mlp_bias: boolean;
  sliding_window?: number | null;
  use_sliding_window?: boolean;
  initializer_range: number;
}

const COMMON: Partial<LlamaConfig> = {
  hidden_act: "silu", rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null, attention_bias: false, attention_dropout: 0,
  mlp_bias: false, initializer_range: 0.02, tie_word_embeddings: false,
};

const DEFAULTS: Record<string, Partial<LlamaConfig>> = {
  llama: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, max_position_embeddings: 2048, bos_token_id: 1, eos_token_id: 2 },
  qwen2: { vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 32768, sliding_window: 4096, use_sliding_window: false },
  mistral: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 4096 * 32, sliding_window: 4096, bos_token_id: 1, eos_token_id: 2 },
};

/** Biases of the attention projections: Qwen2 has them on q/k/v only; LLaMA/Mistral on all four when attention_bias. */
export function attentionBiases(config: LlamaConfig): { qkv: boolean; o: boolean } {
  return config.model_type === "qwen2" ? { qkv: true, o: false } : { qkv: config.attention_bias, o: config.attention_bias };
}

/** The sliding attention window in force (Mistral's), or null. */
export function slidingWindow(config: LlamaConfig): number | null {
  return config.model_type === "mistral" ? (config.sliding_window ?? null) : null;
}

/** Parse a llama/qwen2/mistral config.json object with the defaults of its model_type. */
export function llamaConfig(raw: Record<string, unknown>): LlamaConfig {
  const type = String(raw["model_type"] ?? "llama");
  const defaults = DEFAULTS[type];
  if (!defaults) throw new Error(`model_type "${type}" is not a LLaMA-family model (llama, qwen2, mistral)`);
  const config = resolveConfig<LlamaConfig>(raw, { ...COMMON, ...defaults, model_type: type }, []);
  config.num_key_value_heads ??= config.num_attention_heads;
  if (type === "qwen2" && config.use_sliding_window) {
    throw new Error("qwen2: use_sliding_window=true (per-layer sliding windows) is not supported yet");
  }
  return config;
}
