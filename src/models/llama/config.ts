/**
 * Config of the LLaMA-style decoders (LLaMA, Mistral, Qwen2/3, Gemma 1/2/3 text, Phi-3): HF names, each model
 * type's defaults, and the few traits that set a model type apart inside the shared decoder block.
 */
import { ConfigError } from "../../errors.js";
import { resolveConfig, type PretrainedConfig } from "../config.js";
import { RotaryEmbedding, type RopeSettings } from "../rotary.js";

/** LLaMA-style decoder configuration (HF names; fields beyond LLaMA's belong to the model types that use them). */
export interface LlamaConfig extends PretrainedConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number | null;
  hidden_act: string;
  /** Gemma's name for the activation (takes precedence over hidden_act there). */
  hidden_activation?: string | null;
  max_position_embeddings: number;
  /** Phi-3: the context the model was pretrained with (LongRoPE scales beyond it). */
  original_max_position_embeddings?: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: Record<string, unknown> | null;
  partial_rotary_factor?: number;
  attention_bias: boolean;
  attention_dropout: number;
  mlp_bias: boolean;
  sliding_window?: number | null;
  use_sliding_window?: boolean;
  max_window_layers?: number;
  /** Per layer "sliding_attention" or "full_attention" (newer configs spell the pattern out). */
  layer_types?: string[] | null;
  /** Gemma 3: every n-th layer is global, the others slide. */
  sliding_window_pattern?: number;
  /** Gemma 3: rope_theta of the sliding (local) layers. */
  rope_local_base_freq?: number;
  query_pre_attn_scalar?: number | null;
  attn_logit_softcapping?: number | null;
  final_logit_softcapping?: number | null;
  /** Phi-3: dropout on the attention and MLP outputs before the residual sums. */
  resid_pdrop?: number;
  initializer_range: number;
}

const COMMON: Partial<LlamaConfig> = {
  hidden_act: "silu",
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_scaling: null,
  attention_bias: false,
  attention_dropout: 0,
  mlp_bias: false,
  initializer_range: 0.02,
  tie_word_embeddings: false,
};

const QWEN: Partial<LlamaConfig> = {
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 22016,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  max_position_embeddings: 32768,
  sliding_window: 4096,
  use_sliding_window: false,
  max_window_layers: 28,
};

const GEMMA: Partial<LlamaConfig> = {
  hidden_act: "gelu_pytorch_tanh",
  pad_token_id: 0,
  eos_token_id: 1,
  bos_token_id: 2,
  tie_word_embeddings: true,
  head_dim: 256,
  max_position_embeddings: 8192,
  vocab_size: 256000,
};

/** transformers' config defaults per model_type. */
const DEFAULTS: Record<string, Partial<LlamaConfig>> = {
  llama: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    max_position_embeddings: 2048,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  mistral: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 4096 * 32,
    sliding_window: 4096,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  qwen2: { ...QWEN },
  qwen3: { ...QWEN, head_dim: 128 },
  gemma: {
    ...GEMMA,
    hidden_size: 3072,
    intermediate_size: 24576,
    num_hidden_layers: 28,
    num_attention_heads: 16,
    num_key_value_heads: 16,
  },
  gemma2: {
    ...GEMMA,
    hidden_size: 2304,
    intermediate_size: 9216,
    num_hidden_layers: 26,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    hidden_activation: "gelu_pytorch_tanh",
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    final_logit_softcapping: 30,
    attn_logit_softcapping: 50,
  },
  gemma3_text: {
    ...GEMMA,
    vocab_size: 262208,
    hidden_size: 2304,
    intermediate_size: 9216,
    num_hidden_layers: 26,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    hidden_activation: "gelu_pytorch_tanh",
    max_position_embeddings: 131072,
    rope_theta: 1_000_000,
    query_pre_attn_scalar: 256,
    sliding_window: 4096,
    final_logit_softcapping: null,
    attn_logit_softcapping: null,
    rope_local_base_freq: 10000,
    sliding_window_pattern: 6,
  },
  phi3: {
    vocab_size: 32064,
    hidden_size: 3072,
    intermediate_size: 8192,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    max_position_embeddings: 4096,
    original_max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    bos_token_id: 1,
    eos_token_id: 32000,
    pad_token_id: 32000,
    sliding_window: null,
    resid_pdrop: 0,
  },
};

