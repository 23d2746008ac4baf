/** Tokenizers: Hugging Face tokenizer folders through @huggingface/tokenizers, chat templates through @huggingface/jinja. */
export { AutoTokenizer } from "./auto-tokenizer.js";
export { PreTrainedTokenizer, type TensorCallOptions } from "./pretrained-tokenizer.js";
export type { TokenizerOverrides } from "./config.js";
export { readTokenizerFolder, type TokenizerFiles } from "./files.js";
export { SPECIAL_TOKEN_KEYS, type SpecialTokenKey } from "./special-tokens.js";
export type { ChatTemplates } from "./chat-template.js";
export type * from "./types.js";
