/**
 * Rotary position embeddings (RoPE) with transformers' rope_scaling types (modeling_rope_utils.py): default, linear,
 * dynamic NTK, YaRN, Llama 3 and LongRoPE (Phi-3's "su"), computed in float32 as PyTorch does.
 */
import { ConfigError } from "../errors.js";
import { type Tensor, applyRotary, cat, narrow, tensor } from "../tensor/index.js";

/** What a rotary embedding is computed from (a model config's rope fields, resolved). */
export interface RopeSettings {
  /** Rotated dimensions of a head (head_dim · partial_rotary_factor). */
  dim: number;
  /** rope_theta. */
  theta: number;
  /** max_position_embeddings. */
  maxPositions: number;
  /** The config's top-level original_max_position_embeddings (Phi-3), if any. */
  originalMaxPositions?: number | undefined;
  /** rope_scaling as in config.json, or null. */
  scaling: Record<string, unknown> | null;
  /** Model type, for error messages. */
  modelType: string;
}

const KINDS = ["default", "linear", "dynamic", "yarn", "llama3", "longrope"] as const;
type RopeKind = (typeof KINDS)[number];

/** The rope type of a rope_scaling object ("rope_type", or the older "type"; Phi-3's "su" is LongRoPE). */
function ropeKind(s: RopeSettings): RopeKind {
  if (!s.scaling) return "default";
  const raw = s.scaling["rope_type"] ?? s.scaling["type"] ?? "default";
  const kind = raw === "su" ? "longrope" : raw;
  if (!(KINDS as readonly unknown[]).includes(kind)) {
    throw new ConfigError(
      `${s.modelType}: rope_scaling type "${String(raw)}" is not supported`,
      `use one of ${KINDS.join(", ")} (or "su")`,
    );
  }
  return kind as RopeKind;
}

