/**
 * TrainingArguments: transformers' names and defaults in one field table (type, range, default, help) that fills
 * and checks them. A field of transformers that the Trainer here does not implement is an error when set to a value
 * that would change training, and a warning when it only concerns infrastructure (logging, hubs, devices); a field no
 * transformers version has is an error with a "did you mean".
 */
import { ConfigError } from "../errors.js";
import {
  bool,
  checkFieldNames,
  checkFields,
  defaultsOf,
  field,
  integer,
  nonEmptyString,
  nullable,
  number,
  oneOf,
  type ForeignField,
} from "../io/config-fields.js";
import { SCHEDULER_NAMES } from "../optim/index.js";

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
  optim: "adamw_torch" | "adamw_torch_fused";
  lr_scheduler_type: (typeof SCHEDULER_NAMES)[number];
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
  /** No progress bar (by default the Trainer draws one when stderr is a terminal). */
  disable_tqdm: boolean | null;
  [field: string]: unknown;
}

const steps = integer({ min: 1 });
const strategy = oneOf("no", "steps", "epoch");
const STEP_COUNTS = "(transformers' fractions < 1 of the total steps are not supported)";

/** Every field the Trainer implements: type and range, default (transformers'), and what it does. */
const TRAINING_FIELDS = {
  output_dir: field(nonEmptyString, "trainer_output", "The folder for checkpoints, logs and the final adapter."),
  learning_rate: field(number({ min: 0 }), 5e-5, "The peak learning rate of AdamW."),
  per_device_train_batch_size: field(integer({ min: 1 }), 8, "Examples per training batch."),
  per_device_eval_batch_size: field(integer({ min: 1 }), 8, "Examples per evaluation batch."),
  gradient_accumulation_steps: field(
    integer({ min: 1 }),
    1,
    "Batches whose gradients are summed before each optimizer step.",
  ),
  num_train_epochs: field(
    number({ min: 0 }),
    3,
    "Epochs to train (a fraction trains part of the last one); max_steps > 0 overrides it.",
  ),
  max_steps: field(integer({ min: -1 }), -1, "Optimizer steps to train; -1: num_train_epochs decides."),
  weight_decay: field(number({ min: 0 }), 0, "AdamW's decoupled weight decay."),
  adam_beta1: field(number({ min: 0, below: 1 }), 0.9, "AdamW's decay rate of the first moment."),
  adam_beta2: field(number({ min: 0, below: 1 }), 0.999, "AdamW's decay rate of the second moment."),
  adam_epsilon: field(number({ min: 0 }), 1e-8, "AdamW's epsilon."),
  max_grad_norm: field(number({ min: 0 }), 1, "Clip the global gradient norm to this; 0 turns clipping off."),
  optim: field<TrainingArguments["optim"]>(
    oneOf("adamw_torch", "adamw_torch_fused"),
    "adamw_torch",
    "The optimizer: PyTorch's AdamW (both names mean the same here).",
  ),
  lr_scheduler_type: field<TrainingArguments["lr_scheduler_type"]>(
    oneOf(...SCHEDULER_NAMES),
    "linear",
    "The learning-rate schedule after warm-up.",
  ),
  warmup_ratio: field(
    number({ min: 0, max: 1 }),
    0,
    "Warm-up as a fraction of the total steps (when warmup_steps is 0).",
  ),
  warmup_steps: field(integer({ min: 0 }), 0, "Linear warm-up steps from 0 to learning_rate."),
  logging_steps: field(steps, 500, `Log the loss every this many steps ${STEP_COUNTS}.`),
  eval_strategy: field<TrainingArguments["eval_strategy"]>(
    strategy,
    "no",
    'When to evaluate: "no", every eval_steps ("steps") or each epoch.',
  ),
  eval_steps: field<number | null>(
    nullable(steps),
    null,
    `Steps between evaluations; null: logging_steps ${STEP_COUNTS}.`,
  ),
  save_strategy: field<TrainingArguments["save_strategy"]>(
    strategy,
    "steps",
    'When to write a checkpoint: "no", every save_steps ("steps") or each epoch.',
  ),
  save_steps: field(steps, 500, `Steps between checkpoints ${STEP_COUNTS}.`),
  save_total_limit: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "Keep at most this many checkpoints (the oldest are deleted); null: all.",
  ),
  load_best_model_at_end: field(bool, false, "Load the best checkpoint (by metric_for_best_model) when training ends."),
  metric_for_best_model: field<string | null>(
    nullable(nonEmptyString),
    null,
    'The metric that picks the best checkpoint; null: "loss" with load_best_model_at_end.',
  ),
  greater_is_better: field<boolean | null>(
    nullable(bool),
    null,
    "Whether a larger metric is better; null: false for losses, true otherwise.",
  ),
  seed: field(integer({ min: 0 }), 42, "The seed of every random draw (initialisation, dropout, shuffling)."),
  bf16: field(
    bool,
    false,
    "bfloat16 mixed precision: products round their inputs to bfloat16 and accumulate in float32.",
  ),
  fp16: field(bool, false, "float16 mixed precision with dynamic loss scaling (GradScaler)."),
  gradient_checkpointing: field(
    bool,
    false,
    "Keep only each decoder layer's input and recompute the layer during backward.",
  ),
  dataloader_drop_last: field(bool, false, "Drop the last incomplete batch of each epoch."),
  disable_tqdm: field<boolean | null>(
    nullable(bool),
    null,
    "Turn off the progress bar the Trainer draws on a terminal (null: shown).",
  ),
} as const;

