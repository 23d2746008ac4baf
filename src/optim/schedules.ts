/**
 * Learning-rate schedules: PyTorch's LambdaLR and the schedules of Hugging Face transformers' get_scheduler
 * (transformers/optimization.py), with the same formulas, so a run configured like a Trainer run sees the same lrs.
 */
import type { BaseOptions, Optimizer } from "./optimizer.js";

/** A multiplier of the initial lr as a function of the scheduler step (0 at construction). */
export type LrLambda = (step: number) => number;

/** The serialisable state of an LRScheduler (the lambdas themselves are code and are not saved). */
export interface SchedulerStateDict {
  lastEpoch: number;
  baseLrs: number[];
  lastLr: number[];
}

/**
 * PyTorch's LambdaLR: each group's lr = its initial lr · lambda(step). Construction applies step 0 (so with a
 * warmup the first optimizer step already uses lambda(0), which is 0 for HF's warmup schedules).
 */
export class LRScheduler {
  /** The lr each group had when the scheduler was created. */
  readonly baseLrs: number[];
  /** Number of step() calls since construction (PyTorch's last_epoch; 0 right after construction). */
  lastEpoch = -1;
  private lambdas: LrLambda[];
  private lastLr: number[] = [];

  constructor(
    readonly optimizer: Optimizer<BaseOptions>,
    lrLambda: LrLambda | readonly LrLambda[],
  ) {
    const n = optimizer.paramGroups.length;
    this.lambdas = typeof lrLambda === "function" ? Array(n).fill(lrLambda) : [...lrLambda];
    if (this.lambdas.length !== n)
      throw new Error(`expected ${n} lr lambdas (one per parameter group), got ${this.lambdas.length}`);
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
    this.step();
  }

  /** Advance one step and set each group's lr (call after optimizer.step(), as in PyTorch). */
  step(): void {
    this.lastEpoch++;
    this.apply(this.baseLrs.map((base, i) => base * this.lambdas[i]!(this.lastEpoch)));
  }

  private apply(lrs: number[]): void {
    this.optimizer.paramGroups.forEach((g, i) => {
      g.lr = lrs[i]!;
    });
    this.lastLr = lrs;
  }

  /** The lrs set by the last step (one per group). */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  /** A snapshot to resume from. */
  stateDict(): SchedulerStateDict {
    return { lastEpoch: this.lastEpoch, baseLrs: [...this.baseLrs], lastLr: [...this.lastLr] };
  }

  /** Resume from a snapshot; also puts the saved lrs back into the optimizer's groups. */
  loadStateDict(sd: SchedulerStateDict): void {
    if (sd.baseLrs.length !== this.baseLrs.length) {
      throw new Error(`scheduler state has ${sd.baseLrs.length} groups, the optimizer has ${this.baseLrs.length}`);
    }
    this.lastEpoch = sd.lastEpoch;
    this.baseLrs.splice(0, this.baseLrs.length, ...sd.baseLrs);
    this.apply([...sd.lastLr]);
  }
}

/** Linear warmup factor step/warmup, used by every warmup schedule below (HF's max(1, warmup) guard included). */
function warmup(step: number, numWarmupSteps: number): number {
  return step / Math.max(1, numWarmupSteps);
}

/** Factor 1 forever (HF get_constant_schedule). */
export function constantLambda(): LrLambda {
  return () => 1;
}

/** 0 → 1 linearly over the warmup, then 1 (HF get_constant_schedule_with_warmup). */
export function constantWithWarmupLambda(numWarmupSteps: number): LrLambda {
  return (s) => (s < numWarmupSteps ? warmup(s, numWarmupSteps) : 1);
}

/** Warmup, then linear decay to 0 at numTrainingSteps (HF get_linear_schedule_with_warmup). */
export function linearLambda(numWarmupSteps: number, numTrainingSteps: number): LrLambda {
  return (s) =>
    s < numWarmupSteps
      ? warmup(s, numWarmupSteps)
      : Math.max(0, (numTrainingSteps - s) / Math.max(1, numTrainingSteps - numWarmupSteps));
}

/**
 * Warmup, then cosine decay (HF get_cosine_schedule_with_warmup, and with minLrRate > 0 the cosine_with_min_lr
 * variant, which decays to minLrRate instead of 0). numCycles 0.5 is a half cosine from 1 to the floor.
 */
export function cosineLambda(
  numWarmupSteps: number,
  numTrainingSteps: number,
  numCycles = 0.5,
  minLrRate = 0,
): LrLambda {
  return (s) => {
    if (s < numWarmupSteps) return warmup(s, numWarmupSteps);
    const progress = (s - numWarmupSteps) / Math.max(1, numTrainingSteps - numWarmupSteps);
    const factor = 0.5 * (1 + Math.cos(Math.PI * numCycles * 2 * progress));
    return Math.max(0, factor * (1 - minLrRate) + minLrRate);
  };
}

