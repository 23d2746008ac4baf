/**
 * peft-ts: parameter-efficient fine-tuning of Hugging Face transformer models in TypeScript.
 * The names users of Python's peft/transformers know, in camelCase; lower layers are under subpaths
 * (peft-ts/tensor, peft-ts/nn, peft-ts/optim, peft-ts/io).
 */
export * from "./peft/index.js";
export {
  AutoModel,
  AutoModelForCausalLM,
  AutoModelForSeq2SeqLM,
  AutoModelForSequenceClassification,
  AutoModelForTokenClassification,
  AutoModelForQuestionAnswering,
} from "./models/auto.js";
export type { FromConfigOptions } from "./models/auto.js";
export { PreTrainedModel, MODEL_DTYPES } from "./models/pretrained.js";
export type { FromPretrainedOptions, ModelDType } from "./models/pretrained.js";
export { dequantizeModel } from "./models/quantization.js";
export type { BitsAndBytesConfig } from "./models/quantization.js";
export type { ModelInputs, Seq2SeqInputs, ModelOutput, BaseModelOutput, PastKeyValues } from "./models/outputs.js";
export { AutoTokenizer, PreTrainedTokenizer } from "./tokenizers/index.js";
export { generate, GenerativeModel, asGenerative } from "./generation/index.js";
export type { GenerateOptions } from "./generation/index.js";
export { generateDetailed, generateStream, TextStreamer } from "./generation/index.js";
export type { GenerateOutput, GenerationStep, FinishReason, Streamer, SamplingOptions } from "./generation/index.js";
export { PeftServer, ServedModel, DecodeEngine } from "./serve/index.js";
export type { ServeOptions, SequenceRequest, SequenceResult, EngineStats } from "./serve/index.js";
export * from "./train/index.js";
export { tensor, tidy, keep, noGrad, manualSeed, memory } from "./tensor/index.js";
export type { Tensor } from "./tensor/index.js";
export {
  PeftError,
  ConfigError,
  CheckpointError,
  ModelMismatchError,
  DatasetError,
  EnvironmentError,
  HubError,
} from "./errors.js";
export type { PeftErrorCode, HubErrorReason } from "./errors.js";
export { snapshotDownload, hfHubDownload, hubCacheDir } from "./io/hub.js";
export type { HubOptions, SnapshotOptions } from "./io/hub.js";
export { createRepo, createCommit, uploadFolder } from "./io/hub-upload.js";
export type { PushOptions, CommitInfo, CommitFile } from "./io/hub-upload.js";
export { exportModelToGguf, exportLoraToGguf } from "./export/gguf.js";
export type { GgufOutType, GgufModelExportOptions, GgufAdapterExportOptions } from "./export/gguf.js";
// PEFT_TS_PROFILE=1 (or setProfiling(true) before the first tensor) times every kernel; profileReport() prints the table.
export { isProfiling, setProfiling, profileReport, profileReset, profileEntries } from "./backend/index.js";
