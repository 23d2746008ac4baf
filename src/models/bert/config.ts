/** BERT's config.json fields and transformers' defaults (BertConfig). */
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** BERT configuration (HF names). */
export interface BertConfig extends PretrainedConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  initializer_range: number;
  layer_norm_eps: number;
  position_embedding_type: string;
  use_cache: boolean;
  classifier_dropout: number | null;
  is_decoder?: boolean;
}

/** Parse a BERT config.json object with HF defaults. */
export function bertConfig(raw: Record<string, unknown>): BertConfig {
  const config = resolveConfig<BertConfig>(
    raw,
    {
      model_type: "bert",
      vocab_size: 30522,
      hidden_size: 768,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      intermediate_size: 3072,
      hidden_act: "gelu",
      hidden_dropout_prob: 0.1,
      attention_probs_dropout_prob: 0.1,
      max_position_embeddings: 512,
      type_vocab_size: 2,
      initializer_range: 0.02,
      layer_norm_eps: 1e-12,
      pad_token_id: 0,
      position_embedding_type: "absolute",
      use_cache: true,
      classifier_dropout: null,
      is_decoder: false,
    },
    [],
  );
  if (config.position_embedding_type !== "absolute") {
    throw new Error(
      `bert: position_embedding_type "${config.position_embedding_type}" is not supported (only "absolute")`,
    );
  }
  if (config.is_decoder || config.add_cross_attention) {
    throw new Error("bert: is_decoder / add_cross_attention (BERT as a decoder) is not supported");
  }
  if (config.hidden_size % config.num_attention_heads !== 0) {
    throw new Error(
      `bert: hidden_size ${config.hidden_size} is not a multiple of num_attention_heads ${config.num_attention_heads}`,
    );
  }
  return config;
}