/** The model types the shared decoder serves. */
export const DECODER_MODEL_TYPES = Object.keys(DEFAULTS);

/** transformers' class-name prefix per model type (Gemma 3's text-only classes differ, see decoderClassName). */
const PREFIX: Record<string, string> = {
  llama: "Llama",
  mistral: "Mistral",
  qwen2: "Qwen2",
  qwen3: "Qwen3",
  gemma: "Gemma",
  gemma2: "Gemma2",
  gemma3_text: "Gemma3",
  phi3: "Phi3",
};

/** transformers' class name for a LLaMA-style class of this model type ("Qwen2ForCausalLM" for a qwen2 LlamaForCausalLM). */
export function decoderClassName(llamaName: string, modelType: string): string {
  if (modelType === "gemma3_text" && llamaName !== "LlamaForCausalLM") return llamaName.replace(/^Llama/, "Gemma3Text");
  return llamaName.replace(/^Llama/, PREFIX[modelType] ?? "Llama");
}

/** One decoder layer's attention: its sliding window (null: full causal attention) and which rotary table it uses. */
export interface LayerAttention {
  window: number | null;
  rope: number;
}

/** What sets one model type apart inside the shared decoder block. */
export interface DecoderTraits {
  headDim: number;
  bias: { qkv: boolean; o: boolean; mlp: boolean };
  activation: string;
  /** RMSNorm scales by (1 + weight) (Gemma). */
  unitOffsetNorm: boolean;
  /** Embeddings × √hidden rounded to float32: on every input (Gemma 1/2) or inside the embedding (Gemma 3). */
  embedScale: "inputs" | "embedding" | null;
  /** Per-head RMSNorm of queries and keys before the rotation (Qwen3, Gemma 3): q_norm, k_norm. */
  qkNorm: boolean;
  /** qkv_proj and gate_up_proj instead of q/k/v_proj and gate/up_proj (Phi-3). */
  fused: boolean;
  /** Norms after the attention and around the MLP (Gemma 2/3): pre_/post_feedforward_layernorm. */
  sandwichNorms: boolean;
  /** Multiplies q·kᵀ. */
  attnScale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  residDropout: number;
  ropes: RopeSettings[];
  layers: LayerAttention[];
}

