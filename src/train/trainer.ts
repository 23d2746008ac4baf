/**
 * Trainer: transformers' training loop for PEFT (or plain) models — AdamW over trainable parameters (no weight
 * decay on biases and norm weights), LR schedule with warmup, gradient accumulation and clipping, logging,
 * evaluation, checkpoints with exact resume, callbacks. Each micro-batch runs in its own memory scope.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CheckpointError } from "../errors.js";
import { type Tensor, Generator, autocast, manualSeed, mul, noGrad, tidy } from "../tensor/index.js";
import { LayerNorm, RMSNorm, type Module } from "../nn/index.js";
import { AdamW, clipGradNorm, getScheduler, type LRScheduler } from "../optim/index.js";
import type { BaseModelOutput, ModelOutput, Seq2SeqInputs } from "../models/outputs.js";
import { PreTrainedModel, setGradientCheckpointing } from "../models/pretrained.js";
import { PeftModel } from "../peft/index.js";
import { loadModelWeights } from "../io/safetensors.js";
import type { TrainingArguments } from "./arguments.js";
import type { LogEntry, TrainerCallback, TrainerState } from "./callbacks.js";
import { type Dataset, shuffledIndices, type Example } from "./data.js";
import type { Batch, DataCollator } from "./collators.js";
import { ProgressCallback } from "./progress.js";
import {
  checkRunFingerprint,
  listCheckpoints,
  loadCheckpointState,
  removeStaleTemporaries,
  runFingerprint,
  saveCheckpoint,
  type RunFingerprint,
} from "./checkpoint.js";
import { GradScaler, autocastFormat } from "./mixed-precision.js";

/** A model the Trainer can train: forward with labels returns a loss; savePretrained writes its files. */
export interface TrainableModel extends Module {
  forward(inputs: Seq2SeqInputs): ModelOutput | BaseModelOutput;
  savePretrained(dir: string): void;
}

/** What computeMetrics receives: logits and labels of the whole eval set, row by row. */
export interface EvalPrediction {
  predictions: Float32Array[];
  labelIds: Int32Array[];
}

/** Options of the Trainer (transformers' keyword arguments in camelCase). */
export interface TrainerOptions {
  model: TrainableModel;
  args: TrainingArguments;
  trainDataset?: Dataset;
  evalDataset?: Dataset;
  dataCollator: DataCollator;
  computeMetrics?: (p: EvalPrediction) => Record<string, number>;
  callbacks?: TrainerCallback[];
  /** Reloads weights from a checkpoint folder (PEFT models: the adapter); needed for resume and load_best_model_at_end. */
  loadWeights?: (checkpointDir: string) => void;
}

/** Result of train(). */
export interface TrainOutput {
  globalStep: number;
  /** The mean training loss of the steps this call ran. */
  trainingLoss: number;
  metrics: Record<string, number>;
  /** The first step whose loss or gradient norm was NaN or ±Infinity (a warning named it then), or null. */
  divergedAtStep: number | null;
  /** Optimizer steps this call ran (0 when a finished run is resumed; trainingLoss is then its last logged loss). */
  stepsRun: number;
}

/** Weight files whose presence means a folder already holds a saved model or adapter. */
const SAVED_WEIGHTS = ["adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json"];

/** "NaN or ±Infinity in N tensors (a, b, …)" for messages. */
function describeNonFinite(names: string[]): string {
  return (
    `NaN or infinite values in ${names.length} trainable tensor(s) ` +
    `(${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""})`
  );
}

/** Names of parameters that get weight decay: everything but biases and LayerNorm/RMSNorm weights (HF's rule). */
export function decayParameterNames(model: Module): Set<string> {
  const normPaths = new Set(
    model
      .namedModules()
      .filter(([, m]) => m instanceof LayerNorm || m instanceof RMSNorm)
      .map(([n]) => n),
  );
  return new Set(
    model
      .namedParameters()
      .filter(([name]) => !name.endsWith("bias") && !normPaths.has(name.slice(0, name.lastIndexOf("."))))
      .map(([name]) => name),
  );
}

