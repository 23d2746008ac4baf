/**
 * PyTorch's CPU generator reproduced draw for draw (torch 1.13 and 2.x): mt19937 seeded as torch.manual_seed seeds
 * it, and the CPU kernels of randperm, rand/uniform_, randn/normal_ and bernoulli on top of it. peft redraws state
 * that it does not save from this generator (FourierFT's frequency positions, VeRA's shared projections, DARE's
 * masks), so loading such adapters needs the same numbers. peft-ts' own Generator (random.ts, counter-based) is
 * unrelated and stays the default everywhere else.
 */
import { tensor, type Tensor } from "./tensor.js";

const N = 624;
const M = 397;
const TWO_PI = 2 * Math.PI;
/** 2π rounded to float32: torch's vectorised Box–Muller multiplies the angles in float32. */
const TWO_PI_F32 = Math.fround(TWO_PI);
/** float32 has 24 significand bits: torch's float uniform keeps the low 24 bits of a 32-bit draw. */
const FLOAT_MASK = (1 << 24) - 1;
const FLOAT_STEP = 2 ** -24;
/** torch's normal kernel switches to its vectorised Box–Muller at 16 contiguous float values. */
const NORMAL_BLOCK = 16;
/** randperm uses 32-bit draws below this n and 64-bit draws (another shuffle) from it on. */
const RANDPERM_64BIT_FROM = Math.floor(0xffffffff / 20);

const f32 = Math.fround;

/** A torch.Generator() on the CPU: same seed, same numbers as Python torch. */
export class TorchGenerator {
  private readonly state = new Uint32Array(N);
  private index = N;
  /** normal_distribution<double> makes two values per pair of draws and keeps the second for the next call. */
  private cachedNormal: number | null = null;

  /** The default seed is torch's own (default_rng_seed_val), as torch.Generator() starts. */
  constructor(seed = 67280421310721) {
    this.manualSeed(seed);
  }

