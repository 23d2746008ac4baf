/** The decoding loop, its logits processors and the generative model base class. */
export { generate } from "./generate.js";
export type { GenerateOptions, Generative } from "./generate.js";
export * from "./logits.js";
export { GenerativeModel, asGenerative, withForward } from "./generative-model.js";
