/**
 * Model configurations: the parsed `config.json` with Hugging Face's field names and defaults.
 * Every field of the file is kept (unknown ones included), so savePretrained writes back what was read.
 * The fields the families use are checked by type and range before any model is built, and the memory a model
 * needs is estimated from its config, so that a wrong or huge config fails with a clear error instead of an
 * allocation failure deep inside a layer.
 */
import { freemem } from "node:os";
import { getHeapStatistics } from "node:v8";
import { ConfigError } from "../errors.js";
import {
  bool,
  checkFields,
  either,
  field,
  integer,
  listOf,
  nullable,
  number,
  string,
  type FieldTable,
  type FieldType,
} from "../io/config-fields.js";

/** Fields every HF config has. Family configs extend this with their own fields. */
export interface PretrainedConfig {
  model_type: string;
  architectures?: string[];
  vocab_size: number;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  decoder_start_token_id?: number | null;
  tie_word_embeddings: boolean;
  is_encoder_decoder?: boolean;
  num_labels: number;
  id2label?: Record<string, string>;
  label2id?: Record<string, number>;
  problem_type?: "regression" | "single_label_classification" | "multi_label_classification" | null;
  torch_dtype?: string | null;
  [field: string]: unknown;
}

/**
 * Fill a raw config.json object with defaults and check required fields, naming the model type and field in
 * errors. `num_labels` follows HF: the size of id2label when present, else 2.
 */
export function resolveConfig<C extends PretrainedConfig>(
  raw: Record<string, unknown>,
  defaults: Partial<C>,
  required: readonly string[],
): C {
  const modelType = String(raw["model_type"] ?? defaults.model_type ?? "unknown");
  for (const name of required) {
    if (raw[name] === undefined && (defaults as Record<string, unknown>)[name] === undefined) {
      throw new ConfigError(`config.json for model_type "${modelType}" is missing the required field "${name}"`);
    }
  }
  const id2label = raw["id2label"] as Record<string, string> | undefined;
  const numLabels =
    (raw["num_labels"] as number | undefined) ??
    (id2label && typeof id2label === "object" ? Object.keys(id2label).length : 2);
  const config = { tie_word_embeddings: true, ...defaults, ...raw, model_type: modelType, num_labels: numLabels } as C;
  checkModelConfig(config);
  return config;
}

function group(names: readonly string[], type: FieldType, help: string): FieldTable {
  return Object.fromEntries(names.map((name) => [name, field(type, undefined, help)]));
}

const probability = number({ min: 0, max: 1 });
const tokenId = integer();

/** The config.json fields the families read, wherever a family has them: type and range. */
const MODEL_FIELDS: FieldTable = {
  ...group(
    [
      "vocab_size",
      "hidden_size",
      "num_hidden_layers",
      "num_attention_heads",
      "intermediate_size",
      "max_position_embeddings",
      "n_embd",
      "n_layer",
      "n_head",
      "n_positions",
      "n_ctx",
      "d_model",
      "d_ff",
      "d_kv",
      "num_layers",
      "num_decoder_layers",
      "num_heads",
      "dim",
      "n_layers",
      "n_heads",
      "hidden_dim",
      "type_vocab_size",
      "relative_attention_num_buckets",
      "relative_attention_max_distance",
      "num_labels",
    ],
    integer({ min: 1 }),
    "A size of the network: a whole number of units, layers, heads or tokens.",
  ),
  ...group(
    ["num_key_value_heads", "head_dim", "n_inner", "sliding_window"],
    nullable(integer({ min: 1 })),
    "A size of the network, or null for the family's default.",
  ),
  ...group(
    ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"],
    number({ above: 0 }),
    "The epsilon added to the variance in normalisation layers: a small positive number such as 1e-6.",
  ),
  ...group(
    ["rope_theta"],
    number({ above: 0 }),
    "The base of the rotary position embedding's frequencies (e.g. 10000).",
  ),
  ...group(
    ["initializer_range", "initializer_factor"],
    number({ min: 0 }),
    "The scale of randomly initialised weights.",
  ),
  ...group(
    [
      "hidden_dropout_prob",
      "attention_probs_dropout_prob",
      "attention_dropout",
      "resid_pdrop",
      "embd_pdrop",
      "attn_pdrop",
      "dropout",
      "dropout_rate",
      "seq_classif_dropout",
      "qa_dropout",
      "summary_first_dropout",
    ],
    probability,
    "A dropout probability in [0, 1].",
  ),
  ...group(
    ["classifier_dropout"],
    nullable(probability),
    "The classifier's dropout probability in [0, 1], or null for hidden_dropout_prob.",
  ),
  ...group(
    ["tie_word_embeddings", "use_cache", "is_encoder_decoder", "scale_attn_weights", "attention_bias", "mlp_bias"],
    bool,
    "A switch: true or false.",
  ),
  ...group(
    ["pad_token_id", "bos_token_id", "decoder_start_token_id"],
    nullable(tokenId),
    "A token id (an integer), or null.",
  ),
  ...group(
    ["eos_token_id"],
    nullable(either(tokenId, listOf(tokenId))),
    "The end-of-sequence token id, a list of them, or null.",
  ),
  ...group(
    ["hidden_act", "activation_function", "activation", "dense_act_fn", "feed_forward_proj"],
    string,
    "The name of an activation function.",
  ),
};

/** Pairs (width, heads) whose width must split evenly into the heads, unless head_dim gives the head size. */
const HEAD_SPLITS = [
  ["hidden_size", "num_attention_heads"],
  ["n_embd", "n_head"],
  ["dim", "n_heads"],
] as const;

