/**
 * Small dense linear algebra in Float64, in TypeScript: the thin singular value decomposition (one-sided Jacobi),
 * the SVD of a low-rank product B·A without forming it (Householder QR + Jacobi), orthonormal completion and
 * torch's linear-interpolation quantile. Made for LoRA-sized matrices (weighted adapters), not for large dense
 * problems.
 *
 * Complexity of `svd` / `svdF64` on an m×n matrix, p = min(m, n), q = max(m, n): O(sweeps · p² · q) time with
 * typically 6–12 sweeps, O(m·n + p²) memory. Measured on one core (Node 20): 64×64 a few ms once warm,
 * 4096×64 ≈ 0.4 s, 512×512 ≈ 5 s — fine for LoRA-sized problems, too slow for big dense ones. `svdOfProduct`
 * on B [m, r] · A [r, n] with r < min(m, n) costs O((m + n)·r² + sweeps·r²·m) and never forms the m×n product:
 * a rank-16 delta of a 4096×4096 layer takes ≈ 0.2 s.
 *
 * Accuracy: one-sided Jacobi computes every singular value to high relative accuracy (|Δσ| ≲ 1e-14·σ_max); the
 * singular vectors are orthonormal to ~1e-14. Their signs (and, for repeated singular values, the basis of the
 * subspace) differ from LAPACK's, as they may between any two implementations: products U·diag(S)·Vh agree.
 */
import { type Tensor, tensor } from "./tensor.js";
import { fmtShape } from "./shape.js";
import { record } from "./autograd.js";
import { matmul, mul, transpose } from "./ops/index.js";

/** A thin SVD in Float64, row-major: A (m×n) = u (m×k) · diag(s) (k) · vh (k×n), k = min(m, n) unless stated. */
export interface SvdF64 {
  m: number;
  n: number;
  k: number;
  /** m×k, orthonormal columns. */
  u: Float64Array;
  /** k singular values, descending, ≥ 0. */
  s: Float64Array;
  /** k×n, orthonormal rows. */
  vh: Float64Array;
}

/** The thin SVD of a float32 matrix as tensors: A [m, n] = U [m, k] · diag(S [k]) · Vh [k, n], k = min(m, n). */
export interface SvdResult {
  U: Tensor;
  S: Tensor;
  Vh: Tensor;
}

const MAX_SWEEPS = 80;

function dot(x: Float64Array, y: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  return s;
}

/**
 * Make `v` orthogonal to the (orthonormal) vectors in `basis` by two passes of modified Gram–Schmidt
 * ("twice is enough") and return its remaining norm; `v` is changed in place, not normalised.
 */
function orthogonalise(v: Float64Array, basis: readonly Float64Array[]): number {
  for (let pass = 0; pass < 2; pass++) {
    for (const b of basis) {
      const c = dot(v, b);
      if (c !== 0) for (let i = 0; i < v.length; i++) v[i]! -= c * b[i]!;
    }
  }
  return Math.sqrt(dot(v, v));
}

/**
 * A unit vector of length `dim` orthogonal to the orthonormal `basis` (basis.length < dim): the standard basis
 * vector e_i with the largest part left after projecting the basis out (1 − Σ_b b_i², at least (dim − |basis|)/dim
 * for the best i, so the choice is well conditioned), orthogonalised and normalised. O(dim·|basis|).
 */
export function orthonormalComplementVector(basis: readonly Float64Array[], dim: number): Float64Array {
  if (basis.length >= dim)
    throw new Error(`no unit vector of length ${dim} is orthogonal to ${basis.length} orthonormal vectors`);
  const left = new Float64Array(dim).fill(1);
  for (const b of basis) for (let i = 0; i < dim; i++) left[i]! -= b[i]! * b[i]!;
  let best = 0;
  for (let i = 1; i < dim; i++) if (left[i]! > left[best]!) best = i;
  const v = new Float64Array(dim);
  v[best] = 1;
  const norm = orthogonalise(v, basis);
  for (let i = 0; i < dim; i++) v[i]! /= norm;
  return v;
}

/**
 * One-sided (Hestenes) Jacobi on p columns of length q (p ≤ q), changed in place: rotate pairs of columns until
 * all are mutually orthogonal, accumulating the rotations in V (p×p). Returns the columns' norms (σ), the
 * normalised columns (U, completed to an orthonormal set where σ = 0) and V's columns, sorted by σ descending.
 */
