/** BLOOM's config.json fields and transformers' defaults (BloomConfig). */
import { ConfigError } from "../../errors.js";
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** BLOOM configuration (HF names: n_layer / n_head; n_embed is an older name of hidden_size). */
export interface BloomConfig extends PretrainedConfig {
  hidden_size: number;
  n_layer: number;
  n_head: number;
  layer_norm_epsilon: number;
  initializer_range: number;
  apply_residual_connection_post_layernorm: boolean;
  hidden_dropout: number;
  attention_dropout: number;
  pretraining_tp: number;
  slow_but_exact: boolean;
}

/** Parse a BLOOM config.json object with HF defaults. */
export function bloomConfig(raw: Record<string, unknown>): BloomConfig {
  const named = { ...raw };
  if (named["n_embed"] !== undefined) named["hidden_size"] ??= named["n_embed"];
  const config = resolveConfig<BloomConfig>(
    named,
    {
      model_type: "bloom",
      vocab_size: 250880,
      hidden_size: 64,
      n_layer: 2,
      n_head: 8,
      layer_norm_epsilon: 1e-5,
      initializer_range: 0.02,
      apply_residual_connection_post_layernorm: false,
      hidden_dropout: 0,
      attention_dropout: 0,
      pretraining_tp: 1,
      slow_but_exact: false,
      bos_token_id: 1,
      eos_token_id: 2,
    },
    [],
  );
  if (config.hidden_size % config.n_head !== 0)
    throw new ConfigError(`bloom: hidden_size ${config.hidden_size} is not a multiple of n_head ${config.n_head}`);
  return config;
}
