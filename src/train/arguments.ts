/** TrainingArguments: transformers' names and defaults, validated with clear errors. */

/** Training configuration (HF field names). */
export interface TrainingArguments {
  output_dir: string;
  learning_rate: number;
  per_device_train_batch_size: number;
  per_device_eval_batch_size: number;
  gradient_accumulation_steps: number;
  num_train_epochs: number;
  max_steps: number;
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  max_grad_norm: number;
  lr_scheduler_type: "linear" | "cosine" | "constant" | "constant_with_warmup" | "cosine_with_restarts" | "polynomial" | "inverse_sqrt";
  warmup_ratio: number;
  warmup_steps: number;
  logging_steps: number;
  eval_strategy: "no" | "steps" | "epoch";
  eval_steps: number | null;
  save_strategy: "no" | "steps" | "epoch";
  save_steps: number;
  save_total_limit: number | null;
  load_best_model_at_end: boolean;
  metric_for_best_model: string | null;
  greater_is_better: boolean | null;
  seed: number;
  /** Mixed precision: matrix products round their inputs to bfloat16 (float32 accumulation); the rest stays float32. */
  bf16: boolean;
  /** The same with float16, with dynamic loss scaling so that small gradients do not flush to zero. */
  fp16: boolean;
  /** Recompute each decoder layer during backward instead of keeping its activations. */
  gradient_checkpointing: boolean;
  dataloader_drop_last: boolean;
  [field: string]: unknown;
}

const DEFAULTS: TrainingArguments = {
  output_dir: "trainer_output", learning_rate: 5e-5, per_device_train_batch_size: 8, per_device_eval_batch_size: 8,
  gradient_accumulation_steps: 1, num_train_epochs: 3, max_steps: -1, weight_decay: 0, adam_beta1: 0.9, adam_beta2: 0.999,
  adam_epsilon: 1e-8, max_grad_norm: 1, lr_scheduler_type: "linear", warmup_ratio: 0, warmup_steps: 0, logging_steps: 500,
  eval_strategy: "no", eval_steps: null, save_strategy: "steps", save_steps: 500, save_total_limit: null,
  load_best_model_at_end: false, metric_for_best_model: null, greater_is_better: null, seed: 42, bf16: false,
  fp16: false, gradient_checkpointing: false, dataloader_drop_last: false,
};

function fail(msg: string): never {
  throw new Error(`TrainingArguments: ${msg}`);
}

/** Fill defaults and validate (impossible combinations get an error saying what to change). */
export function TrainingArguments(fields: Partial<TrainingArguments> & { evaluation_strategy?: string }): TrainingArguments {
  const a: TrainingArguments = { ...DEFAULTS, ...fields };
  if (fields.evaluation_strategy !== undefined && fields.eval_strategy === undefined) a.eval_strategy = fields.evaluation_strategy as TrainingArguments["eval_strategy"];
  if (!a.output_dir) fail("output_dir is required");
  for (const k of ["per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"] as const) {
    if (!Number.isInteger(a[k]) || a[k] < 1) fail(`${k} must be a positive integer, got ${a[k]}`);
  }
  if (!(a.learning_rate >= 0)) fail(`learning_rate must be ≥ 0, got ${a.learning_rate}`);
  if (!(a.warmup_ratio >= 0 && a.warmup_ratio <= 1)) fail(`warmup_ratio must be in [0, 1], got ${a.warmup_ratio}`);
  if (a.max_steps <= 0 && !(a.num_train_epochs > 0)) fail("set max_steps > 0 or num_train_epochs > 0");
  if (!["no", "steps", "epoch"].includes(a.eval_strategy)) fail(`eval_strategy must be "no", "steps" or "epoch", got "${a.eval_strategy}"`);
  if (!["no", "steps", "epoch"].includes(a.save_strategy)) fail(`save_strategy must be "no", "steps" or "epoch", got "${a.save_strategy}"`);
  if (a.logging_steps <= 0) fail(`logging_steps must be > 0, got ${a.logging_steps}`);
  if (a.eval_strategy === "steps") a.eval_steps ??= a.logging_steps;
  if (a.save_total_limit !== null && a.save_total_limit < 1) fail(`save_total_limit must be ≥ 1 or null, got ${a.save_total_limit}`);
  if (a.load_best_model_at_end) {
    if (a.eval_strategy === "no") fail("load_best_model_at_end needs an eval_strategy (\"steps\" or \"epoch\") to know which checkpoint is best");
    if (a.save_strategy !== a.eval_strategy) fail(`load_best_model_at_end needs save_strategy to equal eval_strategy (got "${a.save_strategy}" and "${a.eval_strategy}")`);
    if (a.eval_strategy === "steps" && a.save_steps % a.eval_steps! !== 0) fail(`load_best_model_at_end needs save_steps (${a.save_steps}) to be a multiple of eval_steps (${a.eval_steps})`);
  }
  a.metric_for_best_model ??= a.load_best_model_at_end ? "loss" : null;
  if (a.metric_for_best_model !== null) a.greater_is_better ??= !["loss", "eval_loss"].includes(a.metric_for_best_model);
  if (a.bf16 && a.fp16) fail("bf16 and fp16 are both true; choose one mixed-precision format");
  return a;
}