function jacobi(
  cols: Float64Array[],
  q: number,
): { sigma: Float64Array; ucols: Float64Array[]; vcols: Float64Array[] } {
  const p = cols.length;
  const vcols = Array.from({ length: p }, (_, j) => {
    const v = new Float64Array(p);
    v[j] = 1;
    return v;
  });
  // Columns count as orthogonal when |g_i·g_j| ≤ tol·‖g_i‖‖g_j‖.
  const tol = Math.max(q, 1) * Number.EPSILON;
  let converged = p < 2;
  for (let sweep = 0; sweep < MAX_SWEEPS && !converged; sweep++) {
    converged = true;
    for (let i = 0; i < p - 1; i++) {
      const gi = cols[i]!,
        vi = vcols[i]!;
      for (let j = i + 1; j < p; j++) {
        const gj = cols[j]!,
          vj = vcols[j]!;
        let alpha = 0,
          beta = 0,
          gamma = 0;
        for (let t = 0; t < q; t++) {
          const x = gi[t]!,
            y = gj[t]!;
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= tol * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        converged = false;
        // Rutishauser's rotation: the smaller root t of t² + 2ζt − 1 = 0 zeroes the pair's inner product.
        const zeta = (beta - alpha) / (2 * gamma);
        const t =
          Math.abs(zeta) > 1e150
            ? 1 / (2 * zeta)
            : (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t),
          s = c * t;
        for (let r = 0; r < q; r++) {
          const x = gi[r]!,
            y = gj[r]!;
          gi[r] = c * x - s * y;
          gj[r] = s * x + c * y;
        }
        for (let r = 0; r < p; r++) {
          const x = vi[r]!,
            y = vj[r]!;
          vi[r] = c * x - s * y;
          vj[r] = s * x + c * y;
        }
      }
    }
  }
  if (!converged)
    throw new Error(
      `svd: one-sided Jacobi did not converge in ${MAX_SWEEPS} sweeps (non-finite values in the matrix?)`,
    );
  const norms = cols.map((g) => Math.sqrt(dot(g, g)));
  const order = norms.map((_, i) => i).sort((a, b) => norms[b]! - norms[a]! || a - b);
  const sigma = Float64Array.from(order, (i) => norms[i]!);
  // Columns are orthogonal after convergence; normalise them, re-orthogonalising against the larger ones anyway,
  // and replace the columns of σ = 0 (or lost to underflow) by an orthonormal completion.
  const ucols: (Float64Array | null)[] = [];
  const kept: Float64Array[] = [];
  for (let r = 0; r < p; r++) {
    const sv = sigma[r]!;
    const u = Float64Array.from(cols[order[r]!]!, (x) => (sv > 0 ? x / sv : 0));
    const left = sv > 0 ? orthogonalise(u, kept) : 0;
    if (!(left > 0.5)) {
      ucols.push(null);
      continue;
    }
    for (let t = 0; t < q; t++) u[t]! /= left;
    ucols.push(u);
    kept.push(u);
  }
  for (let r = 0; r < p; r++) {
    if (ucols[r]) continue;
    const u = orthonormalComplementVector(kept, q);
    ucols[r] = u;
    kept.push(u);
  }
  return { sigma, ucols: ucols as Float64Array[], vcols: order.map((i) => vcols[i]!) };
}

/**
 * The thin SVD of a row-major m×n matrix (values read as Float64): A = U·diag(S)·Vh with k = min(m, n),
 * S descending. See the file comment for cost and accuracy.
 */
export function svdF64(a: ArrayLike<number>, m: number, n: number): SvdF64 {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 0 || n < 0) throw new Error(`svd: bad matrix size ${m}×${n}`);
  if (a.length !== m * n) throw new Error(`svd: ${a.length} values do not make a ${m}×${n} matrix`);
  for (let i = 0; i < a.length; i++)
    if (!Number.isFinite(a[i]!))
      throw new Error(`svd: the matrix has a non-finite value (${a[i]}) at [${Math.floor(i / n)}, ${i % n}]`);
  const k = Math.min(m, n);
  const u = new Float64Array(m * k),
    s = new Float64Array(k),
    vh = new Float64Array(k * n);
  if (k === 0) return { m, n, k, u, s, vh };
  if (m >= n) {
    // Columns of A (n of length m): A·V = U·Σ.
    const cols = Array.from({ length: n }, (_, j) => Float64Array.from({ length: m }, (_, i) => a[i * n + j]!));
    const { sigma, ucols, vcols } = jacobi(cols, m);
    for (let r = 0; r < k; r++) {
      s[r] = sigma[r]!;
      const uc = ucols[r]!,
        vc = vcols[r]!;
      for (let i = 0; i < m; i++) u[i * k + r] = uc[i]!;
      for (let j = 0; j < n; j++) vh[r * n + j] = vc[j]!;
    }
  } else {
    // Rows of A are the columns of Aᵀ (m of length n): Aᵀ = U'·Σ·V'ᵀ, so A = V'·Σ·U'ᵀ.
    const cols = Array.from({ length: m }, (_, i) => Float64Array.from({ length: n }, (_, j) => a[i * n + j]!));
    const { sigma, ucols, vcols } = jacobi(cols, n);
    for (let r = 0; r < k; r++) {
      s[r] = sigma[r]!;
      const uc = ucols[r]!,
        vc = vcols[r]!;
      for (let i = 0; i < m; i++) u[i * k + r] = vc[i]!;
      for (let j = 0; j < n; j++) vh[r * n + j] = uc[j]!;
    }
  }
  return { m, n, k, u, s, vh };
}

