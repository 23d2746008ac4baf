/** GPT-2's config.json fields and transformers' defaults. */
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** GPT-2 configuration (HF names). */
export interface GPT2Config extends PretrainedConfig {
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner: number | null;
  activation_function: string;
  resid_pdrop: number;
  embd_pdrop: number;
  attn_pdrop: number;
  layer_norm_epsilon: number;
  initializer_range: number;
  scale_attn_weights: boolean;
  scale_attn_by_inverse_layer_idx: boolean;
  reorder_and_upcast_attn: boolean;
}

/** Parse a GPT-2 config.json object with HF defaults. */
export function gpt2Config(raw: Record<string, unknown>): GPT2Config {
  return resolveConfig<GPT2Config>(
    raw,
    {
      model_type: "gpt2",
      vocab_size: 50257,
      n_positions: 1024,
      n_embd: 768,
      n_layer: 12,
      n_head: 12,
      n_inner: null,
      activation_function: "gelu_new",
      resid_pdrop: 0.1,
      embd_pdrop: 0.1,
      attn_pdrop: 0.1,
      layer_norm_epsilon: 1e-5,
      initializer_range: 0.02,
      scale_attn_weights: true,
      scale_attn_by_inverse_layer_idx: false,
      reorder_and_upcast_attn: false,
      bos_token_id: 50256,
      eos_token_id: 50256,
      tie_word_embeddings: true,
    },
    [],
  );
}
