/** The decoding loop, its logits processors and the generative model base class. */
export { chooseTokens, generate, generateDetailed, generateStream, uniformDraw } from "./generate.js";
export type {
  FinishReason,
  GenerateOptions,
  GenerateOutput,
  GenerationStep,
  Generative,
  RowChoice,
  SamplingOptions,
  Streamer,
  TokenChoice,
} from "./generate.js";
export * from "./logits.js";
export { StopStrings, stopStringIndex, type TokenDecoder } from "./stopping.js";
export { IncrementalText, type IdsDecoder } from "./incremental-text.js";
export { GenerativeModel, asGenerative, withForward } from "./generative-model.js";
