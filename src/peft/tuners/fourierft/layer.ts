/**
 * FourierFT layer (peft's fourierft.FourierFTLinear) around a Linear or GPT-2's Conv1D:
 *
 *   ΔW = Re(ifft2(S)) · scaling        y = base(x) + x·ΔWᵀ        ΔW, S: [out, in]
 *
 * where S is zero but for the learned spectrum fourierft_spectrum [n] at n positions (u_k, v_k) drawn by torch's
 * randperm(out · in) seeded with random_loc_seed (row u = index // in, column v = index % in). With only n non-zero
 * entries the inverse DFT's real part is a sum of n separable cosines,
 *
 *   ΔW[p, q] = scaling / (out · in) · Σ_k s_k (cos a_kp cos b_kq − sin a_kp sin b_kq),  a_kp = 2π u_k p / out,  b_kq = 2π v_k q / in,
 *
 * so ΔW = (Cu·diag(s)·Cv − Su·diag(s)·Sv) · scaling / (out · in): two products, differentiable in s, no FFT needed.
 * The cosine/sine tables depend only on the positions and are built once per adapter.
 */
import { Conv1D, type Linear } from "../../../nn/index.js";
import {
  type Tensor,
  TorchGenerator,
  add,
  defaultGenerator,
  keep,
  linear,
  matmul,
  mul,
  sub,
  tensor,
  zeros,
} from "../../../tensor/index.js";
import { ConfigError } from "../../../errors.js";
import { ParameterDict } from "../tuner-layer.js";
import { AdditiveLayer, setAdapterParameter } from "../linear-tuner.js";

/** The cos/sin tables of one adapter's positions: Cu, Su [out, n]; Cv, Sv [n, in]. */
interface Tables {
  cu: Tensor;
  su: Tensor;
  cv: Tensor;
  sv: Tensor;
}

/** The n positions of a FourierFT adapter, as peft draws them: the first n of torch's randperm(out · in). */
export function frequencyPositions(
  outFeatures: number,
  inFeatures: number,
  n: number,
  seed: number,
): { rows: number[]; cols: number[] } {
  const perm = new TorchGenerator(seed).randperm(outFeatures * inFeatures).slice(0, n);
  return { rows: perm.map((i) => Math.floor(i / inFeatures)), cols: perm.map((i) => i % inFeatures) };
}

/** cos and sin of 2π·pos·index/size as [size, n] (transposed: [n, size]) float32 tables. */
function trigTables(positions: number[], size: number, transposed: boolean): [Tensor, Tensor] {
  const n = positions.length;
  const c = new Float32Array(n * size),
    s = new Float32Array(n * size);
  for (let k = 0; k < n; k++) {
    for (let p = 0; p < size; p++) {
      // (pos·p) mod size keeps the angle in [0, 2π) so that float64 trig stays exact for large layers.
      const angle = (2 * Math.PI * ((positions[k]! * p) % size)) / size;
      const at = transposed ? k * size + p : p * n + k;
      c[at] = Math.cos(angle);
      s[at] = Math.sin(angle);
    }
  }
  const shape = transposed ? [n, size] : [size, n];
  return [keep(tensor(c, shape)), keep(tensor(s, shape))];
}

/** FourierFT on a Linear ([out, in] weight) or a GPT-2 Conv1D ([in, out] weight). */
export class FourierFTLinear extends AdditiveLayer {
  readonly adapterLayerNames = ["fourierft_spectrum"] as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly nFrequency = new Map<string, number>();
  readonly scaling = new Map<string, number>();
  readonly randomLocSeed = new Map<string, number>();
  /** Each adapter's positions (row, column), as peft's `indices`. */
  readonly indices = new Map<string, { rows: number[]; cols: number[] }>();
  private readonly tables = new Map<string, Tables>();
  fourierft_spectrum: ParameterDict;

  constructor(base: Linear | Conv1D) {
    super(base);
    [this.inFeatures, this.outFeatures] =
      base instanceof Conv1D ? [base.nx, base.nf] : [base.inFeatures, base.outFeatures];
    this.fourierft_spectrum = this.registerModule("fourierft_spectrum", new ParameterDict());
  }