/** transformers fields that change what is trained: set to anything but their default, they are refused. */
const TRANSFORMERS_TRAINING: Record<string, unknown> = {
  bf16_full_eval: false,
  fp16_full_eval: false,
  optim_args: null,
  optim_target_modules: null,
  adafactor: false,
  lr_scheduler_kwargs: {},
  label_smoothing_factor: 0,
  group_by_length: false,
  train_sampling_strategy: "random",
  data_seed: null,
  neftune_noise_alpha: null,
  per_gpu_train_batch_size: null,
  per_gpu_eval_batch_size: null,
  logging_strategy: "steps",
  eval_delay: 0,
  label_names: null,
  ignore_data_skip: false,
  save_only_model: false,
  eval_on_start: false,
  use_liger_kernel: false,
  liger_kernel_config: null,
  average_tokens_across_devices: true,
  include_for_metrics: [],
  batch_eval_metrics: false,
  prediction_loss_only: false,
};

/** transformers fields about infrastructure (logging, hubs, devices, distribution): no effect here but a warning. */
const TRANSFORMERS_INFRASTRUCTURE = [
  "overwrite_output_dir",
  "do_train",
  "do_eval",
  "do_predict",
  "eval_accumulation_steps",
  "torch_empty_cache_steps",
  "log_level",
  "log_level_replica",
  "log_on_each_node",
  "logging_dir",
  "logging_first_step",
  "logging_nan_inf_filter",
  "save_safetensors",
  "save_on_each_node",
  "restore_callback_states_from_checkpoint",
  "no_cuda",
  "use_cpu",
  "use_mps_device",
  "jit_mode_eval",
  "use_ipex",
  "fp16_opt_level",
  "half_precision_backend",
  "tf32",
  "local_rank",
  "ddp_backend",
  "tpu_num_cores",
  "tpu_metrics_debug",
  "debug",
  "dataloader_num_workers",
  "dataloader_prefetch_factor",
  "past_index",
  "run_name",
  "remove_unused_columns",
  "fsdp",
  "fsdp_min_num_params",
  "fsdp_config",
  "fsdp_transformer_layer_cls_to_wrap",
  "accelerator_config",
  "deepspeed",
  "length_column_name",
  "report_to",
  "ddp_find_unused_parameters",
  "ddp_bucket_cap_mb",
  "ddp_broadcast_buffers",
  "dataloader_pin_memory",
  "dataloader_persistent_workers",
  "skip_memory_metrics",
  "use_legacy_prediction_loop",
  "push_to_hub",
  "resume_from_checkpoint",
  "hub_model_id",
  "hub_strategy",
  "hub_token",
  "hub_private_repo",
  "hub_always_push",
  "hub_revision",
  "gradient_checkpointing_kwargs",
  "include_inputs_for_metrics",
  "eval_do_concat_batches",
  "fp16_backend",
  "push_to_hub_model_id",
  "push_to_hub_organization",
  "push_to_hub_token",
  "mp_parameters",
  "auto_find_batch_size",
  "full_determinism",
  "torchdynamo",
  "ray_scope",
  "ddp_timeout",
  "torch_compile",
  "torch_compile_backend",
  "torch_compile_mode",
  "dispatch_batches",
  "split_batches",
  "include_tokens_per_second",
  "include_num_input_tokens_seen",
  "eval_use_gather_object",
  "use_cache",
  "project",
  "trackio_space_id",
  "enable_jit_checkpoint",
  "parallelism_config",
  "tp_size",
];

