/**
 * BOFT layer (peft 0.15.2's boft.Linear) around a Linear: OFT with a butterfly-factored rotation,
 *
 *   M = B_m ⋯ B_1·B_0,   B_i = P_i · blockdiag(Q_i1 … Q_iD) · P_iᵀ,   Q = Cayley(boft_R)        W' = (W·Mᵀ) ⊙ boft_s
 *
 * with boft_R [m + 1, D, H, H] (m + 1 = boft_n_butterfly_factor factors of D blocks of size H, D·H = in) and P_i
 * peft's block-butterfly permutations (P_0 the identity; P_i, i ≥ 1, interleaves halves of blocks of in / (D / 2^i)
 * features). The permutations are applied as column gathers and the block-diagonals block by block, so no [in, in]
 * matrix is formed: W·B_iᵀ = gather(rotate(gather(W, P_i⁻¹), Q_i), P_i).
 *
 * peft 0.15.2 builds the block-diagonals with a CUDA extension and, where it cannot load it (any CPU-only machine),
 * silently uses one factor whatever boft_n_butterfly_factor says. peft-ts always honours the config (peft's
 * behaviour with the extension); an adapter saved by a CPU-only peft has boft_R [1, …] and loads as such when its
 * config says boft_n_butterfly_factor 1.
 */
import type { Linear } from "../../../nn/index.js";
import {
  type Tensor,
  defaultGenerator,
  indexSelect,
  keep,
  narrow,
  ones,
  reshape,
  tensor,
  transpose,
  zeros,
} from "../../../tensor/index.js";
import { ConfigError } from "../../../errors.js";
import { ParameterDict } from "../tuner-layer.js";
import { setAdapterParameter } from "../linear-tuner.js";
import { OrthogonalLayer, cayley, dropBlocks, rotateColumns } from "../oft/layer.js";

/**
 * peft's block_butterfly_perm(n, b, r, factors): within each run of n / b indices, runs of r indices are reordered
 * evens first then odds; the identity when factors is 0. Row k of the permutation matrix has its 1 in column perm[k].
 */
export function blockButterflyPerm(n: number, b: number, r: number, factors: number): number[] {
  const indices = Array.from({ length: n }, (_, i) => i);
  if (factors === 0) return indices;
  if (b * r * 2 > n) throw new ConfigError("Invalid number of blocks!");
  const blockSize = Math.floor(n / b);
  const step = blockSize / r;
  const seq: number[] = [];
  for (let v = 0; v < step; v += 2) seq.push(v);
  for (let v = 1; v < step; v += 2) seq.push(v);
  const sortedOrder = new Array<number>(blockSize);
  seq.forEach((pos, i) => {
    for (let j = 0; j < r; j++) sortedOrder[i * r + j] = pos * r + j;
  });
  const out = [...indices];
  for (let start = 0; start < n; start += blockSize)
    for (let j = 0; j < blockSize; j++) out[start + j] = indices[start + sortedOrder[j]!]!;
  return out;
}

/** What a BOFT adapter was set up with. */
export interface BOFTSettings {
  blockSize: number;
  blockNum: number;
  nButterflyFactor: number;
  dropout: number;
  initWeights: boolean;
}

/** One butterfly factor's column gathers: `forward` = perm (X·P_iᵀ), `inverse` (W·P_i). */
interface FactorPerm {
  forward: Tensor;
  inverse: Tensor;
}

/** BOFT on a Linear ([out, in] weight). */
export class BOFTLinear extends OrthogonalLayer {
  readonly adapterLayerNames = ["boft_R", "boft_s"] as const;
  /** Each adapter's settings after peft's derivation of the block size / number. */
  readonly settings = new Map<string, BOFTSettings>();
  /** Each adapter's permutations per factor (null for the identity). */
  private readonly perms = new Map<string, (FactorPerm | null)[]>();
  boft_R: ParameterDict;
  boft_s: ParameterDict;

  constructor(base: Linear) {
    super(base);
    this.boft_R = this.registerModule("boft_R", new ParameterDict());
    this.boft_s = this.registerModule("boft_s", new ParameterDict());
  }

  hasAdapter(name: string): boolean {
    return this.settings.has(name);
  }