/** How checkpoints are reloaded: PEFT models reload their active adapter, plain models their full weights. */
function defaultWeightLoader(model: TrainableModel): (dir: string) => void {
  if (model instanceof PeftModel) return (dir) => model.loadAdapterWeights(dir, model.activeAdapter);
  if (model instanceof PreTrainedModel) {
    return (dir) => {
      const weights = loadModelWeights(dir);
      noGrad(() => model.loadWeights(weights));
      for (const t of weights.values()) t.dispose();
    };
  }
  return () => {
    throw new Error("this model type cannot be reloaded from a checkpoint; pass the Trainer's loadWeights option");
  };
}

/** transformers' Trainer, for CPU training with peft-ts models. */
export class Trainer {
  readonly args: TrainingArguments;
  readonly model: TrainableModel;
  state: TrainerState;
  private readonly callbacks: TrainerCallback[];
  private optimizer: AdamW | null = null;
  private scheduler: LRScheduler | null = null;

  private readonly loadWeights: (dir: string) => void;
  /** Micro-batches of the current train() call skipped because their labels were all -100. */
  private skippedBatches = 0;
  /** What made the current run (recorded in its checkpoints). */
  private fingerprint: RunFingerprint | null = null;
  /** The first step of the current train() call whose loss or gradient norm was not finite. */
  private divergedAtStep: number | null = null;

  constructor(private readonly opts: TrainerOptions) {
    this.args = opts.args;
    this.loadWeights = opts.loadWeights ?? defaultWeightLoader(opts.model);
    this.model = opts.model;
    this.callbacks = [...(opts.callbacks ?? [])];
    // As HF's Trainer shows tqdm: a progress bar on a terminal unless disable_tqdm or a ProgressCallback is given.
    const hasProgress = this.callbacks.some((c) => c instanceof ProgressCallback);
    if (!this.args.disable_tqdm && process.stderr.isTTY && !hasProgress) this.callbacks.push(new ProgressCallback());
    this.state = this.freshState(0);
  }

  private freshState(maxSteps: number): TrainerState {
    const a = this.args;
    return {
      epoch: 0,
      global_step: 0,
      max_steps: maxSteps,
      num_train_epochs: a.num_train_epochs,
      logging_steps: a.logging_steps,
      eval_steps: a.eval_steps,
      save_steps: a.save_steps,
      train_batch_size: a.per_device_train_batch_size,
      num_input_tokens_seen: 0,
      best_metric: null,
      best_model_checkpoint: null,
      log_history: [],
    };
  }

  private emit<K extends keyof TrainerCallback>(hook: K, ...rest: unknown[]): void {
    for (const cb of this.callbacks)
      (cb[hook] as ((...a: unknown[]) => void) | undefined)?.call(cb, this.args, this.state, ...rest);
  }

  /** Micro-batches per epoch (HF's dataloader length). */
  private batchesPerEpoch(n: number): number {
    const bs = this.args.per_device_train_batch_size;
    return this.args.dataloader_drop_last ? Math.floor(n / bs) : Math.ceil(n / bs);
  }

  /** Optimizer updates per epoch: full accumulation groups (at least one). */
  updatesPerEpoch(n: number): number {
    return Math.max(1, Math.floor(this.batchesPerEpoch(n) / this.args.gradient_accumulation_steps));
  }

  /** Total optimizer steps of the run. */
  totalSteps(n: number): number {
    return this.args.max_steps > 0
      ? this.args.max_steps
      : Math.ceil(this.args.num_train_epochs * this.updatesPerEpoch(n));
  }

  private createOptimizer(totalSteps: number): void {
    const decay = decayParameterNames(this.model);
    const trainable = this.model.namedParameters().filter(([, p]) => p.requiresGrad);
    if (trainable.length === 0)
      throw new Error(
        "the model has no trainable parameters (did you freeze everything? getPeftModel makes the adapter trainable)",
      );
    const a = this.args;
    this.optimizer = new AdamW(
      [
        { params: trainable.filter(([n]) => decay.has(n)).map(([, p]) => p), weightDecay: a.weight_decay },
        { params: trainable.filter(([n]) => !decay.has(n)).map(([, p]) => p), weightDecay: 0 },
      ],
      { lr: a.learning_rate, betas: [a.adam_beta1, a.adam_beta2], eps: a.adam_epsilon },
    );
    const warmup = a.warmup_steps > 0 ? a.warmup_steps : Math.ceil(totalSteps * a.warmup_ratio);
    this.scheduler = getScheduler(a.lr_scheduler_type, this.optimizer, {
      numWarmupSteps: warmup,
      numTrainingSteps: totalSteps,
    });
  }

