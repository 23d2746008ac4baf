/** Tokenizers: Hugging Face tokenizer folders through @huggingface/tokenizers, chat templates through @huggingface/jinja. */
export { AutoTokenizer } from "./AutoTokenizer.js";
export { PreTrainedTokenizer } from "./PreTrainedTokenizer.js";
export type { TokenizerOverrides } from "./config.js";
export { readTokenizerFolder, type TokenizerFiles } from "./files.js";
export { SPECIAL_TOKEN_KEYS, type SpecialTokenKey } from "./specialTokens.js";
export type { ChatTemplates } from "./chatTemplate.js";
export type * from "./types.js";
