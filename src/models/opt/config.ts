/** OPT's config.json fields and transformers' defaults (OPTConfig). */
import { ConfigError } from "../../errors.js";
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** OPT configuration (HF names). */
export interface OPTConfig extends PretrainedConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  ffn_dim: number;
  max_position_embeddings: number;
  do_layer_norm_before: boolean;
  _remove_final_layer_norm: boolean;
  word_embed_proj_dim: number;
  dropout: number;
  attention_dropout: number;
  activation_function: string;
  enable_bias: boolean;
  layer_norm_elementwise_affine: boolean;
  init_std: number;
}

/** Parse an OPT config.json object with HF defaults. */
export function optConfig(raw: Record<string, unknown>): OPTConfig {
  const config = resolveConfig<OPTConfig>(
    raw,
    {
      model_type: "opt",
      vocab_size: 50272,
      hidden_size: 768,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      ffn_dim: 3072,
      max_position_embeddings: 2048,
      do_layer_norm_before: true,
      _remove_final_layer_norm: false,
      dropout: 0.1,
      attention_dropout: 0,
      activation_function: "relu",
      enable_bias: true,
      layer_norm_elementwise_affine: true,
      init_std: 0.02,
      pad_token_id: 1,
      bos_token_id: 2,
      eos_token_id: 2,
    },
    [],
  );
  config.word_embed_proj_dim ??= config.hidden_size;
  if (typeof config["layerdrop"] === "number" && config["layerdrop"] > 0) {
    throw new ConfigError(
      `opt: layerdrop ${config["layerdrop"]} (skipping layers at random in training) is not supported`,
      "set layerdrop to 0",
    );
  }
  if (config.hidden_size % config.num_attention_heads !== 0) {
    throw new ConfigError(
      `opt: hidden_size ${config.hidden_size} is not a multiple of num_attention_heads ${config.num_attention_heads}`,
    );
  }
  return config;
}
