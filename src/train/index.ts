/** Training: TrainingArguments, Trainer, datasets, collators, chat formatting, callbacks, checkpoints. */
export { TrainingArguments } from "./arguments.js";
export { Trainer, decayParameterNames } from "./trainer.js";
export { GradScaler, autocastFormat } from "./mixed-precision.js";
export type { TrainerOptions, TrainOutput, EvalPrediction, TrainableModel } from "./trainer.js";
export type { TrainerCallback, TrainerState, LogEntry } from "./callbacks.js";
export { ProgressCallback, JsonlLogCallback, formatDuration } from "./progress.js";
export type { ProgressStream } from "./progress.js";
export { Dataset, loadDataset, shuffledIndices } from "./data.js";
export type { Example } from "./data.js";
export { DataCollatorForSeq2Seq, DataCollatorWithPadding } from "./collators.js";
export type { Batch, DataCollator, PaddingOptions } from "./collators.js";
export { tokenizeInstruction, tokenizeText, tokenizeClassification, promptMessages } from "./chat.js";
export type { InstructionRecord, InstructionOptions } from "./chat.js";
export {
  listCheckpoints,
  saveCheckpoint,
  loadCheckpointState,
  runFingerprint,
  checkRunFingerprint,
} from "./checkpoint.js";
export type { CheckpointParts, RunFingerprint } from "./checkpoint.js";
