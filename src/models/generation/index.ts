/** The decoding loop, its logits processors and the generative model base class. */
export { chooseToken, generate, generateDetailed, generateStream, nanLogits, uniformDraw } from "./generate.js";
export type {
  FinishReason,
  GenerateOptions,
  GenerateOutput,
  GenerationStep,
  Generative,
  SamplingOptions,
  Streamer,
} from "./generate.js";
export * from "./logits.js";
export { StopStrings, stopStringIndex, type TokenDecoder } from "./stopping.js";
export { GenerativeModel, asGenerative, withForward } from "./generative-model.js";