  /** The micro-batches of one epoch in training order (a seeded shuffle per epoch, so resume sees the same order). */
  private epochBatches(dataset: Dataset, epoch: number): Example[][] {
    const order = shuffledIndices(dataset.length, new Generator(this.args.seed + epoch));
    const bs = this.args.per_device_train_batch_size;
    const batches: Example[][] = [];
    for (let i = 0; i < this.batchesPerEpoch(dataset.length); i++)
      batches.push(order.slice(i * bs, (i + 1) * bs).map((j) => dataset.get(j)));
    return batches;
  }

  /**
   * Forward + backward of one micro-batch (under autocast with bf16/fp16), scaled for accumulation (and by the fp16
   * loss scale); returns the unscaled loss and token count. A batch whose labels are all -100 has nothing to learn
   * (its mean loss is 0/0): it is skipped and its loss is null, which gives the same zero gradient as PyTorch without
   * a NaN in the logs.
   */
  private microStep(batch: Batch, scale: number, scaler: GradScaler | null): { loss: number | null; tokens: number } {
    let tokens = 0;
    for (const v of batch.attentionMask.dataSync()) tokens += v;
    if (batch.labels?.dataSync().every((l) => l === -100)) {
      if (this.skippedBatches++ === 0) {
        process.emitWarning(
          `step ${this.state.global_step + 1}: a batch whose labels are all -100 (no tokens to learn) was skipped; ` +
            "later ones are counted and reported at the end",
        );
      }
      return { loss: null, tokens };
    }
    const loss = tidy(() =>
      autocast(autocastFormat(this.args), () => {
        const out = this.model.forward({ ...batch } as Seq2SeqInputs) as Partial<ModelOutput>;
        if (!out.loss) throw new Error("the model returned no loss: training batches need labels");
        mul(out.loss, scale * (scaler?.scale ?? 1)).backward();
        return out.loss.item();
      }),
    );
    return { loss, tokens };
  }