/**
 * Householder QR of a row-major n×r matrix X with n ≥ r: X = Q·R, Q n×r with orthonormal columns (also when X
 * is rank-deficient), R r×r upper triangular. Both row-major.
 */
export function qrF64(x: ArrayLike<number>, n: number, r: number): { q: Float64Array; r: Float64Array } {
  if (n < r) throw new Error(`qr: needs at least as many rows as columns, got ${n}×${r}`);
  return qrLeadingF64(x, n, r, r);
}

/**
 * The first k columns of Q and first k rows of R of the Householder QR of a row-major m×n matrix X
 * (k ≤ min(m, n)): torch.linalg.qr(X)'s Q[:, :k] (m×k) and R[:k] (k×n), with LAPACK's sign convention
 * (each reflector sends its column to −sign(x_jj)·‖x‖). Both row-major.
 */
export function qrLeadingF64(
  x: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
): { q: Float64Array; r: Float64Array } {
  if (!(k <= Math.min(m, n))) throw new Error(`qr: cannot take ${k} leading columns of a ${m}×${n} matrix`);
  if (x.length !== m * n) throw new Error(`qr: ${x.length} values do not make a ${m}×${n} matrix`);
  const cols = Array.from({ length: n }, (_, j) => Float64Array.from({ length: m }, (_, i) => x[i * n + j]!));
  const reflectors: (Float64Array | null)[] = [];
  const R = new Float64Array(k * n);
  for (let j = 0; j < k; j++) {
    const cj = cols[j]!;
    let norm = 0;
    for (let i = j; i < m; i++) norm += cj[i]! * cj[i]!;
    norm = Math.sqrt(norm);
    let v: Float64Array | null = null;
    if (norm > 0) {
      const alpha = cj[j]! >= 0 ? -norm : norm;
      v = new Float64Array(m - j);
      for (let i = j; i < m; i++) v[i - j] = cj[i]!;
      v[0]! -= alpha;
      const vv = dot(v, v);
      // H = I − 2vvᵀ/(vᵀv) on rows j.. of columns j..
      for (let c = j; c < n; c++) {
        const col = cols[c]!;
        let d = 0;
        for (let i = j; i < m; i++) d += v[i - j]! * col[i]!;
        const f = (2 * d) / vv;
        for (let i = j; i < m; i++) col[i]! -= f * v[i - j]!;
      }
    }
    reflectors.push(v);
    for (let c = j; c < n; c++) R[j * n + c] = cols[c]![j]!;
  }
  // Q = H_0·H_1·…·H_{k−1} applied to the first k columns of the identity.
  const q = new Float64Array(m * k);
  for (let c = 0; c < k; c++) {
    const e = new Float64Array(m);
    e[c] = 1;
    for (let j = k - 1; j >= 0; j--) {
      const v = reflectors[j];
      if (!v) continue;
      let d = 0,
        vv = 0;
      for (let i = j; i < m; i++) {
        d += v[i - j]! * e[i]!;
        vv += v[i - j]! * v[i - j]!;
      }
      const f = (2 * d) / vv;
      for (let i = j; i < m; i++) e[i]! -= f * v[i - j]!;
    }
    for (let i = 0; i < m; i++) q[i * k + c] = e[i]!;
  }
  return { q, r: R };
}

