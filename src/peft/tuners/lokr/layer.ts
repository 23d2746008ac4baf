/**
 * LoKr (low-rank Kronecker product) around a Linear:
 *
 *   ΔW = kron(w1, w2) · alpha / r        y = base(x) + x·ΔWᵀ
 *
 * The out and in dims are split as out = a·b, in = c·d (peft's factorization); w1 is [a, c] and w2 is [b, d], each
 * either a full matrix (lokr_w1, lokr_w2) or a rank-r product (lokr_w1_a [a, r]·lokr_w1_b [r, c], lokr_w2_a [b, r]·
 * lokr_w2_b [r, d]): w2 is factored when r < max(b, d) / 2, w1 only with decompose_both and r < max(a, c) / 2.
 * Parameter dicts as in peft (saved without ".weight").
 */
import type { Linear } from "../../../nn/index.js";
import { type Tensor, matmul, mul, parameter, reshape, zeros } from "../../../tensor/index.js";
import { ParameterDict } from "../tuner-layer.js";
import { LycorisLayer, type LycorisSettings } from "../lycoris.js";
import { kaimingUniform2d } from "../../../nn/init.js";

/**
 * peft's (LyCORIS's) factorization: dimension = m·n with m ≤ n. With factor > 0 dividing the dimension it is
 * (factor, dimension / factor) as given; otherwise the pair whose m is the largest divisor not above `factor`
 * (−1: no bound) reached by increasing m while m < n, i.e. the split closest to a square.
 */
export function factorization(dimension: number, factor = -1): [number, number] {
  if (factor > 0 && dimension % factor === 0) return [factor, dimension / factor];
  if (factor === -1) factor = dimension;
  let m = 1,
    n = dimension;
  const length = m + n;
  while (m < n) {
    let newM = m + 1;
    while (dimension % newM !== 0) newM++;
    const newN = dimension / newM;
    if (newM + newN > length || newM > factor) break;
    m = newM;
    n = newN;
  }
  return m > n ? [n, m] : [m, n];
}

/** The Kronecker product of 2-D tensors: kron(A [a, c], B [b, d]) [a·b, c·d], entry (i·b + j, k·d + l) = A[i, k]·B[j, l]. */
export function kron(a: Tensor, b: Tensor): Tensor {
  const [ra, ca] = a.shape as [number, number];
  const [rb, cb] = b.shape as [number, number];
  return reshape(mul(reshape(a, [ra, 1, ca, 1]), reshape(b, [1, rb, 1, cb])), [ra * rb, ca * cb]);
}

/** How an adapter's Kronecker factors are laid out in a layer. */
export interface LoKrShape {
  /** out = a·b, in = c·d: w1 is [a, c], w2 is [b, d]. */
  a: number;
  b: number;
  c: number;
  d: number;
  /** w1 stored whole (lokr_w1) rather than as lokr_w1_a·lokr_w1_b. */
  useW1: boolean;
  /** w2 stored whole (lokr_w2) rather than as lokr_w2_a·lokr_w2_b. */
  useW2: boolean;
}

/** Settings of a LoKr adapter: the shared ones plus the decomposition options. */
export interface LoKrSettings extends LycorisSettings {
  decomposeBoth: boolean;
  decomposeFactor: number;
}

/** peft's LoKr update_layer shape rules for a Linear [out, in] at rank r. */
export function lokrShape(
  outFeatures: number,
  inFeatures: number,
  r: number,
  decomposeBoth: boolean,
  decomposeFactor: number,
): LoKrShape {
  const [c, d] = factorization(inFeatures, decomposeFactor);
  const [a, b] = factorization(outFeatures, decomposeFactor);
  return { a, b, c, d, useW1: !(decomposeBoth && r < Math.max(a, c) / 2), useW2: !(r < Math.max(b, d) / 2) };
}

/** LoKr on a Linear ([out, in] weight). */
export class LoKrLinear extends LycorisLayer {
  /** peft's repr of the layer (layer status). */
  override moduleType(): string {
    return "lokr.Linear";
  }