  /** Add (or re-create) an adapter (peft's update_layer), with peft's checks of block size, number and factors. */
  updateLayer(name: string, s: BOFTSettings): void {
    const m = s.nButterflyFactor - 1;
    if (m < 0)
      throw new ConfigError(`You can only specify boft_n_butterfly_factor ${m + 1} to be a positive integer number.`);
    const inF = this.inFeatures;
    let { blockSize, blockNum } = s;
    if (blockSize === 0 && blockNum !== 0) {
      if (inF % blockNum !== 0)
        throw new ConfigError(`in_features (${inF}) must be divisible by boft_block_num (${blockNum})!`);
      if (m !== 0 && m > Math.floor(Math.log2(blockNum)))
        throw new ConfigError(
          `Invalid combination of boft_n_butterfly_factor (${m + 1}) and boft_block_num (${blockNum})!`,
        );
      if (m !== 0 && blockNum % 2 ** m !== 0)
        throw new ConfigError(
          `boft_block_num (${blockNum}) must be a multiple of 2 raised to the power of ` +
            `boft_n_butterfly_factor (${m + 1})!`,
        );
      blockSize = inF / blockNum;
    } else if (blockSize !== 0 && blockNum === 0) {
      if (inF % blockSize !== 0)
        throw new ConfigError(`in_features (${inF}) must be divisible by boft_block_size (${blockSize})!`);
      if (m !== 0 && (inF < blockSize * 2 ** m || inF % (blockSize * 2 ** m) !== 0)) {
        throw new ConfigError(
          `Invalid combination of in_features (${inF}), boft_n_butterfly_factor (${m + 1}) and ` +
            `boft_block_size (${blockSize})!`,
        );
      }
      blockNum = inF / blockSize;
    } else {
      throw new ConfigError(
        `BOFT needs exactly one of boft_block_size (${blockSize}) and boft_block_num (${blockNum}) non-zero`,
      );
    }
    if (m !== 0 && blockNum % 2 !== 0) throw new ConfigError(`boft_block_num (${blockNum}) must be an even number!`);
    if (m !== 0 && blockSize % 2 !== 0) throw new ConfigError(`boft_block_size (${blockSize}) must be an even number!`);
    this.dropPerms(name);
    this.perms.set(
      name,
      Array.from({ length: m + 1 }, (_, i) => {
        const perm = blockButterflyPerm(inF, Math.floor(blockNum / 2 ** i), Math.floor(blockSize / 2), m);
        if (perm.every((v, k) => v === k)) return null;
        const inverse = new Int32Array(inF);
        perm.forEach((v, k) => {
          inverse[v] = k;
        });
        return { forward: keep(tensor(Int32Array.from(perm), [inF])), inverse: keep(tensor(inverse, [inF])) };
      }),
    );
    this.settings.set(name, { ...s, blockSize, blockNum });
    const shape = [m + 1, blockNum, blockSize, blockSize];
    const rot = s.initWeights ? zeros(shape) : defaultGenerator.normal(shape, 0, 0.1);
    const scale = s.initWeights ? ones([this.outFeatures, 1]) : defaultGenerator.normal([this.outFeatures, 1], 1, 0.1);
    setAdapterParameter(this.boft_R, name, rot);
    setAdapterParameter(this.boft_s, name, scale);
    this.setAdapter(this.activeAdapters);
  }

  private dropPerms(name: string): void {
    for (const p of this.perms.get(name) ?? []) if (p) for (const t of [p.forward, p.inverse]) t.dispose();
    this.perms.delete(name);
  }

  private factors(name: string): { r: Tensor; s: Tensor } {
    const r = this.boft_R.ownParameter(name),
      s = this.boft_s.ownParameter(name);
    if (!r || !s) throw new Error(`adapter "${name}" is not in this BOFT layer`);
    return { r, s };
  }

  /** The Cayley blocks of each factor, [m + 1] × [D, H, H] (one factor's blocks dropped to the identity while training with boft_dropout). */
  rotationBlocks(name: string, training = false): Tensor[] {
    const { r } = this.factors(name);
    const [f, d, h] = r.shape as [number, number, number];
    const q = reshape(cayley(reshape(r, [f * d, h, h])), [f, d, h, h]);
    const blocks = Array.from({ length: f }, (_, i) => reshape(narrow(q, 0, i, 1), [d, h, h]));
    const p = this.settings.get(name)!.dropout;
    if (training && p > 0) {
      const i = defaultGenerator.int(f);
      blocks[i] = dropBlocks(blocks[i]!, p);
    }
    return blocks;
  }

  protected rotate(w: Tensor, name: string, training: boolean): Tensor {
    const blocks = this.rotationBlocks(name, training);
    const perms = this.perms.get(name)!;
    // W·Mᵀ = W·B_0ᵀ·B_1ᵀ ⋯ B_mᵀ.
    return blocks.reduce((acc, q, i) => this.applyFactor(acc, q, perms[i]!), w);
  }

  protected unrotate(w: Tensor, name: string): Tensor {
    const blocks = this.rotationBlocks(name);
    const perms = this.perms.get(name)!;
    // W·M = W·B_m ⋯ B_0, and W·B_i = W·(B_iᵀ with the blocks transposed).
    return blocks.reduceRight((acc, q, i) => this.applyFactor(acc, transpose(q), perms[i]!), w);
  }

  /** X·(P·blockdiag(Q)·Pᵀ)ᵀ = gather(rotate(gather(X, P⁻¹), Q), P). */
  private applyFactor(x: Tensor, q: Tensor, perm: FactorPerm | null): Tensor {
    if (!perm) return rotateColumns(x, q);
    return indexSelect(rotateColumns(indexSelect(x, 1, perm.inverse), q), 1, perm.forward);
  }

  protected scale(name: string): Tensor {
    return this.factors(name).s;
  }

  protected forgetAdapter(name: string): void {
    this.dropPerms(name);
    this.settings.delete(name);
  }

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, ` +
      `blocks={${[...this.settings].map(([k, v]) => `${k}: ${v.nButterflyFactor}×${v.blockNum}×${v.blockSize}`).join(", ")}}`
    );
  }
}
