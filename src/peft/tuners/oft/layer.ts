/**
 * OFT layer (peft 0.15.2's oft.Linear) around a Linear:
 *
 *   W' = (W · Mᵀ) ⊙ s        y = x·W'ᵀ + bias        M = blockdiag(Q_1 … Q_r),  Q_i = (I − S_i)(I + S_i)⁻¹
 *
 * with S_i = (R_i − R_iᵀ) / 2 the skew-symmetric part of the learned oft_r block R_i (Cayley transform: Q_i is
 * orthogonal), oft_r [r, b, b] (or [1, b, b] with block_share) where b = in / r, and oft_s [out, 1] the learned
 * output scale. Several active adapters rotate in turn. M·Wᵀ is applied block by block: W's columns in groups of b
 * times Q_iᵀ, so the [in, in] block-diagonal matrix is never formed. COFT projects each R_i into a ball of radius
 * eps / √(blocks) before use, in place (as peft does); module_dropout swaps a random int(p · r) of the blocks for
 * the identity while training. Merging writes W' into the weight; unmerging applies Mᵀ's inverse (M) and divides by s.
 */
import type { Linear } from "../../../nn/index.js";
import {
  type Tensor,
  add,
  defaultGenerator,
  div,
  linear,
  matmul,
  mul,
  noGrad,
  ones,
  permute,
  reshape,
  sub,
  tensor,
  tidy,
  transpose,
  zeros,
} from "../../../tensor/index.js";
import { inverse } from "../../../tensor/linalg.js";
import { ConfigError } from "../../../errors.js";
import { BaseTunerLayer, ParameterDict } from "../tuner-layer.js";
import { setAdapterParameter } from "../linear-tuner.js";

/** peft's adjust_oft_parameters: the divisor of `inFeatures` nearest to `value` (the lower one on ties). */
export function nearestDivisor(inFeatures: number, value: number): number {
  if (value >= inFeatures) return inFeatures;
  let higher = value;
  while (higher <= inFeatures && inFeatures % higher !== 0) higher++;
  let lower = value;
  while (lower > 1 && inFeatures % lower !== 0) lower--;
  return value - lower <= higher - value ? lower : higher;
}

/** I_b batched as [1, b, b]. */
export function identityBatch(b: number): Tensor {
  const eye = new Float32Array(b * b);
  for (let i = 0; i < b; i++) eye[i * b + i] = 1;
  return tensor(eye, [1, b, b]);
}

/** The Cayley transform of each block of R [n, b, b]: (I − S)(I + S)⁻¹ with S = (R − Rᵀ) / 2 (peft's _cayley_batch). */
export function cayley(r: Tensor): Tensor {
  const skew = mul(sub(r, transpose(r)), 0.5);
  const eye = identityBatch(r.shape[1]!);
  return matmul(sub(eye, skew), inverse(add(eye, skew)));
}

/** W [out, in] · blockdiag(Q)ᵀ for blocks Q [n, b, b] (n = in / b, or 1 block repeated). */
export function rotateColumns(w: Tensor, q: Tensor): Tensor {
  const [out, inp] = w.shape as [number, number];
  const b = q.shape[1]!;
  const grouped = permute(reshape(w, [out, inp / b, b]), [1, 0, 2]); // [n, out, b]
  return reshape(permute(matmul(grouped, transpose(q)), [1, 0, 2]), [out, inp]);
}

/** peft's MultiplicativeDropoutLayer on blocks Q [n, b, b]: int(p · n) random blocks become the identity (none when n is 1). */
export function dropBlocks(q: Tensor, p: number): Tensor {
  const n = q.shape[0]!,
    b = q.shape[1]!;
  if (n === 1) return q;
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = defaultGenerator.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const replace = new Float32Array(n);
  for (const i of order.slice(0, Math.floor(p * n))) replace[i] = 1;
  const mask = tensor(replace, [n, 1, 1]);
  return add(mul(sub(1, mask), q), mul(mask, identityBatch(b)));
}

/**
 * What OFT and BOFT layers share around a Linear: the weight is rotated in its input space by each active adapter
 * in turn and its rows scaled, y = x·W'ᵀ + bias; merging writes W' into the weight, unmerging rotates back and
 * divides by the scale (exact up to rounding: the rotations are orthogonal).
 */
export abstract class OrthogonalLayer extends BaseTunerLayer {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(base: Linear) {
    super(base);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** Whether this layer holds adapter `name`. */
  abstract hasAdapter(name: string): boolean;
  /** W·Mᵀ for the adapter's rotation M (with training-time dropout when `training`). */
  protected abstract rotate(w: Tensor, name: string, training: boolean): Tensor;
  /** W·M: undoes `rotate`. */
  protected abstract unrotate(w: Tensor, name: string): Tensor;
  /** The adapter's output scale [out, 1]. */
  protected abstract scale(name: string): Tensor;

  /** The weight with every given adapter's rotation and scale applied, as [out, in]. */
  private adaptedWeight(names: string[], training: boolean): Tensor {
    let w: Tensor = this.base_layer.getTensor("weight");
    for (const name of names) w = mul(this.rotate(w, name, training), this.scale(name));
    return w;
  }

  /** Apply the layer: the base layer with its weight rotated and scaled by the active adapters. */
  forward(x: Tensor): Tensor {
    const names = this.adaptersToApply().filter((n) => this.hasAdapter(n));
    if (names.length === 0) return this.baseForward(x);
    return linear(x, this.adaptedWeight(names, this.training), this.base_layer.ownParameter("bias"));
  }

