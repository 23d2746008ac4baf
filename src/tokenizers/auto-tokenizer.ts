/** AutoTokenizer: loads a tokenizer folder the way transformers' AutoTokenizer.from_pretrained does (fast tokenizers only). */
import { readTokenizerFolder } from "./files.js";
import type { TokenizerOverrides } from "./config.js";
import { PreTrainedTokenizer } from "./pretrained-tokenizer.js";

/** Entry point for loading tokenizers from local Hugging Face folders. */
export class AutoTokenizer {
  /** Loads tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, chat_template.jinja) from `dir`. */
  static async fromPretrained(dir: string, overrides: TokenizerOverrides = {}): Promise<PreTrainedTokenizer> {
    return AutoTokenizer.fromPretrainedSync(dir, overrides);
  }

  /** Synchronous fromPretrained, for code that cannot await. */
  static fromPretrainedSync(dir: string, overrides: TokenizerOverrides = {}): PreTrainedTokenizer {
    return new PreTrainedTokenizer(readTokenizerFolder(dir), overrides);
  }
}
