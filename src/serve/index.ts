/** Serving: the OpenAI-compatible server, the model it holds, and the continuous-batching engine. */
export { PeftServer, type ServeOptions } from "./server.js";
export { ServedModel } from "./model.js";
export {
  DecodeEngine,
  Sequence,
  type EngineModel,
  type EngineOptions,
  type EngineStats,
  type SequenceRequest,
  type SequenceResult,
} from "./engine.js";
export { ApiError } from "./protocol.js";
