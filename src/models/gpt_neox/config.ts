/** GPT-NeoX's (Pythia's) config.json fields and transformers' defaults (GPTNeoXConfig). */
import { ConfigError } from "../../errors.js";
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** GPT-NeoX configuration (HF names). */
export interface GPTNeoXConfig extends PretrainedConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  rotary_pct: number;
  rotary_emb_base: number;
  rope_scaling: Record<string, unknown> | null;
  attention_dropout: number;
  hidden_dropout: number;
  max_position_embeddings: number;
  initializer_range: number;
  layer_norm_eps: number;
  use_parallel_residual: boolean;
  attention_bias: boolean;
}

/** Parse a GPT-NeoX config.json object with HF defaults. */
export function gptNeoXConfig(raw: Record<string, unknown>): GPTNeoXConfig {
  const config = resolveConfig<GPTNeoXConfig>(
    raw,
    {
      model_type: "gpt_neox",
      vocab_size: 50432,
      hidden_size: 6144,
      num_hidden_layers: 44,
      num_attention_heads: 64,
      intermediate_size: 24576,
      hidden_act: "gelu",
      rotary_pct: 0.25,
      rotary_emb_base: 10000,
      rope_scaling: null,
      attention_dropout: 0,
      hidden_dropout: 0,
      max_position_embeddings: 2048,
      initializer_range: 0.02,
      layer_norm_eps: 1e-5,
      use_parallel_residual: true,
      attention_bias: true,
      bos_token_id: 0,
      eos_token_id: 2,
      tie_word_embeddings: false,
    },
    [],
  );
  if (config.hidden_size % config.num_attention_heads !== 0) {
    throw new ConfigError(
      `gpt_neox: hidden_size ${config.hidden_size} is not a multiple of num_attention_heads ` +
        `${config.num_attention_heads}`,
    );
  }
  return config;
}
