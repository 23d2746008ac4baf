/** T5 / mT5 config.json fields and transformers' defaults (T5Config, MT5Config). */
import { resolveConfig, type PretrainedConfig } from "../config.js";

/** T5-family configuration (HF names). */
export interface T5Config extends PretrainedConfig {
  d_model: number;
  d_kv: number;
  d_ff: number;
  num_layers: number;
  num_decoder_layers: number;
  num_heads: number;
  relative_attention_num_buckets: number;
  relative_attention_max_distance: number;
  dropout_rate: number;
  layer_norm_epsilon: number;
  initializer_factor: number;
  /** "relu", "gated-gelu", "gated-silu", …: `[gated-]ACT`. */
  feed_forward_proj: string;
  /** The activation of the feed-forward (HF derives it from feed_forward_proj; "gated-gelu" means gelu_new). */
  dense_act_fn: string;
  /** Whether the feed-forward is gated (wi_0, wi_1) rather than plain (wi). */
  is_gated_act: boolean;
  use_cache: boolean;
  classifier_dropout: number;
}

const COMMON: Partial<T5Config> = {
  d_model: 512,
  d_kv: 64,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  dropout_rate: 0.1,
  layer_norm_epsilon: 1e-6,
  initializer_factor: 1.0,
  is_encoder_decoder: true,
  use_cache: true,
  pad_token_id: 0,
  eos_token_id: 1,
  classifier_dropout: 0.0,
};

const DEFAULTS: Record<string, Partial<T5Config>> = {
  t5: {
    vocab_size: 32128,
    d_ff: 2048,
    num_layers: 6,
    num_heads: 8,
    feed_forward_proj: "relu",
    tie_word_embeddings: true,
  },
  mt5: {
    vocab_size: 250112,
    d_ff: 1024,
    num_layers: 8,
    num_heads: 6,
    feed_forward_proj: "gated-gelu",
    tie_word_embeddings: false,
    decoder_start_token_id: 0,
    tokenizer_class: "T5Tokenizer",
  },
};

/**
 * HF's parsing of feed_forward_proj: "ACT" or "gated-ACT"; "gated-gelu" maps to gelu_new for backwards
 * compatibility. Throws on other shapes, as T5Config does.
 */
export function parseFeedForwardProj(proj: string): { denseActFn: string; isGatedAct: boolean } {
  const parts = proj.split("-");
  if ((parts.length > 1 && parts[0] !== "gated") || parts.length > 2) {
    throw new Error(
      `\`feed_forward_proj\`: ${proj} is not a valid activation function of the dense layer. ` +
        `Please make sure \`feed_forward_proj\` ` +
        "is of the format `gated-{ACT_FN}` or `{ACT_FN}`, e.g. 'gated-gelu' or 'relu'",
    );
  }
  return {
    denseActFn: proj === "gated-gelu" ? "gelu_new" : parts[parts.length - 1]!,
    isGatedAct: parts[0] === "gated",
  };
}

/**
 * Parse a t5/mt5 config.json object with the defaults of its model_type. dense_act_fn / is_gated_act written in
 * the file win over the values derived from feed_forward_proj (HF sets them from the kwargs after deriving them).
 */
export function t5Config(raw: Record<string, unknown>): T5Config {
  const type = String(raw["model_type"] ?? "t5");
  const defaults = DEFAULTS[type];
  if (!defaults) throw new Error(`model_type "${type}" is not a T5-family model (t5, mt5)`);
  const config = resolveConfig<T5Config>(raw, { ...COMMON, ...defaults, model_type: type }, []);
  const derived = parseFeedForwardProj(config.feed_forward_proj);
  config.dense_act_fn = (raw["dense_act_fn"] as string | undefined) ?? derived.denseActFn;
  config.is_gated_act = (raw["is_gated_act"] as boolean | undefined) ?? derived.isGatedAct;
  config.num_decoder_layers = (raw["num_decoder_layers"] as number | null | undefined) ?? config.num_layers;
  return config;
}