/** Check a resolved config's fields by type and range, and that the attention heads fit the width. */
export function checkModelConfig(config: PretrainedConfig): void {
  const owner = `config.json for model_type "${config.model_type}"`;
  checkFields(owner, MODEL_FIELDS, config, true);
  const headDim = config["head_dim"];
  for (const [width, heads] of HEAD_SPLITS) {
    const w = config[width],
      h = config[heads];
    if (typeof w !== "number" || typeof h !== "number" || (headDim !== undefined && headDim !== null) || w % h === 0)
      continue;
    throw new ConfigError(
      `${owner}: \`${width}\` ${w} is not a multiple of \`${heads}\` ${h}, so the heads cannot split it`,
      `each attention head gets ${width} / ${heads} units: pick sizes that divide (e.g. ${width} ` +
        `${Math.max(h, Math.round(w / h) * h)}), ` +
        "or check the file for a typo",
    );
  }
  const q = config["num_attention_heads"],
    kv = config["num_key_value_heads"];
  if (typeof q === "number" && typeof kv === "number" && q % kv !== 0) {
    throw new ConfigError(
      `${owner}: \`num_attention_heads\` ${q} is not a multiple of \`num_key_value_heads\` ${kv}`,
      "grouped-query attention shares each key/value head among an equal number of query heads",
    );
  }
}

function firstNumber(config: PretrainedConfig, names: readonly string[]): number | undefined {
  for (const n of names) if (typeof config[n] === "number") return config[n] as number;
  return undefined;
}

/**
 * A lower bound of a model's parameter count from its config: embeddings plus, per layer, the four attention
 * projections at grouped-query width and two feed-forward matrices (gated ones have three). Lower, so that a model
 * that fits is never refused; what it catches is a config off by orders of magnitude.
 */
export function estimateParameterCount(config: PretrainedConfig): number {
  const hidden = firstNumber(config, ["hidden_size", "n_embd", "d_model", "dim"]) ?? 0;
  const heads = firstNumber(config, ["num_attention_heads", "n_head", "num_heads", "n_heads"]) ?? 1;
  const kvShare = (firstNumber(config, ["num_key_value_heads"]) ?? heads) / heads;
  const inner = firstNumber(config, ["intermediate_size", "n_inner", "d_ff", "hidden_dim"]) ?? 4 * hidden;
  const encoderLayers = firstNumber(config, ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]) ?? 0;
  const layers =
    encoderLayers + (config.is_encoder_decoder ? (firstNumber(config, ["num_decoder_layers"]) ?? encoderLayers) : 0);
  const positions = firstNumber(config, ["max_position_embeddings", "n_positions"]) ?? 0;
  const embeddings = config.vocab_size * hidden * (config.tie_word_embeddings ? 1 : 2) + positions * hidden;
  return embeddings + layers * ((2 + 2 * kvShare) * hidden * hidden + 2 * hidden * inner);
}

/**
 * JavaScript heap one layer takes to be built and trained for one step: measured on tiny GPT-2 and Qwen2 models,
 * 9–19 KB of module and tensor objects plus 45–61 KB of autograd tape and gradients; the lower sum, rounded down.
 */
const HEAP_BYTES_PER_LAYER = 48 * 1024;

/** Format a byte count as GB or MB. */
function bytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(0)} MB`;
}

/**
 * Refuse, before allocating, a model whose float32 weights would not fit in the free memory (os.freemem), or whose
 * layers would not fit in the JavaScript heap, naming the config's sizes.
 */
export function checkModelFitsInMemory(config: PretrainedConfig): void {
  const params = estimateParameterCount(config);
  const layers = firstNumber(config, ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]) ?? 0;
  const sizes = [
    "vocab_size",
    "hidden_size",
    "n_embd",
    "d_model",
    "dim",
    "intermediate_size",
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "n_layers",
  ]
    .filter((n) => typeof config[n] === "number")
    .map((n) => `${n} ${config[n]}`)
    .join(", ");
  // The model may be built in float32, a half dtype or 4-bit, which the config does not say: the bound uses the
  // smallest (half a byte per weight), so bf16 and quantised models fit and only configs off by far are refused.
  const needed = 0.5 * params;
  const free = freemem();
  if (needed > free) {
    throw new ConfigError(
      `config.json for model_type "${config.model_type}" (${sizes}) needs at least ` +
        `${bytes(needed)} for its weights even at 4 bits each (float32: ${bytes(4 * params)}), ` +
        `but only ${bytes(free)} of memory is free`,
      "check these sizes in config.json for a typo, or free memory (close other programs) before loading the model",
    );
  }
  const heap = getHeapStatistics();
  const heapFree = heap.heap_size_limit - heap.used_heap_size;
  if (layers * HEAP_BYTES_PER_LAYER > heapFree) {
    throw new ConfigError(
      `config.json for model_type "${config.model_type}" has ${layers} layers, which need about ` +
        `${bytes(layers * HEAP_BYTES_PER_LAYER)} ` +
        `of JavaScript heap to be built and trained, but only ${bytes(heapFree)} is free`,
      "check num_hidden_layers (n_layer, num_layers) in config.json, or raise the heap with node --max-old-space-size",
    );
  }
}

/** The eos ids of a config as a list (configs may hold one id or several). */
export function eosIds(config: PretrainedConfig): number[] {
  const e = config.eos_token_id;
  return e === null || e === undefined ? [] : Array.isArray(e) ? e : [e];
}