  /** Train; with resumeFromCheckpoint (a folder, or true for the latest in output_dir) continue exactly where it stopped. */
  train(opts: { resumeFromCheckpoint?: string | boolean } = {}): TrainOutput {
    const dataset = this.opts.trainDataset;
    if (!dataset || dataset.length === 0) throw new Error("Trainer.train needs a non-empty trainDataset");
    const a = this.args;
    mkdirSync(a.output_dir, { recursive: true });
    removeStaleTemporaries(a.output_dir);
    const total = this.totalSteps(dataset.length);
    const perEpoch = this.updatesPerEpoch(dataset.length);
    const epochs = Math.ceil(total / perEpoch);
    manualSeed(a.seed);
    this.createOptimizer(total);
    this.state = this.freshState(total);
    const resumeDir = this.resolveResume(opts.resumeFromCheckpoint);
    // Taken before a checkpoint's weights are loaded: it describes what the run starts from.
    this.fingerprint = this.runFingerprint(dataset);
    if (resumeDir) {
      checkRunFingerprint(resumeDir, this.fingerprint);
      this.loadWeights(resumeDir);
      // The saved state keeps the saved run's length and intervals; this run's arguments may change them (as in HF).
      this.state = {
        ...loadCheckpointState(resumeDir, this.optimizer!, this.scheduler!),
        max_steps: total,
        num_train_epochs: a.num_train_epochs,
        logging_steps: a.logging_steps,
        eval_steps: a.eval_steps,
        save_steps: a.save_steps,
      };
    }
    const startStep = this.state.global_step;
    if (a.gradient_checkpointing) setGradientCheckpointing(this.model, true);
    this.model.train();
    this.emit("onTrainBegin");
    let sinceLog = { loss: 0, steps: 0, tokens: 0, start: performance.now() };
    let totalLoss = 0,
      lossSteps = 0;
    this.skippedBatches = 0;
    this.divergedAtStep = null;
    const accum = a.gradient_accumulation_steps;
    const scaler = a.fp16 ? new GradScaler() : null;
    for (
      let epoch = Math.floor(this.state.global_step / perEpoch);
      epoch < epochs && this.state.global_step < total;
      epoch++
    ) {
      this.emit("onEpochBegin");
      const batches = this.epochBatches(dataset, epoch);
      const groups =
        batches.length < accum
          ? [batches]
          : Array.from({ length: perEpoch }, (_, i) => batches.slice(i * accum, (i + 1) * accum));
      for (
        let u = this.state.global_step - epoch * perEpoch;
        u < groups.length && this.state.global_step < total;
        u++
      ) {
        const group = groups[u]!;
        let lossSum = 0,
          lossCount = 0;
        for (const examples of group) {
          const batch = this.opts.dataCollator(examples);
          const { loss, tokens } = this.microStep(batch, 1 / group.length, scaler);
          for (const t of Object.values(batch)) (t as Tensor).dispose();
          if (loss !== null) [lossSum, lossCount] = [lossSum + loss, lossCount + 1];
          sinceLog.tokens += tokens;
          this.state.num_input_tokens_seen += tokens;
        }
        const params = this.optimizer!.paramGroups.flatMap((g) => g.params);
        // An fp16 step whose gradients overflowed is skipped (GradScaler's rule); the scale is lower for the next.
        const finite = scaler ? scaler.unscaleAndUpdate(params) : true;
        // With clipping off (max_grad_norm 0) the norm is still measured, for the logs and to catch divergence.
        const gradNorm = finite ? clipGradNorm(params, a.max_grad_norm > 0 ? a.max_grad_norm : Infinity) : Number.NaN;
        if (finite) this.optimizer!.step();
        this.afterOptimizerStep();
        this.scheduler!.step();
        this.optimizer!.zeroGrad();
        this.state.global_step++;
        this.state.epoch = epoch + (u + 1) / groups.length;
        const stepLoss = lossCount > 0 ? lossSum / lossCount : 0;
        if (this.divergedAtStep === null && !(Number.isFinite(stepLoss) && Number.isFinite(gradNorm)))
          this.reportDivergence(stepLoss, gradNorm);
        if (lossCount > 0) {
          sinceLog.loss += stepLoss;
          sinceLog.steps++;
          totalLoss += stepLoss;
          lossSteps++;
        }
        this.emit("onStepEnd");
        if (this.state.global_step % a.logging_steps === 0 || this.state.global_step === total) {
          const seconds = (performance.now() - sinceLog.start) / 1000;
          this.log({
            ...(sinceLog.steps > 0 ? { loss: sinceLog.loss / sinceLog.steps } : {}),
            grad_norm: gradNorm,
            learning_rate: this.scheduler!.getLastLr()[0]!,
            epoch: this.state.epoch,
            tokens_per_second: sinceLog.tokens / seconds,
          });
          sinceLog = { loss: 0, steps: 0, tokens: 0, start: performance.now() };
        }
        const epochEnd = u === groups.length - 1;
        const evalNow =
          a.eval_strategy === "steps"
            ? this.state.global_step % a.eval_steps! === 0
            : a.eval_strategy === "epoch" && epochEnd;
        const metrics = evalNow && this.opts.evalDataset ? this.evaluate() : null;
        const saveNow =
          a.save_strategy === "steps"
            ? this.state.global_step % a.save_steps === 0
            : a.save_strategy === "epoch" && epochEnd;
        if (saveNow) this.saveCheckpoint(metrics);
      }
      this.emit("onEpochEnd");
    }
    if (this.skippedBatches > 1)
      process.emitWarning(`${this.skippedBatches} batches had labels all -100 and were skipped`);
    if (a.load_best_model_at_end && this.state.best_model_checkpoint)
      this.loadWeights(this.state.best_model_checkpoint);
    this.emit("onTrainEnd");
    // No step run (a finished run resumed): report the loss the run ended with rather than an empty average.
    const lastLogged =
      [...this.state.log_history].reverse().find((e) => e["loss"] !== undefined)?.["loss"] ?? Number.NaN;
    const trainingLoss = lossSteps > 0 ? totalLoss / lossSteps : lastLogged;
    return {
      globalStep: this.state.global_step,
      trainingLoss,
      metrics: { train_loss: trainingLoss },
      divergedAtStep: this.divergedAtStep,
      stepsRun: this.state.global_step - startStep,
    };
  }

