/**
 * Typed errors with stable codes, so applications can tell a user's mistake from a bug and handle each kind.
 * Every layer may throw them (this file imports nothing). `code` never changes once published; messages may.
 */

/** The stable codes of PeftError, one per kind of problem. */
export type PeftErrorCode =
  | "CONFIG_INVALID"
  | "CHECKPOINT_INVALID"
  | "MODEL_MISMATCH"
  | "DATASET_INVALID"
  | "ENVIRONMENT_INVALID"
  | "HUB_ERROR";

/** The base of peft-ts' typed errors: `code` says what kind of problem it is, `hint` how to fix it when known. */
export class PeftError extends Error {
  constructor(
    readonly code: PeftErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A config (PEFT method, TrainingArguments, model config.json, CLI config) with a wrong field, type or value. */
export class ConfigError extends PeftError {
  constructor(message: string, hint?: string) {
    super("CONFIG_INVALID", message, hint);
  }
}

/** A file or folder on disk (checkpoint, adapter, weights, tokenizer) that is missing, corrupt or of another run. */
export class CheckpointError extends PeftError {
  constructor(message: string, hint?: string) {
    super("CHECKPOINT_INVALID", message, hint);
  }
}

/** Shapes or models that do not fit together (an adapter for another base model, a state dict of other shapes). */
export class ModelMismatchError extends PeftError {
  constructor(message: string, hint?: string) {
    super("MODEL_MISMATCH", message, hint);
  }
}

/** A dataset file or record that cannot be used for training. */
export class DatasetError extends PeftError {
  constructor(message: string, hint?: string) {
    super("DATASET_INVALID", message, hint);
  }
}

/** An environment variable or machine setting that is out of range. */
export class EnvironmentError extends PeftError {
  constructor(message: string, hint?: string) {
    super("ENVIRONMENT_INVALID", message, hint);
  }
}

/** What went wrong talking to the Hugging Face Hub (or reading its cache), for code that reacts to one case. */
export type HubErrorReason =
  | "gated"
  | "unauthorized"
  | "repo-not-found"
  | "revision-not-found"
  | "entry-not-found"
  | "offline-not-cached"
  | "network"
  | "corrupt-download"
  | "http";

/** A Hub download or upload that failed: `reason` says which case, `hint` what to do (get access, go offline, …). */
export class HubError extends PeftError {
  constructor(
    readonly reason: HubErrorReason,
    message: string,
    hint?: string,
    readonly status?: number,
    /** The commit the Hub named in its answer (X-Repo-Commit), when it did. */
    readonly commit?: string,
  ) {
    super("HUB_ERROR", message, hint);
  }
}
