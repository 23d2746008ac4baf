/** The decoding loop, its logits processors and the generative model base class. */
export { generate, generateDetailed, generateStream } from "./generate.js";
export type { FinishReason, GenerateOptions, GenerateOutput, GenerationStep, Generative, Streamer } from "./generate.js";
export * from "./logits.js";
export { stopStringIndex, type TokenDecoder } from "./stopping.js";
export { GenerativeModel, asGenerative } from "./generative-model.js";