/** Row-major (m×p)·(p×n), with either operand read transposed from its stored layout. */
function matmulF64(
  a: Float64Array,
  aT: boolean,
  b: Float64Array,
  bT: boolean,
  m: number,
  p: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < p; l++) {
      const ail = aT ? a[l * m + i]! : a[i * p + l]!;
      if (ail === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j]! += ail * (bT ? b[j * p + l]! : b[l * n + j]!);
    }
  }
  return out;
}

/**
 * torch.svd_lowrank(A, q, niter) (Halko et al.'s randomised range finder with `niter` subspace iterations, no
 * oversampling) for a row-major m×n matrix: A ≈ U (m×q) · diag(S) · Vᵀ, V n×q. The Gaussian start matrix comes
 * from `randn(rows, cols)` (torch draws it from its own generator, so the factors match torch's only in what they
 * span once converged). Like torch, the basis is built for Aᵀ when m < n or n > q.
 */
export function svdLowRankF64(
  a: ArrayLike<number>,
  m: number,
  n: number,
  q: number,
  niter: number,
  randn: (rows: number, cols: number) => Float64Array,
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  if (!(Number.isInteger(q) && q > 0 && q <= Math.min(m, n)))
    throw new Error(`svd_lowrank: q must be in [1, ${Math.min(m, n)}] for a ${m}×${n} matrix, got ${q}`);
  const A = Float64Array.from(a);
  const transposed = m < n || n > q;
  // The basis is found for M = Aᵀ (rows = n) or M = A (rows = m).
  const [rows, cols] = transposed ? [n, m] : [m, n];
  const mul = (left: boolean, x: Float64Array, width: number) =>
    // M·x (left) or Mᵀ·x, with M = Aᵀ or A read from A's storage.
    left
      ? matmulF64(A, transposed, x, false, rows, cols, width)
      : matmulF64(A, !transposed, x, false, cols, rows, width);
  let Q = qrF64(mul(true, randn(cols, q), q), rows, q).q;
  for (let i = 0; i < niter; i++) {
    Q = qrF64(mul(false, Q, q), cols, q).q;
    Q = qrF64(mul(true, Q, q), rows, q).q;
  }
  // Bt = Mᵀ·Q (cols×q) = A·Q or Aᵀ·Q; Bt = U'·S·W', so Mᵀ ≈ U'·S·(Q·W')ᵀ.
  const bt = mul(false, Q, q);
  const inner = svdF64(bt, cols, q);
  const qw = matmulF64(Q, false, inner.vh, true, rows, q, q);
  return transposed ? { u: inner.u, s: inner.s, v: qw } : { u: qw, s: inner.s, v: inner.u };
}

/**
 * The thin SVD of the product of row-major B (m×r) and A (r×n) without forming it when r < min(m, n):
 * Aᵀ = Q·R (Householder), C = B·Rᵀ (m×r), C = U·Σ·Wᵀ (Jacobi), so B·A = U·Σ·(Q·W)ᵀ. Returns k = min(m, n, r)
 * singular triplets (the others are 0). When r ≥ min(m, n) the product is formed and decomposed directly.
 */
export function svdOfProduct(b: ArrayLike<number>, a: ArrayLike<number>, m: number, r: number, n: number): SvdF64 {
  if (b.length !== m * r) throw new Error(`svdOfProduct: B has ${b.length} values, expected ${m}×${r}`);
  if (a.length !== r * n) throw new Error(`svdOfProduct: A has ${a.length} values, expected ${r}×${n}`);
  if (r >= Math.min(m, n)) {
    const prod = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let l = 0; l < r; l++) {
        const bil = b[i * r + l]!;
        if (bil === 0) continue;
        for (let j = 0; j < n; j++) prod[i * n + j]! += bil * a[l * n + j]!;
      }
    }
    return svdF64(prod, m, n);
  }
  const at = new Float64Array(n * r);
  for (let l = 0; l < r; l++) for (let j = 0; j < n; j++) at[j * r + l] = a[l * n + j]!;
  const { q, r: R } = qrF64(at, n, r);
  const c = new Float64Array(m * r);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < r; j++) {
      let sum = 0;
      for (let l = j; l < r; l++) sum += b[i * r + l]! * R[j * r + l]!; // (Rᵀ)[l][j] = R[j][l], zero for l < j
      c[i * r + j] = sum;
    }
  }
  const inner = svdF64(c, m, r); // k = r: U m×r, vh = Wᵀ r×r
  const vh = new Float64Array(r * n);
  for (let t = 0; t < r; t++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let l = 0; l < r; l++) sum += inner.vh[t * r + l]! * q[j * r + l]!;
      vh[t * n + j] = sum;
    }
  }
  return { m, n, k: r, u: inner.u, s: inner.s, vh };
}