  readonly adapterLayerNames = ["lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b"] as const;
  lokr_w1: ParameterDict;
  lokr_w1_a: ParameterDict;
  lokr_w1_b: ParameterDict;
  lokr_w2: ParameterDict;
  lokr_w2_a: ParameterDict;
  lokr_w2_b: ParameterDict;
  /** Each adapter's factor layout. */
  readonly shapes = new Map<string, LoKrShape>();

  constructor(base: Linear) {
    super(base);
    this.lokr_w1 = this.registerModule("lokr_w1", new ParameterDict());
    this.lokr_w1_a = this.registerModule("lokr_w1_a", new ParameterDict());
    this.lokr_w1_b = this.registerModule("lokr_w1_b", new ParameterDict());
    this.lokr_w2 = this.registerModule("lokr_w2", new ParameterDict());
    this.lokr_w2_a = this.registerModule("lokr_w2_a", new ParameterDict());
    this.lokr_w2_b = this.registerModule("lokr_w2_b", new ParameterDict());
  }

  /**
   * Add (or re-create) an adapter (peft's update_layer). Inits: true → w1 (or w1_a) = 0, the rest Kaiming-uniform;
   * "lycoris" → w2 (or w2_b) = 0, the rest Kaiming-uniform; false → all Kaiming-uniform.
   */
  updateLayer(name: string, s: LycorisSettings): void {
    const ks = s as LoKrSettings;
    this.recordSettings(name, s);
    const shape = lokrShape(
      this.outFeatures,
      this.inFeatures,
      s.r,
      ks.decomposeBoth ?? false,
      ks.decomposeFactor ?? -1,
    );
    this.shapes.set(name, shape);
    const { a, b, c, d, useW1, useW2 } = shape;
    const r = s.r;
    const zeroW1 = s.initWeights === true,
      zeroW2 = s.initWeights === "lycoris";
    const init = (dims: [number, number], zero: boolean) => parameter(zero ? zeros(dims) : kaimingUniform2d(dims));
    if (useW1) {
      this.setParameter(this.lokr_w1, name, init([a, c], zeroW1));
      this.setParameter(this.lokr_w1_a, name, null);
      this.setParameter(this.lokr_w1_b, name, null);
    } else {
      this.setParameter(this.lokr_w1, name, null);
      this.setParameter(this.lokr_w1_a, name, init([a, r], zeroW1));
      this.setParameter(this.lokr_w1_b, name, init([r, c], false));
    }
    if (useW2) {
      this.setParameter(this.lokr_w2, name, init([b, d], zeroW2));
      this.setParameter(this.lokr_w2_a, name, null);
      this.setParameter(this.lokr_w2_b, name, null);
    } else {
      this.setParameter(this.lokr_w2, name, null);
      this.setParameter(this.lokr_w2_a, name, init([b, r], false));
      this.setParameter(this.lokr_w2_b, name, init([r, d], zeroW2));
    }
    this.setAdapter(this.activeAdapters);
  }

  /** The left Kronecker factor w1 [a, c] of an adapter (lokr_w1, or lokr_w1_a·lokr_w1_b). */
  w1(name: string): Tensor {
    const whole = this.lokr_w1.ownParameter(name);
    if (whole) return whole;
    const fa = this.lokr_w1_a.ownParameter(name),
      fb = this.lokr_w1_b.ownParameter(name);
    if (!fa || !fb) throw new Error(`adapter "${name}" is not in this LoKr layer`);
    return matmul(fa, fb);
  }

  /** The right Kronecker factor w2 [b, d] of an adapter (lokr_w2, or lokr_w2_a·lokr_w2_b). */
  w2(name: string): Tensor {
    const whole = this.lokr_w2.ownParameter(name);
    if (whole) return whole;
    const fa = this.lokr_w2_a.ownParameter(name),
      fb = this.lokr_w2_b.ownParameter(name);
    if (!fa || !fb) throw new Error(`adapter "${name}" is not in this LoKr layer`);
    return matmul(fa, fb);
  }

  protected deltaWeight(name: string): Tensor {
    return mul(kron(this.w1(name), this.w2(name)), this.scaling.get(name)!);
  }

  protected override forgetAdapter(name: string): void {
    super.forgetAdapter(name);
    this.shapes.delete(name);
  }
}
