/** The Float64 SVD (one-sided Jacobi), the QR and low-rank-product SVD built on it, and torch's quantile. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { tensor } from "../src/tensor/index.js";
import {
  orthonormalComplementVector,
  qrF64,
  quantile,
  svd,
  svdF64,
  svdOfProduct,
  type SvdF64,
} from "../src/tensor/linalg.js";
import { rng } from "./helpers.js";

function randMatrix(m: number, n: number, seed: number): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: m * n }, () => 2 * r() - 1);
}

function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let l = 0; l < k; l++) for (let j = 0; j < n; j++) out[i * n + j]! += a[i * k + l]! * b[l * n + j]!;
  return out;
}

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

function maxAbsDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  assert.equal(x.length, y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

function reconstruct(r: SvdF64): Float64Array {
  const us = Float64Array.from(r.u, (x, idx) => x * r.s[idx % r.k]!);
  return matmul(us, r.vh, r.m, r.k, r.n);
}

/** ‖XᵀX − I‖_max for the columns of a row-major rows×cols matrix. */
function columnOrthonormalityError(x: Float64Array, rows: number, cols: number): number {
  let err = 0;
  for (let a = 0; a < cols; a++) {
    for (let b = 0; b < cols; b++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += x[i * cols + a]! * x[i * cols + b]!;
      err = Math.max(err, Math.abs(d - (a === b ? 1 : 0)));
    }
  }
  return err;
}

function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j]!;
  return out;
}

/** Everything a thin SVD promises, for a matrix A of size m×n. */
function checkSvd(a: Float64Array, m: number, n: number, r: SvdF64, tol = 1e-12): void {
  const k = Math.min(m, n);
  assert.deepEqual([r.m, r.n, r.k, r.u.length, r.s.length, r.vh.length], [m, n, k, m * k, k, k * n]);
  const scale = Math.max(1, maxAbs(a));
  assert.ok(
    maxAbsDiff(reconstruct(r), a) <= tol * scale * Math.max(m, n),
    `reconstruction error ${maxAbsDiff(reconstruct(r), a)}`,
  );
  assert.ok(columnOrthonormalityError(r.u, m, k) <= tol * 10, `UᵀU − I: ${columnOrthonormalityError(r.u, m, k)}`);
  assert.ok(
    columnOrthonormalityError(transpose(r.vh, k, n), n, k) <= tol * 10,
    `Vh·Vhᵀ − I: ${columnOrthonormalityError(transpose(r.vh, k, n), n, k)}`,
  );
  for (let i = 0; i < k; i++) {
    assert.ok(r.s[i]! >= 0, `S[${i}] = ${r.s[i]} < 0`);
    if (i > 0) assert.ok(r.s[i]! <= r.s[i - 1]!, `S not descending at ${i}: ${r.s[i - 1]} then ${r.s[i]}`);
  }
}

