/**
 * Model configurations: the parsed `config.json` with Hugging Face's field names and defaults.
 * Every field of the file is kept (unknown ones included), so savePretrained writes back what was read.
 */

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
  for (const field of required) {
    if (raw[field] === undefined && (defaults as Record<string, unknown>)[field] === undefined) {
      throw new Error(`config.json for model_type "${modelType}" is missing the required field "${field}"`);
    }
  }
  const id2label = raw["id2label"] as Record<string, string> | undefined;
  const numLabels = (raw["num_labels"] as number | undefined) ?? (id2label ? Object.keys(id2label).length : 2);
  return { tie_word_embeddings: true, ...defaults, ...raw, model_type: modelType, num_labels: numLabels } as C;
}

/** The eos ids of a config as a list (configs may hold one id or several). */
export function eosIds(config: PretrainedConfig): number[] {
  const e = config.eos_token_id;
  return e === null || e === undefined ? [] : Array.isArray(e) ? e : [e];
}
