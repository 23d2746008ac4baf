/**
 * Text generation. The decoding loop is model-level machinery (models/generation/, as transformers'
 * GenerationMixin is a base of its models), so that GenerativeModel.generate is a real method; this layer is the
 * public entry point for it and the place for generation features that build on models (stop strings,
 * streaming, …).
 */
export * from "../models/generation/index.js";
export { TextStreamer, type StreamingDecoder, type TextStreamerOptions } from "./streamers.js";
