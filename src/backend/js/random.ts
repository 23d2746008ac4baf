/**
 * Counter-based random numbers shared by every backend (the native kernels implement the same integer
 * arithmetic, so a seed gives the same values everywhere).
 *
 * bits(seed, i) = fmix32((i mod 2³²) ^ fmix32((⌊i / 2³²⌋ ^ seed) + 0x9E3779B9))   (murmur3's finaliser, uint32 math)
 * uniform u(i)  = (bits >>> 8) / 2²⁴ ∈ [0, 1), exact in float32
 * normal z(i)   = √(−2 ln(1 − u(2i))) · cos(2π · u(2i + 1))   (Box–Muller, in double, rounded to float32)
 */

/** murmur3's 32-bit finaliser. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Uniform float in [0, 1) for stream position `index` of `seed`. */
export function uniformAt(seed: number, index: number): number {
  const lo = index >>> 0;
  const hi = Math.floor(index / 4294967296) >>> 0;
  const h = fmix32((lo ^ fmix32(((hi ^ seed) + 0x9e3779b9) >>> 0)) >>> 0);
  return (h >>> 8) / 16777216;
}

/** Standard normal for stream position `index` of `seed` (uses positions 2·index and 2·index + 1). */
export function normalAt(seed: number, index: number): number {
  const u1 = uniformAt(seed, 2 * index);
  const u2 = uniformAt(seed, 2 * index + 1);
  return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
}
