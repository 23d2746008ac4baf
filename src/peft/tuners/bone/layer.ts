/**
 * Bone layer (peft's bone.Linear). The adapter is bone_block; W is the base weight [out, in], r the block size.
 *
 *   Bone (bone_block [r, out]): every group of r input columns shares one update:
 *     W' = W + Bᵀ tiled along the columns,  i.e. W'[o, c] = W[o, c] + B[c mod r, o]
 *     y  = base(x) + (Σ over the r-wide chunks of x, zero-padded to a multiple of r)·B
 *   Bat (bone_block [out/r, r, r], init_weights "bat"): each [r, r] block W_IJ (row block I, column block J) gets
 *     W'_IJ = W_IJ + W_IJ·B_I + B_I,   y = x·W'ᵀ + b
 *     undone by W_IJ = (W'_IJ − B_I)·(I + B_I)⁻¹.
 *
 * A layer holds adapters of one kind: peft fixes the kind at the layer's first adapter and would run a later adapter
 * of the other kind with the wrong formula, so that combination is refused here.
 */
import type { Linear } from "../../../nn/index.js";
import { kaimingUniformA5 } from "../../../nn/init.js";
import {
  type Tensor,
  add,
  cat,
  linear,
  matmul,
  narrow,
  noGrad,
  parameter,
  permute,
  reshape,
  sub,
  sum,
  tensor,
  tidy,
  transpose,
  zeros,
} from "../../../tensor/index.js";
import { inverseF64 } from "../../../tensor/linalg.js";
import { ParameterDict } from "../tuner-layer.js";
import { WeightTransformLayer } from "../weight-transform.js";

/** Bone (or Bat) on a Linear. */
export class BoneLinear extends WeightTransformLayer {
  readonly adapterLayerNames = ["bone_block"] as const;
  bone_block: ParameterDict;
  /** Whether this layer's adapters are Bat ("bat") blocks; fixed by its first adapter. */
  private bat: boolean | null = null;

  constructor(base: Linear) {
    super(base);
    this.bone_block = this.registerModule("bone_block", new ParameterDict());
  }

  get adapterWeights(): ParameterDict {
    return this.bone_block;
  }

  /** Add (or re-create) an adapter (peft's update_layer): zeros, Kaiming-uniform ([r, out]: fan-in out) or Bat zeros. */
  updateLayer(name: string, r: number, initWeights: boolean | "bat"): void {
    const bat = initWeights === "bat";
    if (this.bat !== null && this.bat !== bat && this.adapterNames().some((n) => n !== name)) {
      throw new Error(
        `this Bone layer holds ${this.bat ? '"bat"' : "Bone"} adapters; adapter "${name}" ` +
          `(init_weights ${JSON.stringify(initWeights)}) cannot be added to it (peft would run it ` +
          `with the other kind's formula)`,
      );
    }
    if (bat && (this.inFeatures % r !== 0 || this.outFeatures % r !== 0)) {
      throw new Error(
        `The weight matrix must be fully divisible into [r, r] blocks: [${this.outFeatures}, ` +
          `${this.inFeatures}] with r = ${r}; pick an r dividing both`,
      );
    }
    this.bat = bat;
    this.r.set(name, r);
    const value = bat
      ? zeros([this.outFeatures / r, r, r])
      : initWeights
        ? zeros([r, this.outFeatures])
        : kaimingUniformA5([r, this.outFeatures], this.outFeatures);
    const old = this.bone_block.ownParameter(name);
    this.bone_block.registerParameter(name, parameter(value));
    if (old) old.dispose();
    this.setAdapter(this.activeAdapters);
  }

  /** W as [in/r, out/r, r, r] blocks (index [J, I]: row block I, column block J). */
  private blocks(w: Tensor, r: number): Tensor {
    return permute(reshape(w, [this.outFeatures / r, r, this.inFeatures / r, r]), [2, 0, 1, 3]);
  }

  /** The inverse of blocks(). */
  private unblock(t: Tensor): Tensor {
    return reshape(permute(t, [1, 2, 0, 3]), [this.outFeatures, this.inFeatures]);
  }

  /** Bat's change W_IJ·B_I + B_I for the weight w. */
  private batDelta(name: string, w: Tensor): Tensor {
    const b = this.param(name);
    return this.unblock(add(matmul(this.blocks(w, this.r.get(name)!), b), b));
  }

  /** Bone's change as a full [out, in] matrix: Bᵀ tiled along the columns. */
  private boneDelta(name: string): Tensor {
    const r = this.r.get(name)!;
    const bt = transpose(this.param(name));
    const copies = Math.ceil(this.inFeatures / r);
    return narrow(cat(Array(copies).fill(bt), 1), 1, 0, this.inFeatures);
  }

  /** Apply the layer. */
  forward(x: Tensor): Tensor {
    const names = this.adaptersToApply();
    if (names.length === 0) return this.baseForward(x);
    if (this.bat) {
      let w = this.linearBase.weight;
      for (const name of names) w = add(w, this.batDelta(name, w));
      return linear(x, w, this.linearBase.bias);
    }
    let y = this.baseForward(x);
    for (const name of names) {
      const r = this.r.get(name)!;
      const pad = (r - (this.inFeatures % r)) % r;
      const padded = pad === 0 ? x : cat([x, zeros([...x.shape.slice(0, -1), pad])], -1);
      const chunks = reshape(padded, [...x.shape.slice(0, -1), (this.inFeatures + pad) / r, r]);
      y = add(y, matmul(sum(chunks, -2), this.param(name)));
    }
    return y;
  }

  protected mergeOne(name: string): void {
    noGrad(() =>
      tidy(() => {
        const w = this.linearBase.weight;
        w.copy_(add(w, this.bat ? this.batDelta(name, w) : this.boneDelta(name)));
      }),
    );
  }

  protected unmergeOne(name: string): void {
    noGrad(() =>
      tidy(() => {
        const w = this.linearBase.weight;
        if (!this.bat) {
          w.copy_(sub(w, this.boneDelta(name)));
          return;
        }
        const r = this.r.get(name)!;
        const b = this.param(name);
        const values = b.dataSync();
        const inverses = new Float32Array(values.length);
        for (let i = 0; i < this.outFeatures / r; i++) {
          const block = Float64Array.from(values.subarray(i * r * r, (i + 1) * r * r));
          for (let d = 0; d < r; d++) block[d * r + d]! += 1;
          inverses.set(inverseF64(block, r), i * r * r);
        }
        w.copy_(this.unblock(matmul(sub(this.blocks(w, r), b), tensor(inverses, b.shape))));
      }),
    );
  }
}