/**
 * torch.quantile(values, q) with its default linear interpolation: the value at position q·(N − 1) of the
 * sorted values.
 */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new Error(`quantile: q must be in [0, 1], got ${q}`);
  if (values.length === 0) throw new Error("quantile: no values");
  const sorted = Float64Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos),
    hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * The thin SVD of a 2-D float32 tensor: A [m, n] = U [m, k] · diag(S [k]) · Vh [k, n], k = min(m, n), S
 * descending — torch.linalg.svd(A, full_matrices=False). Computed in Float64 by one-sided Jacobi (see the file
 * comment for cost), returned as float32.
 */
export function svd(t: Tensor): SvdResult {
  if (t.rank !== 2) throw new Error(`svd needs a 2-D tensor, got shape ${fmtShape(t.shape)}`);
  if (t.dtype !== "float32") throw new Error(`svd needs a float32 tensor, got ${t.dtype}`);
  const [m, n] = t.shape as [number, number];
  const r = svdF64(t.dataSync(), m, n);
  return {
    U: tensor(Float32Array.from(r.u), [m, r.k]),
    S: tensor(Float32Array.from(r.s), [r.k]),
    Vh: tensor(Float32Array.from(r.vh), [r.k, n]),
  };
}

/** The inverse of an n×n Float64 matrix (row-major) by Gauss–Jordan elimination with partial pivoting. */
export function inverseF64(a: ArrayLike<number>, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r * n + col]!) > Math.abs(m[pivot * n + col]!)) pivot = r;
    const p = m[pivot * n + col]!;
    if (p === 0 || !Number.isFinite(p)) throw new RangeError("inverse: the matrix is singular");
    if (pivot !== col) {
      for (let c = 0; c < n; c++) {
        [m[col * n + c], m[pivot * n + c]] = [m[pivot * n + c]!, m[col * n + c]!];
        [inv[col * n + c], inv[pivot * n + c]] = [inv[pivot * n + c]!, inv[col * n + c]!];
      }
    }
    for (let c = 0; c < n; c++) {
      m[col * n + c] = m[col * n + c]! / p;
      inv[col * n + c] = inv[col * n + c]! / p;
    }
    for (let r = 0; r < n; r++) {
      const f = m[r * n + col]!;
      if (r === col || f === 0) continue;
      for (let c = 0; c < n; c++) {
        m[r * n + c] = m[r * n + c]! - f * m[col * n + c]!;
        inv[r * n + c] = inv[r * n + c]! - f * inv[col * n + c]!;
      }
    }
  }
  return inv;
}

/**
 * The inverse of each n×n matrix of a float32 tensor [..., n, n] (torch.linalg.inv), computed in Float64; differentiable:
 * d(A⁻¹) = −A⁻¹·dA·A⁻¹, so the input's gradient is −Yᵀ·dY·Yᵀ with Y = A⁻¹.
 */
export function inverse(t: Tensor): Tensor {
  const n = t.shape[t.rank - 1]!;
  if (t.rank < 2 || t.shape[t.rank - 2] !== n)
    throw new Error(`inverse needs square matrices [..., n, n], got shape ${fmtShape(t.shape)}`);
  const data = t.dataSync();
  const out = new Float32Array(data.length);
  for (let at = 0; at < data.length; at += n * n) out.set(inverseF64(data.subarray(at, at + n * n), n), at);
  const y = tensor(out, t.shape);
  return record("inverse", y, [t], (dy) => {
    const yt = transpose(y);
    return [mul(matmul(matmul(yt, dy), yt), -1)];
  });
}