describe("svd (one-sided Jacobi)", () => {
  it("2×2 by hand: [[3, 0], [4, 5]] has σ = 3√5, √5, u = (1, 3)/√10, (3, −1)/√10, v = (1, 1)/√2, (1, −1)/√2", () => {
    const a = Float64Array.from([3, 0, 4, 5]);
    const r = svdF64(a, 2, 2);
    checkSvd(a, 2, 2, r);
    assert.ok(Math.abs(r.s[0]! - 3 * Math.sqrt(5)) < 1e-14 && Math.abs(r.s[1]! - Math.sqrt(5)) < 1e-14, `S = ${r.s}`);
    // Each singular pair up to a common sign.
    const expectU = [
      [1 / Math.sqrt(10), 3 / Math.sqrt(10)],
      [3 / Math.sqrt(10), -1 / Math.sqrt(10)],
    ];
    const expectV = [
      [Math.SQRT1_2, Math.SQRT1_2],
      [Math.SQRT1_2, -Math.SQRT1_2],
    ];
    for (let c = 0; c < 2; c++) {
      const u = [r.u[c]!, r.u[2 + c]!],
        v = [r.vh[2 * c]!, r.vh[2 * c + 1]!];
      const sign = Math.sign(u[0]! * expectU[c]![0]!);
      for (let i = 0; i < 2; i++) {
        assert.ok(Math.abs(u[i]! - sign * expectU[c]![i]!) < 1e-14, `U[:, ${c}] = ${u}`);
        assert.ok(Math.abs(v[i]! - sign * expectV[c]![i]!) < 1e-14, `Vh[${c}] = ${v}`);
      }
    }
  });

  it("a permuted diagonal with negative entries: σ are the sorted absolute values", () => {
    const a = Float64Array.from([0, -2, 0, 0, 0, 0.5, 7, 0, 0]);
    const r = svdF64(a, 3, 3);
    checkSvd(a, 3, 3, r);
    assert.ok(maxAbsDiff(r.s, [7, 2, 0.5]) < 1e-15, `S = ${r.s}`);
  });

  for (const [m, n] of [
    [20, 20],
    [37, 11],
    [11, 37],
    [1, 9],
    [9, 1],
    [64, 32],
    [32, 64],
  ] as const) {
    it(`random ${m}×${n}: A = U·diag(S)·Vh, orthonormal U and Vh, S descending`, () => {
      const a = randMatrix(m, n, 1000 + m * 100 + n);
      checkSvd(a, m, n, svdF64(a, m, n));
    });
  }

  it("singular values agree with the eigenvalues of AᵀA (power iteration on the largest)", () => {
    const m = 15,
      n = 8;
    const a = randMatrix(m, n, 77);
    const r = svdF64(a, m, n);
    const ata = matmul(transpose(a, m, n), a, n, m, n);
    let v: Float64Array = new Float64Array(n).fill(1);
    let lambda = 0;
    for (let it = 0; it < 2000; it++) {
      const w = matmul(ata, v, n, n, 1);
      lambda = Math.sqrt(w.reduce((s, x) => s + x * x, 0));
      v = w.map((x) => x / lambda);
    }
    assert.ok(Math.abs(Math.sqrt(lambda) - r.s[0]!) < 1e-10, `σ_max ${r.s[0]} vs √λ_max ${Math.sqrt(lambda)}`);
    // Σσ² = ‖A‖_F².
    const fro = a.reduce((s, x) => s + x * x, 0);
    assert.ok(Math.abs(r.s.reduce((s, x) => s + x * x, 0) - fro) < 1e-10 * fro);
  });

  it("rank-deficient (rank 3 of 20×15): trailing σ vanish, U and Vh are still orthonormal", () => {
    const b = randMatrix(20, 3, 5),
      c = randMatrix(3, 15, 6);
    const a = matmul(b, c, 20, 3, 15);
    const r = svdF64(a, 20, 15);
    checkSvd(a, 20, 15, r);
    assert.ok(r.s[2]! > 0.1, `σ_3 = ${r.s[2]}`);
    for (let i = 3; i < 15; i++) assert.ok(r.s[i]! < 1e-13 * r.s[0]!, `σ_${i + 1} = ${r.s[i]} should be ~0`);
  });

  it("exactly singular inputs: the zero matrix, a zero column, repeated singular values", () => {
    const zero = new Float64Array(6 * 4);
    const rz = svdF64(zero, 6, 4);
    checkSvd(zero, 6, 4, rz);
    assert.deepEqual(Array.from(rz.s), [0, 0, 0, 0]);

    const withZeroCol = randMatrix(5, 4, 9).map((x, i) => (i % 4 === 2 ? 0 : x));
    const r = svdF64(withZeroCol, 5, 4);
    checkSvd(withZeroCol, 5, 4, r);
    assert.equal(r.s[3], 0);

    // A scaled orthogonal matrix (a rotation): every σ equals the scale.
    const c = Math.cos(0.3),
      s = Math.sin(0.3);
    const rot = Float64Array.from([2 * c, -2 * s, 0, 2 * s, 2 * c, 0, 0, 0, 2]);
    const rr = svdF64(rot, 3, 3);
    checkSvd(rot, 3, 3, rr);
    assert.ok(maxAbsDiff(rr.s, [2, 2, 2]) < 1e-15);
  });

  it("badly scaled and ill-conditioned matrices keep small singular values accurate", () => {
    // diag(1, 1e-8, 1e-16) hidden behind two rotations: σ come back to high relative accuracy.
    const q1 = svdF64(randMatrix(3, 3, 21), 3, 3).u,
      q2 = svdF64(randMatrix(3, 3, 22), 3, 3).vh;
    const d = Float64Array.from([1, 0, 0, 0, 1e-8, 0, 0, 0, 1e-12]);
    const a = matmul(matmul(q1, d, 3, 3, 3), q2, 3, 3, 3);
    const r = svdF64(a, 3, 3);
    checkSvd(a, 3, 3, r);
    assert.ok(Math.abs(r.s[1]! / 1e-8 - 1) < 1e-6 && Math.abs(r.s[2]! / 1e-12 - 1) < 1e-3, `S = ${r.s}`);
  });

  it("empty matrices and invalid input", () => {
    const r = svdF64(new Float64Array(0), 0, 3);
    assert.deepEqual([r.k, r.u.length, r.s.length, r.vh.length], [0, 0, 0, 0]);
    assert.throws(() => svdF64([1, 2, 3], 2, 2), /3 values do not make a 2×2 matrix/);
    assert.throws(() => svdF64([1, NaN, 3, 4], 2, 2), /non-finite value \(NaN\) at \[0, 1\]/);
  });

  it("a 256×128 matrix is decomposed in a reasonable time", () => {
    const a = randMatrix(256, 128, 3);
    const t0 = performance.now();
    const r = svdF64(a, 256, 128);
    const ms = performance.now() - t0;
    checkSvd(a, 256, 128, r, 1e-11);
    assert.ok(ms < 20_000, `took ${ms.toFixed(0)} ms`);
  });
});