  /** Warn, at the step it happens, that the loss or gradient norm stopped being finite, with the usual causes. */
  private reportDivergence(loss: number, gradNorm: number): void {
    const a = this.args;
    this.divergedAtStep = this.state.global_step;
    process.emitWarning(
      `training diverged at step ${this.state.global_step}: the loss is ${loss} and the gradient ` +
        `norm is ${gradNorm}. Likely causes: ` +
        `learning_rate ${a.learning_rate} is too high, float16 overflow, or bad data (extreme ` +
        `values, labels out of range). ` +
        `Lower learning_rate, keep max_grad_norm > 0 (it is ${a.max_grad_norm}) or check the data; ` +
        "checkpoints are not written while the weights are NaN or infinite.",
    );
  }

  /** Names of trainable parameters holding NaN or ±Infinity. */
  nonFiniteParameters(): string[] {
    const bad = (p: Tensor) => p.dataSync().some((v) => !Number.isFinite(v));
    return this.model
      .namedParameters()
      .filter(([, p]) => p.requiresGrad && bad(p))
      .map(([n]) => n);
  }

  /** The per-step hook of methods that declare one (AdaLoRA's rank allocation). */
  private afterOptimizerStep(): void {
    if (this.model instanceof PeftModel) this.model.afterOptimizerStep(this.state.global_step);
  }

  /** The run's fingerprint: arguments, PEFT config, data, and the base model with the weights training leaves frozen. */
  private runFingerprint(dataset: Dataset): RunFingerprint {
    const m = this.model;
    const base = m instanceof PeftModel ? m.getBaseModel() : m instanceof PreTrainedModel ? m : null;
    const params = m.namedParameters();
    const peftConfig = m instanceof PeftModel ? { ...m.peftConfig[m.activeAdapter] } : null;
    return runFingerprint(
      this.args,
      peftConfig,
      dataset.examples,
      { nameOrPath: base?.nameOrPath ?? null, config: { ...base?.config } },
      m instanceof PeftModel ? params.filter(([, p]) => !p.requiresGrad) : params,
    );
  }

  private resolveResume(resume: string | boolean | undefined): string | null {
    if (!resume) return null;
    if (typeof resume === "string") {
      if (!existsSync(resume)) throw new Error(`resumeFromCheckpoint: ${resume} does not exist`);
      return resume;
    }
    const latest = listCheckpoints(this.args.output_dir).pop();
    if (!latest) throw new Error(`resumeFromCheckpoint: no checkpoint-N folder in ${this.args.output_dir}`);
    return latest;
  }

  private log(entry: LogEntry): void {
    const withStep = { ...entry, step: this.state.global_step };
    this.state.log_history.push(withStep);
    this.emit("onLog", withStep);
  }

