/** DistilBERT's config.json fields and transformers' defaults (DistilBertConfig). */
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** DistilBERT configuration (HF names; hidden_size, num_attention_heads, num_hidden_layers are HF's aliases of dim, n_heads, n_layers). */
export interface DistilBertConfig extends PretrainedConfig {
  max_position_embeddings: number;
  sinusoidal_pos_embds: boolean;
  n_layers: number;
  n_heads: number;
  dim: number;
  hidden_dim: number;
  dropout: number;
  attention_dropout: number;
  activation: string;
  initializer_range: number;
  qa_dropout: number;
  seq_classif_dropout: number;
}

/** Parse a DistilBERT config.json object with HF defaults (HF's attribute aliases resolved to dim, n_heads, n_layers). */
export function distilBertConfig(raw: Record<string, unknown>): DistilBertConfig {
  const aliased: Record<string, unknown> = { ...raw };
  for (const [alias, name] of [
    ["hidden_size", "dim"],
    ["num_attention_heads", "n_heads"],
    ["num_hidden_layers", "n_layers"],
  ] as const) {
    if (aliased[alias] !== undefined && aliased[name] === undefined) aliased[name] = aliased[alias];
    delete aliased[alias];
  }
  const config = resolveConfig<DistilBertConfig>(
    aliased,
    {
      model_type: "distilbert",
      vocab_size: 30522,
      max_position_embeddings: 512,
      sinusoidal_pos_embds: false,
      n_layers: 6,
      n_heads: 12,
      dim: 768,
      hidden_dim: 4 * 768,
      dropout: 0.1,
      attention_dropout: 0.1,
      activation: "gelu",
      initializer_range: 0.02,
      qa_dropout: 0.1,
      seq_classif_dropout: 0.2,
      pad_token_id: 0,
    },
    [],
  );
  if (config.dim % config.n_heads !== 0)
    throw new Error(`distilbert: n_heads ${config.n_heads} must divide dim ${config.dim} evenly`);
  return config;
}