/** Warmup, then numCycles cosine decays each restarting from 1, 0 after the end (HF cosine_with_restarts). */
export function cosineWithRestartsLambda(numWarmupSteps: number, numTrainingSteps: number, numCycles = 1): LrLambda {
  return (s) => {
    if (s < numWarmupSteps) return warmup(s, numWarmupSteps);
    const progress = (s - numWarmupSteps) / Math.max(1, numTrainingSteps - numWarmupSteps);
    if (progress >= 1) return 0;
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((numCycles * progress) % 1))));
  };
}

/** Warmup, then 1/√ decay with timescale defaulting to the warmup length (HF get_inverse_sqrt_schedule). */
export function inverseSqrtLambda(numWarmupSteps: number, timescale?: number): LrLambda {
  const ts = timescale ?? (numWarmupSteps || 10_000);
  return (s) => (s < numWarmupSteps ? warmup(s, numWarmupSteps) : 1 / Math.sqrt((s + ts - numWarmupSteps) / ts));
}

/** Warmup, then polynomial decay from the initial lr to lrEnd (HF get_polynomial_decay_schedule_with_warmup). */
export function polynomialLambda(
  numWarmupSteps: number,
  numTrainingSteps: number,
  lrInit: number,
  lrEnd = 1e-7,
  power = 1,
): LrLambda {
  if (!(lrInit > lrEnd)) throw new Error(`lrEnd (${lrEnd}) must be smaller than initial lr (${lrInit})`);
  return (s) => {
    if (s < numWarmupSteps) return warmup(s, numWarmupSteps);
    if (s > numTrainingSteps) return lrEnd / lrInit;
    const remaining = 1 - (s - numWarmupSteps) / (numTrainingSteps - numWarmupSteps);
    return ((lrInit - lrEnd) * remaining ** power + lrEnd) / lrInit;
  };
}

/** Names accepted by getScheduler (HF's SchedulerType values that are implemented here). */
export const SCHEDULER_NAMES = [
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
  "constant",
  "constant_with_warmup",
  "inverse_sqrt",
  "cosine_with_min_lr",
] as const;

/** A schedule name accepted by getScheduler. */
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** Arguments of getScheduler; the optional ones are HF's scheduler_specific_kwargs. */
export interface SchedulerOptions {
  /** Warmup length; defaults to 0 (HF raises when it is missing, but 0 is what every Trainer run without warmup passes). */
  numWarmupSteps?: number;
  /** Total number of optimizer steps; required by every schedule that decays. */
  numTrainingSteps?: number;
  /** cosine / cosine_with_min_lr: number of waves (default 0.5); cosine_with_restarts: number of restarts (default 1). */
  numCycles?: number;
  /** cosine_with_min_lr: the floor as an absolute lr (relative to the optimizer's default lr, as HF does)… */
  minLr?: number;
  /** …or as a fraction of the initial lr; exactly one of the two. */
  minLrRate?: number;
  /** polynomial: final lr (default 1e-7) and exponent (default 1). */
  lrEnd?: number;
  power?: number;
  /** inverse_sqrt: time scale (default numWarmupSteps, or 10000 without warmup). */
  timescale?: number;
}

/** The scheduler HF transformers' get_scheduler(name, optimizer, …) returns, as an LRScheduler. */
export function getScheduler(
  name: string,
  optimizer: Optimizer<BaseOptions>,
  opts: SchedulerOptions = {},
): LRScheduler {
  if (!(SCHEDULER_NAMES as readonly string[]).includes(name)) {
    throw new Error(`unknown lr scheduler "${name}"; supported: ${SCHEDULER_NAMES.join(", ")}`);
  }
  const warm = opts.numWarmupSteps ?? 0;
  if (!(Number.isInteger(warm) && warm >= 0))
    throw new Error(`numWarmupSteps must be a non-negative integer, got ${warm}`);
  const total = (): number => {
    const t = opts.numTrainingSteps;
    if (t === undefined) throw new Error(`${name} requires numTrainingSteps, please provide that argument`);
    if (!(Number.isInteger(t) && t >= 0)) throw new Error(`numTrainingSteps must be a non-negative integer, got ${t}`);
    return t;
  };
  const make = (f: LrLambda) => new LRScheduler(optimizer, f);
  switch (name as SchedulerName) {
    case "constant":
      return make(constantLambda());
    case "constant_with_warmup":
      return make(constantWithWarmupLambda(warm));
    case "inverse_sqrt":
      return make(inverseSqrtLambda(warm, opts.timescale));
    case "linear":
      return make(linearLambda(warm, total()));
    case "cosine":
      return make(cosineLambda(warm, total(), opts.numCycles ?? 0.5));
    case "cosine_with_restarts":
      return make(cosineWithRestartsLambda(warm, total(), opts.numCycles ?? 1));
    case "polynomial":
      return make(polynomialLambda(warm, total(), optimizer.defaults.lr, opts.lrEnd, opts.power));
    case "cosine_with_min_lr": {
      if ((opts.minLr === undefined) === (opts.minLrRate === undefined)) {
        throw new Error("cosine_with_min_lr needs exactly one of minLr or minLrRate");
      }
      const rate = opts.minLrRate ?? opts.minLr! / optimizer.defaults.lr;
      return make(cosineLambda(warm, total(), opts.numCycles ?? 0.5, rate));
    }
  }
}
