/** PromptEmbedding: prompt tuning's virtual-token embeddings (HF's PromptEmbedding), with RANDOM / TEXT / SAMPLE_VOCAB init. */
import type { EmbeddingLayer } from "../../../nn/index.js";
import { type Generator, defaultGenerator, indexSelect, noGrad, tensor, type Tensor } from "../../../tensor/index.js";
import { AutoTokenizer, type TokenizerOverrides } from "../../../tokenizers/index.js";
import { PromptLearningEncoder } from "../prompt-learning.js";
import { PromptTuningInit, type PromptTuningConfig } from "./config.js";

/** tokenizer_kwargs (transformers' snake_case keyword arguments) as this library's tokenizer overrides. */
function tokenizerOverrides(kwargs: Record<string, unknown> | null): TokenizerOverrides {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(kwargs ?? {}))
    out[k.replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase())] = v;
  return out as TokenizerOverrides;
}

/**
 * HF's rule for TEXT init: the token ids of the text (with the tokenizer's special tokens), cut to `rows` or
 * repeated until they cover it.
 */
export function initTokenIds(textIds: readonly number[], rows: number): number[] {
  if (textIds.length === 0) throw new Error("prompt_tuning_init_text tokenizes to no tokens; give a non-empty text");
  const reps = Math.ceil(rows / textIds.length);
  return Array.from({ length: reps }, () => textIds)
    .flat()
    .slice(0, rows);
}

/** One learned vector per virtual token: an Embedding of num_virtual_tokens · num_transformer_submodules rows. */
export class PromptEmbedding extends PromptLearningEncoder {
  /**
   * @param config a prepared config (token_dim and num_transformer_submodules filled in)
   * @param wordEmbeddings the model's token embeddings (TEXT and SAMPLE_VOCAB copy rows of it)
   */
  constructor(config: PromptTuningConfig, wordEmbeddings: EmbeddingLayer, generator: Generator = defaultGenerator) {
    const rows = config.num_virtual_tokens! * config.num_transformer_submodules!;
    super(rows, config.token_dim!, config.token_dim!, true);
    if (config.inference_mode || config.prompt_tuning_init === PromptTuningInit.RANDOM) return;
    const [vocab, width] = wordEmbeddings.weight.shape as [number, number];
    if (width !== config.token_dim) {
      throw new Error(`prompt tuning: token_dim ${config.token_dim} differs from the model's embedding width ${width}`);
    }
    let ids: number[];
    if (config.prompt_tuning_init === PromptTuningInit.TEXT) {
      const tokenizer = AutoTokenizer.fromPretrainedSync(
        config.tokenizer_name_or_path!,
        tokenizerOverrides(config.tokenizer_kwargs),
      );
      ids = initTokenIds(tokenizer.encode(config.prompt_tuning_init_text!), rows);
      const bad = ids.find((id) => id < 0 || id >= vocab);
      if (bad !== undefined)
        throw new Error(
          `prompt_tuning_init_text: the tokenizer at ${config.tokenizer_name_or_path} gives id ` +
            `${bad}, outside the model's vocabulary of ${vocab}; is it the model's tokenizer?`,
        );
    } else {
      ids = Array.from({ length: rows }, () => generator.int(vocab));
    }
    noGrad(() => {
      const idx: Tensor = tensor(Int32Array.from(ids), [rows]);
      const rowsOf = indexSelect(wordEmbeddings.weight, 0, idx);
      this.embedding.weight.copy_(rowsOf);
      rowsOf.dispose();
      idx.dispose();
    });
  }

  protected networkNames(): readonly string[] {
    return [];
  }

  protected reparameterize(rows: Tensor): Tensor {
    return rows;
  }
}