  /** Whether this layer holds adapter `name`. */
  hasAdapter(name: string): boolean {
    return this.fourierft_spectrum.ownParameter(name) !== null;
  }

  /** Add (or re-create) an adapter (peft's update_layer): positions from torch's randperm, spectrum N(0, 1) or 0 with initWeights. */
  updateLayer(
    name: string,
    nFrequency: number,
    scaling: number,
    initWeights: boolean,
    randomLocSeed: number | null,
  ): void {
    if (!Number.isInteger(nFrequency) || nFrequency <= 0)
      throw new ConfigError(`\`n_frequency\` should be a positive integer value but the value passed is ${nFrequency}`);
    if (nFrequency > this.inFeatures * this.outFeatures) {
      throw new ConfigError(
        `\`n_frequency\` should be less than or equal to the product of the input and output ` +
          `dimensions but the value passed is ${nFrequency} and the product is ` +
          `${this.inFeatures * this.outFeatures}`,
        "lower n_frequency (or n_frequency_pattern for this layer)",
      );
    }
    if (randomLocSeed === null)
      throw new ConfigError(
        "FourierFT needs `random_loc_seed` (peft seeds torch's generator with it); null is not a seed",
        "remove it to use the default 777",
      );
    this.nFrequency.set(name, nFrequency);
    this.scaling.set(name, scaling);
    this.randomLocSeed.set(name, randomLocSeed);
    this.indices.set(name, frequencyPositions(this.outFeatures, this.inFeatures, nFrequency, randomLocSeed));
    this.dropTables(name);
    setAdapterParameter(
      this.fourierft_spectrum,
      name,
      initWeights ? zeros([nFrequency]) : defaultGenerator.normal([nFrequency]),
    );
    this.setAdapter(this.activeAdapters);
  }

  /** The learned spectrum of an adapter. */
  spectrum(name: string): Tensor {
    const s = this.fourierft_spectrum.ownParameter(name);
    if (!s) throw new Error(`adapter "${name}" is not in this FourierFT layer`);
    return s;
  }

  private tablesOf(name: string): Tables {
    let t = this.tables.get(name);
    if (!t) {
      const { rows, cols } = this.indices.get(name)!;
      const [cu, su] = trigTables(rows, this.outFeatures, false);
      const [cv, sv] = trigTables(cols, this.inFeatures, true);
      t = { cu, su, cv, sv };
      this.tables.set(name, t);
    }
    return t;
  }

  private dropTables(name: string): void {
    const t = this.tables.get(name);
    if (t) for (const x of [t.cu, t.su, t.cv, t.sv]) x.dispose();
    this.tables.delete(name);
  }

  /** ΔW of one adapter as [out, in] (peft's get_delta_weight). */
  getDeltaWeight(name: string): Tensor {
    const { cu, su, cv, sv } = this.tablesOf(name);
    const s = this.spectrum(name);
    const real = sub(matmul(mul(cu, s), cv), matmul(mul(su, s), sv));
    return mul(real, this.scaling.get(name)! / (this.outFeatures * this.inFeatures));
  }

  /** Apply the layer: the base output plus x·ΔWᵀ of each active adapter. */
  forward(x: Tensor): Tensor {
    let result = this.baseForward(x);
    for (const name of this.adaptersToApply()) {
      if (this.hasAdapter(name)) result = add(result, linear(x, this.getDeltaWeight(name)));
    }
    return result;
  }

  protected forgetAdapter(name: string): void {
    this.dropTables(name);
    for (const m of [this.nFrequency, this.scaling, this.randomLocSeed, this.indices]) m.delete(name);
  }

  protected override extraRepr(): string {
    return (
      `in=${this.inFeatures}, out=${this.outFeatures}, ` +
      `n_frequency={${[...this.nFrequency].map(([k, v]) => `${k}: ${v}`).join(", ")}}`
    );
  }
}
