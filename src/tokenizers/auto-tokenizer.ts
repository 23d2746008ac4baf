/** AutoTokenizer: loads a tokenizer folder the way transformers' AutoTokenizer.from_pretrained does (fast tokenizers only). */
import { resolvePretrained, type HubOptions } from "../io/hub.js";
import { hubOptionsOf } from "../io/hub-cache.js";
import { resolvePretrainedSync } from "../io/hub-sync.js";
import { readTokenizerFolder } from "./files.js";
import type { TokenizerOverrides } from "./config.js";
import { PreTrainedTokenizer } from "./pretrained-tokenizer.js";

/** Entry point for loading tokenizers from local Hugging Face folders. */
// biome-ignore lint/complexity/noStaticOnlyClass: transformers' API shape, AutoTokenizer.fromPretrained
export class AutoTokenizer {
  /** Loads tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, chat_template.jinja) from a folder or a Hub repo id. */
  static async fromPretrained(
    nameOrPath: string,
    overrides: TokenizerOverrides & HubOptions = {},
  ): Promise<PreTrainedTokenizer> {
    return AutoTokenizer.load(await resolvePretrained(nameOrPath, "tokenizer", hubOptionsOf(overrides)), overrides);
  }

  /** Synchronous fromPretrained, for code that cannot await. */
  static fromPretrainedSync(nameOrPath: string, overrides: TokenizerOverrides & HubOptions = {}): PreTrainedTokenizer {
    return AutoTokenizer.load(resolvePretrainedSync(nameOrPath, "tokenizer", overrides), overrides);
  }

  private static load(dir: string, options: TokenizerOverrides & HubOptions): PreTrainedTokenizer {
    const hubKeys = new Set(Object.keys(hubOptionsOf(options)));
    const overrides = Object.fromEntries(
      Object.entries(options).filter(([k]) => !hubKeys.has(k)),
    ) as TokenizerOverrides;
    return new PreTrainedTokenizer(readTokenizerFolder(dir), overrides);
  }
}