describe("svd on tensors", () => {
  it("returns float32 U [m, k], S [k], Vh [k, n] that reconstruct the input", () => {
    const m = 7,
      n = 5;
    const values = Float32Array.from(randMatrix(m, n, 42));
    const { U, S, Vh } = svd(tensor(values, [m, n]));
    assert.deepEqual([U.shape, S.shape, Vh.shape], [[m, 5], [5], [5, n]]);
    assert.deepEqual([U.dtype, S.dtype, Vh.dtype], ["float32", "float32", "float32"]);
    const r: SvdF64 = {
      m,
      n,
      k: 5,
      u: Float64Array.from(U.dataSync()),
      s: Float64Array.from(S.dataSync()),
      vh: Float64Array.from(Vh.dataSync()),
    };
    assert.ok(maxAbsDiff(reconstruct(r), values) < 1e-6);
    for (const t of [U, S, Vh]) t.dispose();
  });

  it("rejects tensors that are not 2-D float32", () => {
    assert.throws(() => svd(tensor([1, 2, 3])), /svd needs a 2-D tensor, got shape \[3\]/);
    assert.throws(() => svd(tensor(Int32Array.from([1, 2, 3, 4]), [2, 2])), /float32/);
  });
});

describe("qr and svdOfProduct", () => {
  it("Householder QR: Q orthonormal, R upper triangular, Q·R = X (also rank-deficient)", () => {
    for (const [n, r, seed] of [
      [12, 5, 1],
      [6, 6, 2],
      [9, 1, 3],
    ] as const) {
      const x = randMatrix(n, r, seed);
      if (seed === 1) for (let i = 0; i < n; i++) x[i * r + 3] = 2 * x[i * r + 1]!; // column 3 = 2 × column 1
      const { q, r: R } = qrF64(x, n, r);
      assert.ok(columnOrthonormalityError(q, n, r) < 1e-14);
      for (let i = 0; i < r; i++) for (let j = 0; j < i; j++) assert.equal(R[i * r + j], 0);
      assert.ok(maxAbsDiff(matmul(q, R, n, r, r), x) < 1e-14);
    }
  });

  it("the SVD of B·A without forming it matches the SVD of the formed product", () => {
    for (const [m, r, n] of [
      [40, 6, 30],
      [30, 6, 40],
      [8, 3, 50],
      [5, 8, 7],
      [6, 6, 6],
    ] as const) {
      const b = randMatrix(m, r, m + r),
        a = randMatrix(r, n, n + r);
      const prod = matmul(b, a, m, r, n);
      const low = svdOfProduct(b, a, m, r, n);
      const full = svdF64(prod, m, n);
      const k = Math.min(m, n, r);
      assert.equal(low.k, k);
      assert.ok(maxAbsDiff(low.s.subarray(0, k), full.s.subarray(0, k)) < 1e-12, `${m}×${r}×${n}: S differ`);
      assert.ok(maxAbsDiff(reconstruct(low), prod) < 1e-12, `${m}×${r}×${n}: B·A not reconstructed`);
      assert.ok(columnOrthonormalityError(low.u, m, low.k) < 1e-13);
      assert.ok(columnOrthonormalityError(transpose(low.vh, low.k, n), n, low.k) < 1e-13);
    }
  });

  it("a rank-deficient factorisation (B with a zero column) still gives orthonormal factors", () => {
    const m = 20,
      r = 4,
      n = 16;
    const b = randMatrix(m, r, 11).map((x, i) => (i % r === 1 ? 0 : x)),
      a = randMatrix(r, n, 12);
    const low = svdOfProduct(b, a, m, r, n);
    assert.ok(low.s[3]! < 1e-14 * low.s[0]!);
    assert.ok(maxAbsDiff(reconstruct(low), matmul(b, a, m, r, n)) < 1e-13);
    assert.ok(columnOrthonormalityError(low.u, m, r) < 1e-13);
    assert.ok(columnOrthonormalityError(transpose(low.vh, r, n), n, r) < 1e-13);
  });
});

describe("orthonormalComplementVector", () => {
  it("completes two orthonormal vectors of R^5 to an orthonormal basis, and refuses a sixth", () => {
    const u = svdF64(randMatrix(5, 2, 8), 5, 2).u; // 5×2, orthonormal columns
    const basis: Float64Array[] = [0, 1].map((c) => Float64Array.from({ length: 5 }, (_, i) => u[i * 2 + c]!));
    while (basis.length < 5) basis.push(orthonormalComplementVector(basis, 5));
    const flat = new Float64Array(25);
    for (const [j, b] of basis.entries()) {
      for (const [i, x] of b.entries()) flat[i * 5 + j] = x;
    }
    assert.ok(columnOrthonormalityError(flat, 5, 5) < 1e-14);
    assert.throws(() => orthonormalComplementVector(basis, 5), /no unit vector of length 5/);
  });
});

describe("quantile (torch.quantile, linear interpolation)", () => {
  it("matches torch on small inputs", () => {
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
    assert.equal(quantile([4, 1, 3, 2], 0), 1);
    assert.equal(quantile([4, 1, 3, 2], 1), 4);
    assert.ok(Math.abs(quantile([0, 10, 20, 30, 40], 0.3) - 12) < 1e-12);
    assert.equal(quantile([-3, 5, -1], 0.25), -2);
    assert.throws(() => quantile([1], 1.5), /q must be in \[0, 1\]/);
  });
});