function positiveOrNull(config: LlamaConfig, name: keyof LlamaConfig): number | null {
  const v = config[name];
  if (v === null || v === undefined) return null;
  if (typeof v !== "number" || !(v > 0)) {
    throw new ConfigError(
      `${config.model_type}: ${String(name)} must be a positive number or null, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** Which layers slide (current transformers' rules per model type; layer_types when the config spells them out). */
function slidingLayers(c: LlamaConfig): boolean[] {
  const n = c.num_hidden_layers;
  if (Array.isArray(c.layer_types)) {
    if (
      c.layer_types.length !== n ||
      !c.layer_types.every((t) => t === "sliding_attention" || t === "full_attention")
    ) {
      throw new ConfigError(
        `${c.model_type}: layer_types must list "sliding_attention" or "full_attention" for each of the ${n} layers`,
      );
    }
    return c.layer_types.map((t) => t === "sliding_attention");
  }
  const all = (v: boolean) => Array.from({ length: n }, () => v);
  switch (c.model_type) {
    case "mistral":
    case "phi3":
      return all(true);
    case "qwen2":
    case "qwen3":
      // Layers from max_window_layers on slide (transformers ≥ 4.45 in every attention path; 4.44 only with flash attention).
      return Array.from({ length: n }, (_, i) => i >= (c.max_window_layers ?? n));
    case "gemma2":
      return Array.from({ length: n }, (_, i) => i % 2 === 0);
    case "gemma3_text": {
      const pattern = c.sliding_window_pattern ?? 6;
      return Array.from({ length: n }, (_, i) => (i + 1) % pattern !== 0);
    }
    default:
      return all(false);
  }
}

/** The resolved per-model-type traits of a parsed config. */
export function decoderTraits(c: LlamaConfig): DecoderTraits {
  const type = c.model_type;
  const gemma = type.startsWith("gemma");
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim)) {
    throw new ConfigError(
      `${type}: hidden_size ${c.hidden_size} is not a multiple of num_attention_heads ` +
        `${c.num_attention_heads}; set head_dim`,
    );
  }
  const rotaryDim = Math.floor(headDim * (c.partial_rotary_factor ?? 1));
  const rope = (theta: number, scaling: Record<string, unknown> | null): RopeSettings => ({
    dim: rotaryDim,
    theta,
    maxPositions: c.max_position_embeddings,
    originalMaxPositions: c.original_max_position_embeddings,
    scaling,
    modelType: type,
  });
  const ropes = [rope(c.rope_theta, c.rope_scaling)];
  // Gemma 3's sliding layers rotate with their own base and no scaling.
  if (type === "gemma3_text") ropes.push(rope(c.rope_local_base_freq ?? 10000, null));
  // Qwen's window is off unless use_sliding_window; the other types slide whenever sliding_window is set.
  const qwen = type === "qwen2" || type === "qwen3";
  const window = qwen && !c.use_sliding_window ? null : positiveOrNull(c, "sliding_window");
  const sliding = slidingLayers(c);
  const scalar = gemma && type !== "gemma" ? positiveOrNull(c, "query_pre_attn_scalar") : null;
  return {
    headDim,
    bias:
      type === "qwen2"
        ? { qkv: true, o: false, mlp: false }
        : type === "phi3"
          ? { qkv: false, o: false, mlp: false }
          : { qkv: c.attention_bias, o: c.attention_bias, mlp: c.mlp_bias },
    // Gemma uses hidden_activation and falls back to tanh-GELU, never hidden_act (transformers warns and does so too).
    activation: gemma ? (c.hidden_activation ?? "gelu_pytorch_tanh") : c.hidden_act,
    unitOffsetNorm: gemma,
    embedScale: type === "gemma3_text" ? "embedding" : gemma ? "inputs" : null,
    qkNorm: type === "qwen3" || type === "gemma3_text",
    fused: type === "phi3",
    sandwichNorms: type === "gemma2" || type === "gemma3_text",
    attnScale: 1 / Math.sqrt(scalar ?? headDim),
    attnSoftcap: positiveOrNull(c, "attn_logit_softcapping"),
    finalSoftcap: positiveOrNull(c, "final_logit_softcapping"),
    residDropout: c.resid_pdrop ?? 0,
    ropes,
    layers: sliding.map((s) => ({ window: s ? window : null, rope: s && type === "gemma3_text" ? 1 : 0 })),
  };
}

/** Parse a config.json object of a LLaMA-style model type with that type's defaults. */
export function llamaConfig(raw: Record<string, unknown>): LlamaConfig {
  const type = String(raw["model_type"] ?? "llama");
  const defaults = DEFAULTS[type];
  if (!defaults)
    throw new ConfigError(
      `model_type "${type}" is not a LLaMA-style decoder`,
      `supported: ${DECODER_MODEL_TYPES.join(", ")}`,
    );
  const config = resolveConfig<LlamaConfig>(raw, { ...COMMON, ...defaults, model_type: type }, []);
  config.num_key_value_heads ??= config.num_attention_heads;
  for (const rope of decoderTraits(config).ropes) new RotaryEmbedding(rope);
  return config;
}
