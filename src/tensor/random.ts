/**
 * Seedable random tensors. A Generator is a seed plus a counter: each draw consumes `size` positions of the
 * counter-based stream (see backend/js/random.ts), so results are reproducible and identical on every backend.
 */
import { backend } from "../backend/index.js";
import { empty, type Tensor } from "./tensor.js";

/** A reproducible source of random tensors (PyTorch's torch.Generator). */
export class Generator {
  private counter = 0;
  private seedValue: number;

  constructor(seed = 0) {
    this.seedValue = seed >>> 0;
  }

  /** Restart the stream from a seed. */
  manualSeed(seed: number): this {
    this.seedValue = seed >>> 0;
    this.counter = 0;
    return this;
  }

  /** The state, to save in checkpoints. */
  getState(): { seed: number; counter: number } {
    return { seed: this.seedValue, counter: this.counter };
  }

  /** Restore a state returned by getState(). */
  setState(state: { seed: number; counter: number }): void {
    this.seedValue = state.seed >>> 0;
    this.counter = state.counter;
  }

  /** Reserve `n` stream positions and return the first. */
  next(n: number): [seed: number, counter: number] {
    const at = this.counter;
    this.counter += n;
    return [this.seedValue, at];
  }

  /** Uniform values in [low, high). */
  uniform(shape: readonly number[], low = 0, high = 1): Tensor {
    const t = empty(shape);
    backend().random(t.storage, "uniform", low, high, ...this.next(t.size));
    return t;
  }

  /** Normal values with the given mean and standard deviation. */
  normal(shape: readonly number[], mean = 0, std = 1): Tensor {
    const t = empty(shape);
    backend().random(t.storage, "normal", mean, std, ...this.next(t.size));
    return t;
  }

  /** `value` with probability p, 0 otherwise (dropout masks). */
  bernoulli(shape: readonly number[], p: number, value = 1): Tensor {
    const t = empty(shape);
    backend().random(t.storage, "bernoulli", p, value, ...this.next(t.size));
    return t;
  }

  /** A random integer in [0, n) drawn from the stream (shuffling, sampling). */
  int(n: number): number {
    const t = this.uniform([1]);
    const v = Math.min(n - 1, Math.floor(t.dataSync()[0]! * n));
    t.dispose();
    return v;
  }
}

/** The generator used when none is given (torch.manual_seed seeds it). */
export const defaultGenerator = new Generator(0);

/** Seed the default generator. */
export function manualSeed(seed: number): void {
  defaultGenerator.manualSeed(seed);
}