const FOREIGN: Record<string, ForeignField> = {
  ...Object.fromEntries(
    Object.entries(TRANSFORMERS_TRAINING).map(([name, value]) => [
      name,
      { versions: "TrainingArguments", default: value },
    ]),
  ),
  ...Object.fromEntries(
    TRANSFORMERS_INFRASTRUCTURE.map((name) => [
      name,
      { versions: "TrainingArguments", default: undefined, inert: true },
    ]),
  ),
};

function fail(msg: string, hint?: string): never {
  throw new ConfigError(`TrainingArguments: ${msg}`, hint);
}

/** Fill defaults and validate every field (impossible combinations get an error saying what to change). */
export function TrainingArguments(
  fields: Partial<TrainingArguments> & { evaluation_strategy?: string },
): TrainingArguments {
  const { evaluation_strategy: legacyEval, ...given } = fields as Record<string, unknown>;
  checkFieldNames("TrainingArguments", "transformers", TRAINING_FIELDS, FOREIGN, given, "code");
  const infrastructure = Object.keys(given).filter((k) => TRANSFORMERS_INFRASTRUCTURE.includes(k));
  if (infrastructure.length > 0) {
    process.emitWarning(
      `TrainingArguments: ${infrastructure.join(", ")} concern(s) infrastructure that peft-ts's ` +
        `Trainer does not have (ignored)`,
    );
  }
  const a = { ...defaultsOf(TRAINING_FIELDS), ...given } as TrainingArguments;
  const legacy = legacyEval !== undefined && legacyEval !== null && given["eval_strategy"] === undefined;
  if (legacy) a.eval_strategy = legacyEval as TrainingArguments["eval_strategy"];
  checkFields("TrainingArguments", TRAINING_FIELDS, a);
  if (a.max_steps <= 0 && !(a.num_train_epochs > 0)) fail("set max_steps > 0 or num_train_epochs > 0");
  if (a.eval_strategy === "steps") a.eval_steps ??= a.logging_steps;
  if (a.load_best_model_at_end) {
    if (a.eval_strategy === "no")
      fail('load_best_model_at_end needs an eval_strategy ("steps" or "epoch") to know which checkpoint is best');
    if (a.save_strategy !== a.eval_strategy)
      fail(
        `load_best_model_at_end needs save_strategy to equal eval_strategy (got ` +
          `"${a.save_strategy}" and "${a.eval_strategy}")`,
      );
    if (a.eval_strategy === "steps" && a.save_steps % a.eval_steps! !== 0)
      fail(
        `load_best_model_at_end needs save_steps (${a.save_steps}) to be a multiple of eval_steps (${a.eval_steps})`,
      );
  }
  a.metric_for_best_model ??= a.load_best_model_at_end ? "loss" : null;
  if (a.metric_for_best_model !== null)
    a.greater_is_better ??= !["loss", "eval_loss"].includes(a.metric_for_best_model);
  if (a.bf16 && a.fp16) fail("bf16 and fp16 are both true; choose one mixed-precision format");
  return a;
}
