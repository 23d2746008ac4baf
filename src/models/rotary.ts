/** Rotary position embeddings (RoPE) as transformers computes them, in float32 like PyTorch. */
import { Tensor, tensor } from "../tensor/index.js";

/**
 * cos and sin tables [batch, length, dim] for integer positions [batch, length]: inv_freq_i = 1/θ^(2i/dim),
 * angle = position·inv_freq (rounded to float32 as in PyTorch), duplicated over both halves of the head dim.
 */
export function rotaryTables(positions: Tensor, dim: number, theta: number): { cos: Tensor; sin: Tensor } {
  const half = dim / 2;
  const invFreq = Array.from({ length: half }, (_, i) => Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / dim)))));
  const pos = positions.dataSync();
  const cos = new Float32Array(pos.length * dim), sin = new Float32Array(pos.length * dim);
  for (let p = 0; p < pos.length; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos[p]! * invFreq[i]!);
      const c = Math.cos(angle), s = Math.sin(angle);
      cos[p * dim + i] = cos[p * dim + i + half] = c;
      sin[p * dim + i] = sin[p * dim + i + half] = s;
    }
  }
  const shape = [...positions.shape, dim];
  return { cos: tensor(cos, shape), sin: tensor(sin, shape) };
}

/** Reject rope_scaling variants that are not implemented instead of computing wrong numbers. */
export function checkRopeScaling(ropeScaling: unknown, modelType: string): void {
  if (ropeScaling === null || ropeScaling === undefined) return;
  const kind = (ropeScaling as Record<string, unknown>)["rope_type"] ?? (ropeScaling as Record<string, unknown>)["type"];
  if (kind === "default") return;
  throw new Error(`${modelType}: rope_scaling of type "${String(kind)}" is not supported yet; remove it from config.json only if the model was trained without it`);
}