  /** Loss (and computeMetrics) on the eval set, in eval mode; keys prefixed "eval_". */
  evaluate(dataset: Dataset | undefined = this.opts.evalDataset): Record<string, number> {
    if (!dataset) throw new Error("evaluate needs an evalDataset");
    const wasTraining = this.model.training;
    this.model.eval();
    const bs = this.args.per_device_eval_batch_size;
    let lossSum = 0,
      count = 0;
    const predictions: Float32Array[] = [],
      labelIds: Int32Array[] = [];
    const start = performance.now();
    for (let i = 0; i < dataset.length; i += bs) {
      const batch = this.opts.dataCollator(dataset.examples.slice(i, i + bs));
      noGrad(() =>
        tidy(() => {
          const out = this.model.forward({ ...batch } as Seq2SeqInputs) as Partial<ModelOutput>;
          const n = batch.inputIds.shape[0]!;
          if (out.loss) {
            lossSum += out.loss.item() * n;
            count += n;
          }
          if (this.opts.computeMetrics && out.logits && batch.labels) {
            const rows = out.logits.shape[0]!,
              per = out.logits.size / rows,
              values = out.logits.dataSync() as Float32Array;
            const labels = batch.labels.dataSync() as Int32Array,
              perLabel = batch.labels.size / rows;
            for (let r = 0; r < rows; r++) {
              predictions.push(values.slice(r * per, (r + 1) * per));
              labelIds.push(labels.slice(r * perLabel, (r + 1) * perLabel));
            }
          }
        }),
      );
      for (const t of Object.values(batch)) (t as Tensor).dispose();
    }
    if (wasTraining) this.model.train();
    const metrics: Record<string, number> = { ...(count > 0 ? { eval_loss: lossSum / count } : {}) };
    if (this.opts.computeMetrics)
      for (const [k, v] of Object.entries(this.opts.computeMetrics({ predictions, labelIds })))
        metrics[k.startsWith("eval_") ? k : `eval_${k}`] = v;
    metrics["eval_runtime"] = (performance.now() - start) / 1000;
    this.log({ ...metrics, epoch: this.state.epoch });
    this.emit("onEvaluate", metrics);
    return metrics;
  }

  private saveCheckpoint(metrics: Record<string, number> | null): void {
    const a = this.args;
    const bad = this.nonFiniteParameters();
    if (bad.length > 0) {
      // Such a checkpoint cannot be resumed from, and rotation would delete good ones to make room for it.
      const lastGood = listCheckpoints(a.output_dir).pop() ?? "none";
      process.emitWarning(
        `checkpoint-${this.state.global_step} not written: ${describeNonFinite(bad)}; the last ` +
          `good checkpoint is ${lastGood}`,
      );
      return;
    }
    const dir = saveCheckpoint(a.output_dir, {
      saveModel: (d) => this.model.savePretrained(d),
      optimizer: this.optimizer!,
      scheduler: this.scheduler!,
      state: this.state,
      args: a,
      ...(this.fingerprint ? { fingerprint: this.fingerprint } : {}),
    });
    if (metrics && a.metric_for_best_model) {
      const key = a.metric_for_best_model.startsWith("eval_")
        ? a.metric_for_best_model
        : `eval_${a.metric_for_best_model}`;
      const value = metrics[key];
      if (value === undefined)
        throw new Error(
          `metric_for_best_model "${a.metric_for_best_model}" is not among the eval metrics ` +
            `(${Object.keys(metrics).join(", ")})`,
        );
      const better =
        this.state.best_metric === null ||
        (a.greater_is_better ? value > this.state.best_metric : value < this.state.best_metric);
      if (better) {
        this.state.best_metric = value;
        this.state.best_model_checkpoint = dir;
      }
    }
    this.rotateCheckpoints();
    this.emit("onSave", dir);
  }

  /** Keep at most save_total_limit checkpoints (never deleting the best one). */
  private rotateCheckpoints(): void {
    const limit = this.args.save_total_limit;
    if (limit === null) return;
    const all = listCheckpoints(this.args.output_dir);
    const removable = all.filter((d) => d !== this.state.best_model_checkpoint);
    const keep = limit - (all.length - removable.length);
    for (const d of removable.slice(0, Math.max(0, removable.length - keep)))
      rmSync(d, { recursive: true, force: true });
  }

  /**
   * Save the model (PEFT: the adapter) to a folder (default: output_dir). Non-finite weights (a diverged run) never
   * replace weights already in the folder: that throws a CheckpointError; into a new folder they are saved with a warning.
   */
  saveModel(dir = this.args.output_dir): void {
    const bad = this.nonFiniteParameters();
    if (bad.length > 0) {
      const existing = SAVED_WEIGHTS.find((f) => existsSync(join(dir, f)));
      if (existing) {
        throw new CheckpointError(
          `not replacing ${join(dir, existing)} with non-finite weights: ${describeNonFinite(bad)}`,
          "the folder keeps its earlier weights; lower learning_rate (or fix the data) and train again, " +
            "or save to a new folder to inspect the diverged weights",
        );
      }
      process.emitWarning(`saving non-finite weights to ${dir}: ${describeNonFinite(bad)}`);
    }
    this.model.savePretrained(dir);
  }
}
