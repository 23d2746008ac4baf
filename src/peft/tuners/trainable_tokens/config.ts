/**
 * TrainableTokensConfig: peft 0.15.2's fields and defaults. Only the embedding rows of the listed token ids are
 * trained (a dense [k, dim] delta replaces those rows); the rest of the model stays frozen.
 */
import { configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, field, integer, listOf, pick } from "../../../io/config-fields.js";

/** Trainable tokens configuration (HF field names). */
export interface TrainableTokensConfig extends PeftConfig {
  /** Token ids whose embedding rows are trained. */
  token_indices: number[];
  /** The embedding layer(s) to adapt; null: the model's input embeddings. */
  target_modules: string | string[] | null;
  /** Start the trained rows at the embeddings' values (true) or at uniform [0, 1) noise (false). */
  init_weights: boolean;
}

/** Every trainable-tokens field (peft 0.15.2): type and range, default, and what it does. */
export const TRAINABLE_TOKENS_FIELDS: MethodFields<TrainableTokensConfig> = {
  token_indices: field<number[]>(
    listOf(integer({ min: 0 })),
    [],
    "Token ids whose embedding rows are trained (the others stay frozen).",
  ),
  ...pick(TARGETING_FIELDS, "target_modules"),
  init_weights: field(
    bool,
    true,
    "Start the trained rows at the embeddings' values (true) or at uniform [0, 1) noise (false).",
  ),
};

/** Build a trainable-tokens config from fields over the defaults (`fromFile`: lenient with other peft versions' fields). */
export const makeTrainableTokensConfig = configBuilder<TrainableTokensConfig>(
  PeftType.TRAINABLE_TOKENS,
  TRAINABLE_TOKENS_FIELDS,
  () => {},
);

/** A trainable-tokens config from user fields (TypeScript users) — defaults filled in, validated. */
export function TrainableTokensConfig(fields: Partial<TrainableTokensConfig> = {}): TrainableTokensConfig {
  return makeTrainableTokensConfig(fields, false);
}