  protected mergeOne(name: string): void {
    noGrad(() => tidy(() => this.base_layer.getTensor("weight").copy_(this.adaptedWeight([name], false))));
  }

  protected unmergeOne(name: string): void {
    noGrad(() =>
      tidy(() => {
        const w = this.base_layer.getTensor("weight");
        w.copy_(div(this.unrotate(w, name), this.scale(name)));
      }),
    );
  }
}

/** What an OFT adapter was set up with. */
export interface OFTSettings {
  r: number;
  blockSize: number;
  moduleDropout: number;
  coft: boolean;
  eps: number;
  blockShare: boolean;
  initWeights: boolean;
}

/** OFT on a Linear ([out, in] weight). */
export class OFTLinear extends OrthogonalLayer {
  readonly adapterLayerNames = ["oft_r", "oft_s"] as const;
  /** Each adapter's settings after peft's adjustment of r / oft_block_size (eps already scaled). */
  readonly settings = new Map<string, OFTSettings>();
  oft_r: ParameterDict;
  oft_s: ParameterDict;

  constructor(base: Linear) {
    super(base);
    this.oft_r = this.registerModule("oft_r", new ParameterDict());
    this.oft_s = this.registerModule("oft_s", new ParameterDict());
  }

  hasAdapter(name: string): boolean {
    return this.settings.has(name);
  }

  /** Add (or re-create) an adapter (peft's update_layer): r or oft_block_size moved to a divisor of in_features, with a warning. */
  updateLayer(name: string, s: OFTSettings): void {
    let { r, blockSize } = s;
    if (r === 0 && blockSize !== 0) {
      if (this.inFeatures % blockSize !== 0 || blockSize > this.inFeatures) {
        const adjusted = nearestDivisor(this.inFeatures, blockSize);
        process.emitWarning(`Invalid \`oft_block_size\` (${blockSize})! Adjusted \`oft_block_size\` to (${adjusted}).`);
        blockSize = adjusted;
      }
      r = this.inFeatures / blockSize;
    } else if (r !== 0 && blockSize === 0) {
      if (this.inFeatures % r !== 0 || r > this.inFeatures) {
        const adjusted = nearestDivisor(this.inFeatures, r);
        process.emitWarning(`Invalid \`r\` (${r})! Adjusted \`r\` to (${adjusted}).`);
        r = adjusted;
      }
      blockSize = this.inFeatures / r;
    } else {
      throw new ConfigError(`OFT needs exactly one of r (${r}) and oft_block_size (${blockSize}) non-zero`);
    }
    const blocks = Math.ceil(this.outFeatures / r);
    this.settings.set(name, { ...s, r, blockSize, eps: s.eps * blocks * blocks });
    const shape = [s.blockShare ? 1 : r, blockSize, blockSize];
    const rot = s.initWeights ? zeros(shape) : defaultGenerator.normal(shape, 0, 0.1);
    const scale = s.initWeights ? ones([this.outFeatures, 1]) : defaultGenerator.normal([this.outFeatures, 1], 1, 0.1);
    setAdapterParameter(this.oft_r, name, rot);
    setAdapterParameter(this.oft_s, name, scale);
    this.setAdapter(this.activeAdapters);
  }

  private factors(name: string): { r: Tensor; s: Tensor } {
    const r = this.oft_r.ownParameter(name),
      s = this.oft_s.ownParameter(name);
    if (!r || !s) throw new Error(`adapter "${name}" is not in this OFT layer`);
    return { r, s };
  }

  /** COFT's in-place projection of each block into the ball of radius eps / √blocks around 0 (peft's _project_batch). */
  private projectInPlace(r: Tensor, eps: number): void {
    const radius = eps / Math.sqrt(r.shape[0]!);
    const data = Float32Array.from(r.dataSync());
    const size = r.shape[1]! * r.shape[2]!;
    for (let at = 0; at < data.length; at += size) {
      let norm = 0;
      for (let i = at; i < at + size; i++) norm += data[i]! * data[i]!;
      norm = Math.sqrt(norm);
      if (norm > radius) for (let i = at; i < at + size; i++) data[i] = (radius * data[i]!) / norm;
    }
    noGrad(() => r.copy_(tensor(data, r.shape)));
  }

  /** The rotation blocks Q [n, b, b] of an adapter (COFT projection first; multiplicative dropout while training). */
  rotationBlocks(name: string, training = false): Tensor {
    const { r } = this.factors(name);
    const s = this.settings.get(name)!;
    if (s.coft) this.projectInPlace(r, s.eps);
    const q = cayley(r);
    return training && s.moduleDropout > 0 ? dropBlocks(q, s.moduleDropout) : q;
  }

  protected rotate(w: Tensor, name: string, training: boolean): Tensor {
    return rotateColumns(w, this.rotationBlocks(name, training));
  }

  protected unrotate(w: Tensor, name: string): Tensor {
    return rotateColumns(w, transpose(this.rotationBlocks(name)));
  }

  protected scale(name: string): Tensor {
    return this.factors(name).s;
  }

  protected forgetAdapter(name: string): void {
    this.settings.delete(name);
  }

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, ` +
      `r={${[...this.settings].map(([k, v]) => `${k}: ${v.r}`).join(", ")}}`
    );
  }
}