  /** torch's manual_seed: the engine is seeded with the low 32 bits (negative seeds wrap as in Python). */
  manualSeed(seed: number | bigint): this {
    const low = Number(BigInt.asUintN(64, BigInt(seed)) & 0xffffffffn);
    this.state[0] = low;
    for (let i = 1; i < N; i++) {
      const prev = this.state[i - 1]! ^ (this.state[i - 1]! >>> 30);
      this.state[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.index = N;
    this.cachedNormal = null;
    return this;
  }

  /** The next 32-bit draw (torch's random()). */
  random(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** The next 64-bit draw (torch's random64(): the first 32-bit draw is the high word). */
  random64(): bigint {
    const hi = BigInt(this.random());
    return (hi << 32n) | BigInt(this.random());
  }

  private twist(): void {
    const s = this.state;
    for (let i = 0; i < N; i++) {
      const y = (s[i]! & 0x80000000) | (s[(i + 1) % N]! & 0x7fffffff);
      s[i] = s[(i + M) % N]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }

  /** A uniform in [0, 1) as torch's float kernels draw it (24 bits: exact in float32). */
  private unitFloat(): number {
    return (this.random() & FLOAT_MASK) * FLOAT_STEP;
  }

  /** A float64 uniform in [0, 1) as torch's double kernels draw it (53 bits of a 64-bit draw). */
  private unitDouble(): number {
    return Number(this.random64() & ((1n << 53n) - 1n)) * 2 ** -53;
  }

  /** torch.randperm(n, generator=g) on the CPU (int64 result, returned as numbers). */
  randperm(n: number): number[] {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`randperm: n must be a non-negative integer, got ${n}`);
    const out = Array.from({ length: n }, (_, i) => i);
    if (n < RANDPERM_64BIT_FROM) {
      // Fisher–Yates from the front, one 32-bit draw per position (all but the last).
      for (let i = 0; i < n - 1; i++) {
        const z = i + (this.random() % (n - i));
        [out[i], out[z]] = [out[z]!, out[i]!];
      }
      return out;
    }
    // The "inside-out" shuffle with 64-bit draws, whose modulo bias is negligible for huge n.
    for (let i = 0; i < n; i++) {
      const z = Number(this.random64() % BigInt(i + 1));
      out[i] = out[z]!;
      out[z] = i;
    }
    return out;
  }

  /**
   * Float32 uniforms in [low, high) as torch's uniform_(low, high, generator) fills a float tensor: the bounds are
   * rounded to float32 and their difference taken in float32, the scaling and shift in float64, then rounded.
   */
  uniformValues(count: number, low = 0, high = 1): Float32Array {
    const from = f32(low),
      span = f32(f32(high) - from);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.unitFloat() * span + from;
    return out;
  }

  /** torch.rand(shape, generator=g) (float32). */
  rand(shape: readonly number[]): Tensor {
    return tensor(this.uniformValues(sizeOf(shape)), shape);
  }

  /** tensor.uniform_(low, high, generator=g) on a float32 tensor of `shape`, as a new tensor. */
  uniform(shape: readonly number[], low: number, high: number): Tensor {
    return tensor(this.uniformValues(sizeOf(shape), low, high), shape);
  }

  /**
   * torch.nn.init.kaiming_uniform_-style draws with an explicit generator (peft's VeRA `_kaiming_init`):
   * U(−b, b) with b = √3 · gain / √fan_in, fan_in = shape[1], gain = √2 (ReLU's).
   */
  kaimingUniform(shape: readonly [number, number]): Tensor {
    const bound = Math.sqrt(3) * (Math.SQRT2 / Math.sqrt(shape[1]));
    return this.uniform(shape, -bound, bound);
  }

  /**
   * Float32 normals as torch's CPU normal_ fills a float tensor: from 16 contiguous values on, Box–Muller on
   * blocks of 16 uniforms (the first 8 give the radii, the last 8 the angles; a ragged tail recomputes the last
   * 16 with fresh draws); below 16, the scalar double-precision kernel, one pair of draws per two values.
   */
  normalValues(count: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(count);
    if (count < NORMAL_BLOCK) {
      for (let i = 0; i < count; i++) out[i] = this.normalDouble() * std + mean;
      return out;
    }
    for (let i = 0; i < count; i++) out[i] = this.unitFloat();
    for (let i = 0; i + NORMAL_BLOCK <= count; i += NORMAL_BLOCK) boxMuller16(out, i, mean, std);
    if (count % NORMAL_BLOCK !== 0) {
      const start = count - NORMAL_BLOCK;
      for (let i = start; i < count; i++) out[i] = this.unitFloat();
      boxMuller16(out, start, mean, std);
    }
    return out;
  }

  /** torch.randn(shape, generator=g) (float32). */
  randn(shape: readonly number[]): Tensor {
    return tensor(this.normalValues(sizeOf(shape)), shape);
  }

  /** One value of torch's normal_distribution<double> (the second of each pair is kept for the next call). */
  private normalDouble(): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal;
      this.cachedNormal = null;
      return v;
    }
    const u1 = this.unitDouble();
    const u2 = this.unitDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = TWO_PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** torch.bernoulli(p, generator=g) for a float32 tensor of probabilities: 1 where a float uniform < p, else 0. */
  bernoulli(probabilities: Tensor): Tensor {
    return tensor(this.bernoulliValues(probabilities.dataSync()), probabilities.shape);
  }

  /** bernoulli's mask on flat probabilities, in order (float32 values, as a float32 tensor holds them). */
  bernoulliValues(p: ArrayLike<number>): Float32Array {
    const out = new Float32Array(p.length);
    for (let i = 0; i < p.length; i++) {
      const pi = p[i]!;
      if (!(pi >= 0 && pi <= 1))
        throw new RangeError(`bernoulli: probabilities must lie in [0, 1], got ${pi} at index ${i}`);
      out[i] = this.unitFloat() < pi ? 1 : 0;
    }
    return out;
  }
}

/** Box–Muller over data[at .. at+16) in place, in float32 as torch's normal_fill_16 computes it. */
function boxMuller16(data: Float32Array, at: number, mean: number, std: number): void {
  const m = f32(mean),
    s = f32(std);
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[at + j]!);
    const u2 = data[at + j + 8]!;
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(TWO_PI_F32 * u2);
    data[at + j] = f32(f32(radius * f32(Math.cos(theta))) * s) + m;
    data[at + j + 8] = f32(f32(radius * f32(Math.sin(theta))) * s) + m;
  }
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
