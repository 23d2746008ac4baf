/** Trainer callbacks: hooks at the points transformers' TrainerCallback offers, plus the state they see. */
import type { TrainingArguments } from "./arguments.js";

/** One entry of the log history (trainer_state.json "log_history"). */
export type LogEntry = Record<string, number>;

/** The progress of a run (HF's TrainerState; saved as trainer_state.json). */
export interface TrainerState {
  epoch: number;
  global_step: number;
  max_steps: number;
  num_train_epochs: number;
  logging_steps: number;
  eval_steps: number | null;
  save_steps: number;
  train_batch_size: number;
  num_input_tokens_seen: number;
  best_metric: number | null;
  best_model_checkpoint: string | null;
  log_history: LogEntry[];
}

/** Hooks called by the Trainer; implement any subset. */
export interface TrainerCallback {
  onTrainBegin?(args: TrainingArguments, state: TrainerState): void;
  onEpochBegin?(args: TrainingArguments, state: TrainerState): void;
  onStepEnd?(args: TrainingArguments, state: TrainerState): void;
  onLog?(args: TrainingArguments, state: TrainerState, logs: LogEntry): void;
  onEvaluate?(args: TrainingArguments, state: TrainerState, metrics: LogEntry): void;
  onSave?(args: TrainingArguments, state: TrainerState, checkpointDir: string): void;
  onEpochEnd?(args: TrainingArguments, state: TrainerState): void;
  onTrainEnd?(args: TrainingArguments, state: TrainerState): void;
}