/** A number field of rope_scaling; `fallback` when absent (undefined: the field is required). */
function field(s: RopeSettings, name: string, fallback?: number): number {
  const v = s.scaling?.[name];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    const hint = "copy rope_scaling from the model's original config.json";
    throw new ConfigError(`${s.modelType}: rope_scaling of type "${ropeKind(s)}" needs the field "${name}"`, hint);
  }
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new ConfigError(`${s.modelType}: rope_scaling.${name} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/** A list field of rope_scaling with one entry per rotated frequency (LongRoPE's factors). */
function factorList(s: RopeSettings, name: string): number[] {
  const v = s.scaling?.[name];
  if (!Array.isArray(v) || v.length !== s.dim / 2 || !v.every((x) => typeof x === "number")) {
    throw new ConfigError(`${s.modelType}: rope_scaling.${name} must be a list of ${s.dim / 2} numbers (head_dim / 2)`);
  }
  return v as number[];
}

/** PyTorch's `1 / base ** (arange(0, dim, 2) / dim)` in float32, each factor optionally divided first. */
function baseInvFreq(dim: number, base: number): number[] {
  return Array.from({ length: dim / 2 }, (_, i) => Math.fround(1 / Math.fround(base ** Math.fround((2 * i) / dim))));
}

/** Inverse frequencies and the cos/sin scale for a sequence of `seqLen` positions (transformers' rope init functions). */
export function ropeParameters(s: RopeSettings, seqLen: number): { invFreq: number[]; attentionFactor: number } {
  const kind = ropeKind(s),
    dim = s.dim;
  switch (kind) {
    case "default":
      return { invFreq: baseInvFreq(dim, s.theta), attentionFactor: 1 };
    case "linear": {
      const factor = field(s, "factor");
      return { invFreq: baseInvFreq(dim, s.theta).map((f) => Math.fround(f / factor)), attentionFactor: 1 };
    }
    case "dynamic": {
      // NTK: the base grows with the sequence once it passes max_position_embeddings.
      const factor = field(s, "factor"),
        max = s.maxPositions;
      const len = Math.max(seqLen, max);
      const base = s.theta * ((factor * len) / max - (factor - 1)) ** (dim / (dim - 2));
      return { invFreq: baseInvFreq(dim, base), attentionFactor: 1 };
    }
    case "yarn":
      return yarn(s);
    case "llama3":
      return llama3(s);
    case "longrope":
      return longrope(s, seqLen);
  }
}

function yarn(s: RopeSettings): { invFreq: number[]; attentionFactor: number } {
  const dim = s.dim,
    base = s.theta;
  const original = field(s, "original_max_position_embeddings", s.maxPositions);
  // With original_max_position_embeddings in rope_scaling, the factor is the context extension (DeepSeek-V3, Qwen3).
  const factor =
    s.scaling?.["original_max_position_embeddings"] !== undefined ? s.maxPositions / original : field(s, "factor");
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const m = s.scaling?.["mscale"],
    mAll = s.scaling?.["mscale_all_dim"];
  let attentionFactor = field(s, "attention_factor", NaN);
  if (Number.isNaN(attentionFactor)) {
    attentionFactor =
      typeof m === "number" && typeof mAll === "number" && m && mAll
        ? mscale(factor, m) / mscale(factor, mAll)
        : mscale(factor);
  }
  const betaFast = field(s, "beta_fast", 32) || 32,
    betaSlow = field(s, "beta_slow", 1) || 1;
  const correctionDim = (rotations: number) =>
    (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const truncate = s.scaling?.["truncate"] !== false;
  let low = correctionDim(betaFast),
    high = correctionDim(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  return {
    invFreq: Array.from({ length: dim / 2 }, (_, i) => {
      const posFreq = Math.fround(base ** Math.fround((2 * i) / dim));
      const extrapolated = Math.fround(1 / posFreq),
        interpolated = Math.fround(1 / Math.fround(factor * posFreq));
      const keep = Math.fround(1 - Math.min(Math.max(Math.fround((i - low) / (high - low)), 0), 1));
      return Math.fround(Math.fround(interpolated * Math.fround(1 - keep)) + Math.fround(extrapolated * keep));
    }),
    attentionFactor,
  };
}

function llama3(s: RopeSettings): { invFreq: number[]; attentionFactor: number } {
  const factor = field(s, "factor"),
    low = field(s, "low_freq_factor"),
    high = field(s, "high_freq_factor");
  const old = field(s, "original_max_position_embeddings");
  const lowWavelen = old / low,
    highWavelen = old / high;
  return {
    invFreq: baseInvFreq(s.dim, s.theta).map((inv) => {
      const wavelen = Math.fround((2 * Math.PI) / inv);
      if (wavelen < highWavelen) return inv;
      if (wavelen > lowWavelen) return Math.fround(inv / factor);
      const smooth = Math.fround((Math.fround(old / wavelen) - low) / (high - low));
      return Math.fround(Math.fround(Math.fround(1 - smooth) * Math.fround(inv / factor)) + Math.fround(smooth * inv));
    }),
    attentionFactor: 1,
  };
}

function longrope(s: RopeSettings, seqLen: number): { invFreq: number[]; attentionFactor: number } {
  const original = s.originalMaxPositions ?? field(s, "original_max_position_embeddings", s.maxPositions);
  const factor =
    s.originalMaxPositions !== undefined ? s.maxPositions / original : field(s, "factor", s.maxPositions / original);
  let attentionFactor = field(s, "attention_factor", NaN);
  if (Number.isNaN(attentionFactor))
    attentionFactor = factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
  // The long factors once the sequence outgrows the original context, else the short ones (as Phi-3 does per forward).
  const ext = factorList(s, seqLen > original ? "long_factor" : "short_factor");
  return {
    invFreq: ext.map((e, i) =>
      Math.fround(1 / Math.fround(Math.fround(e) * Math.fround(s.theta ** Math.fround((2 * i) / s.dim)))),
    ),
    attentionFactor,
  };
}

/** Rotary tables for one model: cos/sin per position, recomputed where the rope type depends on the sequence length. */
export class RotaryEmbedding {
  private readonly fixed: { invFreq: number[]; attentionFactor: number } | null;

  constructor(readonly settings: RopeSettings) {
    const kind = ropeKind(settings);
    if (settings.dim % 2 !== 0 || settings.dim <= 0) {
      throw new ConfigError(
        `${settings.modelType}: the rotary dimension must be even and positive, got ${settings.dim}`,
      );
    }
    // Validates the fields now (both LongRoPE lists too), so a bad config fails at load time, not on some later forward.
    const first = ropeParameters(settings, 0);
    ropeParameters(settings, Number.MAX_SAFE_INTEGER);
    this.fixed = kind === "dynamic" || kind === "longrope" ? null : first;
  }

  /**
   * cos and sin tables [batch, length, dim] for integer positions [batch, length]: angle = position·inv_freq (rounded
   * to float32 as in PyTorch), duplicated over both halves, times the attention factor (YaRN, LongRoPE).
   */
  tables(positions: Tensor): { cos: Tensor; sin: Tensor } {
    const pos = positions.dataSync();
    let maxPos = 0;
    for (let p = 0; p < pos.length; p++) maxPos = Math.max(maxPos, pos[p]!);
    const { invFreq, attentionFactor } = this.fixed ?? ropeParameters(this.settings, maxPos + 1);
    const dim = this.settings.dim,
      half = dim / 2;
    const cos = new Float32Array(pos.length * dim),
      sin = new Float32Array(pos.length * dim);
    for (let p = 0; p < pos.length; p++) {
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(pos[p]! * invFreq[i]!);
        const c = Math.fround(Math.cos(angle)) * attentionFactor,
          s = Math.fround(Math.sin(angle)) * attentionFactor;
        cos[p * dim + i] = cos[p * dim + i + half] = c;
        sin[p * dim + i] = sin[p * dim + i + half] = s;
      }
    }
    const shape = [...positions.shape, dim];
    return { cos: tensor(cos, shape), sin: tensor(sin, shape) };
  }
}

/** Rotate x [..., headDim] by cos/sin [..., rotaryDim]: all features, or the first rotaryDim when the rotation is partial. */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const d = x.shape[x.rank - 1]!,
    r = cos.shape[cos.rank - 1]!;
  if (r === d) return applyRotary(x, cos, sin);
  return cat([applyRotary(narrow(x, -1, 0, r), cos, sin), narrow(x, -1, r, d - r)], -1);
}
