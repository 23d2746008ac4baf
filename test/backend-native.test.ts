/**
 * The native backend against the js reference, kernel by kernel and op by op, on seeded random inputs:
 * contiguous, broadcast (stride 0), transposed and offset views, odd sizes, and sizes large enough to take the
 * threaded paths.
 *
 * Tolerances. Copies, fills, index kernels, integer results, comparisons and the RNG's uniform/bernoulli
 * streams must match exactly. Float math gets |native − js| ≤ atol + 1e-5·|js|: float32 itself resolves 6e-8,
 * and the two backends legitimately differ by a few ulps where they round differently (float expf in
 * softmax/cross-entropy, libm vs V8 transcendentals, double sums added in another order, BLAS's float
 * accumulation with FMA vs the reference's double dot products) — 1e-5 is ~100 ulps, far above that yet far
 * below any real bug (a wrong element, stride or index is off by O(1)). Reductions are checked against the
 * reference's sums taken in double (see the reduce test), because its float32 accumulator drifts on long sums.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type {
  Backend,
  BinaryOp,
  GemmSpec,
  ReduceOp,
  Storage,
  UnaryGradOp,
  UnaryOp,
  View,
} from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import { nativeOrReason, rng } from "./helpers.js";

const { native, loadError } = nativeOrReason();
const js = new JsBackend();

/** A test that needs the addon: skipped with the reason when it is not built. */
function nativeTest(name: string, fn: (nb: Backend) => void): void {
  test(`native vs js: ${name}`, (t) => {
    if (!native) return t.skip(`native addon not built: ${loadError}`);
    fn(native);
  });
}

// ---- inputs --------------------------------------------------------------------------------------------------------

let seedCounter = 1;
/** n uniform values in [lo, hi), rounded to multiples of `quantum` when given (so comparisons and ties happen). */
function values(n: number, lo = -1, hi = 1, quantum = 0): Float32Array {
  const r = rng(seedCounter++);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = lo + (hi - lo) * r();
    out[i] = quantum ? Math.round(v / quantum) * quantum : v;
  }
  return out;
}
const f32 = (a: ArrayLike<number>): Storage => new CpuStorage("float32", Float32Array.from(a));
const i32 = (a: ArrayLike<number>): Storage => new CpuStorage("int32", Int32Array.from(a));
const randF32 = (n: number, lo = -1, hi = 1, q = 0): Storage => new CpuStorage("float32", values(n, lo, hi, q));

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
}
const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Ways of laying out a view of `shape` over a fresh random storage. */
type Layout = "contiguous" | "transposed" | "offset" | "broadcast";
function makeView(shape: readonly number[], layout: Layout, gen: (n: number) => Storage = (n) => randF32(n)): View {
  const nd = shape.length;
  if (layout === "contiguous" || nd === 0) {
    return { storage: gen(numel(shape)), shape, strides: contiguousStrides(shape), offset: 0 };
  }
  if (layout === "offset") {
    // a window inside a bigger row-major buffer: padded rows, non-zero offset
    const padded = [...shape];
    padded[nd - 1] = shape[nd - 1]! + 3;
    const strides = contiguousStrides(padded);
    return { storage: gen(numel(padded) + 5), shape, strides, offset: 5 };
  }
  if (layout === "transposed") {
    // the last two axes stored swapped
    const st = [...shape];
    if (nd >= 2) [st[nd - 2], st[nd - 1]] = [st[nd - 1]!, st[nd - 2]!];
    const cs = contiguousStrides(st);
    const strides = [...cs];
    if (nd >= 2) [strides[nd - 2], strides[nd - 1]] = [cs[nd - 1]!, cs[nd - 2]!];
    return { storage: gen(numel(shape)), shape, strides, offset: 0 };
  }
  // broadcast: the first axis (or every axis but the last, for 1-D, the only one) has stride 0
  const strides = contiguousStrides(shape);
  const inner = nd >= 2 ? numel(shape.slice(1)) : 1;
  strides[0] = 0;
  return { storage: gen(inner), shape, strides, offset: 0 };
}

// ---- comparison ----------------------------------------------------------------------------------------------------

/** |a − e| ≤ atol + rtol·|e| elementwise, NaN only where NaN, infinities equal; names the first bad index. */
function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  rtol = 1e-5,
  atol = 1e-6,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!,
      e = expected[i]!;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) && Number.isNaN(a)) continue;
    } else if (a === e || Math.abs(a - e) <= atol + rtol * Math.abs(e)) continue;
    assert.fail(`${what}[${i}]: native ${a} vs js ${e}`);
  }
}

function assertExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assertClose(actual, expected, what, 0, 0);
}

/**
 * Runs `kernel` on both backends with outputs initialised from `outs` (copied: a kernel that accumulates finds the
 * same starting values on both), then compares each output.
 */
function compare(
  nb: Backend,
  what: string,
  outs: Storage[],
  kernel: (b: Backend, outs: Storage[]) => void,
  rtol = 1e-5,
  atol = 1e-6,
): void {
  const run = (b: Backend) => {
    const o = outs.map((s) => new CpuStorage(s.dtype, s.data.slice()));
    kernel(b, o);
    return o;
  };
  const expected = run(js),
    actual = run(nb);
  actual.forEach((s, i) => {
    if (s.dtype === "int32" || (rtol === 0 && atol === 0)) assertExact(s.data, expected[i]!.data, `${what} out${i}`);
    else assertClose(s.data, expected[i]!.data, `${what} out${i}`, rtol, atol);
  });
}

/** An output storage pre-filled with NaN, so that an element a kernel forgets to write shows up. */
const outF32 = (n: number): Storage => new CpuStorage("float32", new Float32Array(n).fill(NaN));
const outI32 = (n: number): Storage => new CpuStorage("int32", new Int32Array(n).fill(-7));

const SHAPES: number[][] = [[], [1], [7], [33], [1000], [5, 7], [33, 35], [3, 4, 5], [200, 1001], [2, 3, 70000]];
const LAYOUTS: Layout[] = ["contiguous", "transposed", "offset", "broadcast"];

// ---- kernels -------------------------------------------------------------------------------------------------------

nativeTest("copy (every layout and dtype pair)", (nb) => {
  const special = [
    NaN,
    Infinity,
    -Infinity,
    0,
    -0,
    1.5,
    -1.5,
    -2.7,
    3e9,
    -3e9,
    2147483647,
    2147483648,
    -2147483649,
    1e20,
  ];
  for (const shape of SHAPES) {
    for (const layout of LAYOUTS) {
      const x = makeView(shape, layout, (n) => randF32(n, -1e4, 1e4));
      compare(nb, `copy f32 ${layout} [${shape}]`, [outF32(numel(shape))], (b, [o]) => b.copy(x, o!), 0, 0);
      compare(nb, `copy f32→i32 ${layout} [${shape}]`, [outI32(numel(shape))], (b, [o]) => b.copy(x, o!));
      const xi = makeView(shape, layout, (n) => i32(values(n, -3e9, 3e9)));
      compare(nb, `copy i32 ${layout} [${shape}]`, [outI32(numel(shape))], (b, [o]) => b.copy(xi, o!));
      compare(nb, `copy i32→f32 ${layout} [${shape}]`, [outF32(numel(shape))], (b, [o]) => b.copy(xi, o!), 0, 0);
    }
  }
  const sx: View = { storage: f32(special), shape: [special.length], strides: [1], offset: 0 };
  compare(nb, "copy f32→i32 special values", [outI32(special.length)], (b, [o]) => b.copy(sx, o!));
});

nativeTest("fill and arange (float32 and int32)", (nb) => {
  for (const n of [0, 1, 7, 1000, 300001]) {
    for (const v of [1 / 3, -2.5, 3.7, 2 ** 32 + 5, -(2 ** 31) - 1, NaN, Infinity]) {
      compare(nb, `fill f32 ${n} ${v}`, [outF32(n)], (b, [o]) => b.fill(o!, v), 0, 0);
      compare(nb, `fill i32 ${n} ${v}`, [outI32(n)], (b, [o]) => b.fill(o!, v));
    }
    for (const [start, step] of [
      [0, 1],
      [0.5, 0.1],
      [-3, 2],
      [7, -0.25],
      [2 ** 31 - 10, 3],
    ] as const) {
      compare(nb, `arange f32 ${n} ${start} ${step}`, [outF32(n)], (b, [o]) => b.arange(o!, start, step), 0, 0);
      compare(nb, `arange i32 ${n} ${start} ${step}`, [outI32(n)], (b, [o]) => b.arange(o!, start, step));
    }
  }
});

nativeTest("random: uniform and bernoulli bit-exact, normal to float rounding", (nb) => {
  const seeds = [0, 1, 42, 2 ** 31 + 7, -5, 2 ** 32 + 3];
  const counters = [0, 17, 2 ** 32 - 10, 2 ** 40 + 1];
  for (const n of [1, 7, 1000, 100003]) {
    for (const seed of seeds) {
      for (const counter of counters) {
        const what = `n=${n} seed=${seed} counter=${counter}`;
        compare(nb, `uniform ${what}`, [outF32(n)], (b, [o]) => b.random(o!, "uniform", -2, 3, seed, counter), 0, 0);
        compare(
          nb,
          `bernoulli ${what}`,
          [outF32(n)],
          (b, [o]) => b.random(o!, "bernoulli", 0.3, 2, seed, counter),
          0,
          0,
        );
        // Box–Muller in double through libm's log/cos vs V8's: at most an ulp of float apart.
        compare(nb, `normal ${what}`, [outF32(n)], (b, [o]) => b.random(o!, "normal", 1, 2, seed, counter), 2e-7, 1e-7);
      }
    }
  }
  compare(nb, "uniform into int32", [outI32(1000)], (b, [o]) => b.random(o!, "uniform", -100, 100, 9, 0));
});

const UNARY_OPS: UnaryOp[] = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "abs",
  "square",
  "reciprocal",
  "tanh",
  "sigmoid",
  "relu",
  "gelu",
  "gelu_tanh",
  "silu",
  "sin",
  "cos",
];
const UNARY_GRAD_OPS: UnaryGradOp[] = ["tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu"];
const BINARY_OPS: BinaryOp[] = ["add", "sub", "mul", "div", "pow", "max", "min", "eq", "ne", "lt", "le", "gt", "ge"];
const SPECIAL = [NaN, Infinity, -Infinity, 0, -0, 1, -1, 0.5, -2, 3, 1e-30, 80, -80, 1e30];

nativeTest("unary (every op, layout and size)", (nb) => {
  for (const op of UNARY_OPS) {
    for (const shape of SHAPES) {
      for (const layout of LAYOUTS) {
        // Mostly in [-4, 4]; log/sqrt/rsqrt see negatives too (NaN on both sides).
        const x = makeView(shape, layout, (n) => randF32(n, -4, 4));
        compare(nb, `unary ${op} ${layout} [${shape}]`, [outF32(numel(shape))], (b, [o]) => b.unary(op, x, o!));
      }
    }
    const sx: View = { storage: f32(SPECIAL), shape: [SPECIAL.length], strides: [1], offset: 0 };
    compare(nb, `unary ${op} special values`, [outF32(SPECIAL.length)], (b, [o]) => b.unary(op, sx, o!));
  }
});

nativeTest("unaryGrad (every op, mixed layouts)", (nb) => {
  for (const op of UNARY_GRAD_OPS) {
    for (const shape of SHAPES) {
      for (const [lx, ld] of [
        ["contiguous", "contiguous"],
        ["transposed", "offset"],
        ["broadcast", "contiguous"],
      ] as const) {
        const x = makeView(shape, lx, (n) => randF32(n, -5, 5)),
          dy = makeView(shape, ld);
        compare(nb, `unaryGrad ${op} ${lx}/${ld} [${shape}]`, [outF32(numel(shape))], (b, [o]) =>
          b.unaryGrad(op, x, dy, o!),
        );
      }
    }
  }
});

nativeTest("binary (every op; contiguous, scalar, row and column broadcasts, transposed)", (nb) => {
  for (const op of BINARY_OPS) {
    // Quantised values so that eq/ne/le/ge and max/min ties actually occur; pow gets positive bases mostly.
    const gen = (n: number) => randF32(n, op === "pow" ? -0.5 : -2, 2, 0.25);
    for (const shape of SHAPES) {
      const n = numel(shape),
        nd = shape.length;
      const cases: [string, View, View][] = [
        ["contiguous", makeView(shape, "contiguous", gen), makeView(shape, "contiguous", gen)],
        ["transposed/offset", makeView(shape, "transposed", gen), makeView(shape, "offset", gen)],
        ["broadcast/contiguous", makeView(shape, "broadcast", gen), makeView(shape, "contiguous", gen)],
        [
          "scalar b",
          makeView(shape, "contiguous", gen),
          { storage: gen(1), shape, strides: shape.map(() => 0), offset: 0 },
        ],
      ];
      if (nd >= 2) {
        // b broadcast along the last axis: one value per row
        const strides = contiguousStrides(shape.slice(0, nd - 1)).concat([0]);
        cases.push([
          "column b",
          makeView(shape, "offset", gen),
          { storage: gen(n / shape[nd - 1]!), shape, strides, offset: 0 },
        ]);
      }
      for (const [name, a, b2] of cases) {
        compare(nb, `binary ${op} ${name} [${shape}]`, [outF32(n)], (b, [o]) => b.binary(op, a, b2, o!));
      }
    }
    // Every pair of special values (NaN handling of max/min, JavaScript's pow special cases, ±0 and ∞).
    const k = SPECIAL.length;
    const a: View = { storage: f32(SPECIAL), shape: [k, k], strides: [1, 0], offset: 0 };
    const b2: View = { storage: f32(SPECIAL), shape: [k, k], strides: [0, 1], offset: 0 };
    compare(nb, `binary ${op} special values`, [outF32(k * k)], (b, [o]) => b.binary(op, a, b2, o!));
  }
});

nativeTest("where (float and int32 conditions, broadcasts)", (nb) => {
  for (const shape of SHAPES) {
    const n = numel(shape);
    const cond = makeView(shape, "transposed", (m) => randF32(m, -1, 1, 1));
    const condI = makeView(shape, "contiguous", (m) => i32(values(m, -1, 2, 1)));
    const a = makeView(shape, "contiguous"),
      b2 = makeView(shape, "broadcast");
    compare(nb, `where f32 [${shape}]`, [outF32(n)], (b, [o]) => b.where(cond, a, b2, o!), 0, 0);
    compare(nb, `where i32 [${shape}]`, [outF32(n)], (b, [o]) => b.where(condI, b2, a, o!), 0, 0);
  }
  const nanCond: View = { storage: f32([NaN, 0, -0, 1]), shape: [4], strides: [1], offset: 0 };
  const a: View = { storage: f32([1, 2, 3, 4]), shape: [4], strides: [1], offset: 0 };
  const b2: View = { storage: f32([5, 6, 7, 8]), shape: [4], strides: [1], offset: 0 };
  compare(nb, "where NaN/±0 conditions", [outF32(4)], (b, [o]) => b.where(nanCond, a, b2, o!), 0, 0);
});

nativeTest("reduce (sum/max/min over every axis subset, layouts, sizes)", (nb) => {
  const shapes: number[][] = [
    [1],
    [7],
    [1000],
    [100003],
    [33, 70],
    [3000, 300],
    [300, 3000],
    [4, 5, 6, 7],
    [2, 1, 3],
    [],
  ];
  for (const op of ["sum", "max", "min"] as ReduceOp[]) {
    for (const shape of shapes) {
      const nd = shape.length;
      for (let mask = 0; mask < 1 << nd; mask++) {
        const keep = shape.map((_, d) => ((mask >> d) & 1) === 1);
        const outShape = shape.map((s, d) => (keep[d] ? s : 1));
        const reduced = numel(shape) / numel(outShape);
        for (const layout of LAYOUTS) {
          const x = makeView(shape, layout, (n) => randF32(n, -1, 1, op === "sum" ? 0 : 1 / 64));
          const what = `reduce ${op} keep=[${keep}] ${layout} [${shape}] (${reduced} terms)`;
          if (op !== "sum") {
            compare(nb, what, [outF32(numel(outShape))], (b, [o]) => b.reduce(op, x, keep, o!), 0, 0);
            continue;
          }
          // The reference adds into its float32 output, whose rounding error grows like n²·ε for long sums (0.1%
          // for 10⁵ equal terms); the native kernel adds in double. So the expected sums come from the reference
          // run on a Float64Array output: its own algorithm, without the float32 accumulator.
          const exact = new CpuStorage("float32", new Float64Array(numel(outShape)) as unknown as Float32Array);
          js.reduce(op, x, keep, exact);
          const got = outF32(numel(outShape));
          nb.reduce(op, x, keep, got);
          assertClose(got.data, Float32Array.from(exact.data), what);
        }
      }
    }
  }
  // NaN propagation and ±0 ties of max/min.
  const sx: View = {
    storage: f32([1, NaN, 3, -0, 0, 2, 0, -0, -1, -Infinity, -Infinity, -Infinity]),
    shape: [4, 3],
    strides: [3, 1],
    offset: 0,
  };
  for (const op of ["max", "min"] as ReduceOp[]) {
    for (const keep of [
      [true, false],
      [false, true],
    ] as const) {
      compare(
        nb,
        `reduce ${op} specials keep=[${keep}]`,
        [outF32(keep[0] ? 4 : 3)],
        (b, [o]) => b.reduce(op, sx, keep, o!),
        0,
        0,
      );
    }
  }
});

nativeTest("argmax (ties pick the first, inner axes, sizes)", (nb) => {
  for (const [outer, n, inner] of [
    [1, 1, 1],
    [1, 1000, 1],
    [7, 33, 5],
    [3, 10, 1000],
    [2000, 50, 1],
    [1, 0, 3],
  ] as const) {
    const x = randF32(outer * n * inner, -1, 1, 0.125);
    compare(nb, `argmax [${outer}, ${n}, ${inner}]`, [outI32(outer * inner)], (b, [o]) =>
      b.argmax(x, outer, n, inner, o!),
    );
  }
  const x = f32([NaN, 1, -Infinity, -Infinity, NaN, NaN]);
  compare(nb, "argmax NaN/-∞ rows", [outI32(3)], (b, [o]) => b.argmax(x, 3, 2, 1, o!));
});

nativeTest("gemm (transposes, padded lda/ldb, offsets, batch broadcasting, accumulate)", (nb) => {
  const sizes: [number, number, number][] = [
    [1, 1, 1],
    [1, 7, 33],
    [7, 1, 5],
    [33, 65, 7],
    [64, 48, 100],
    [130, 257, 300],
  ];
  for (const [m, n, k] of sizes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const pad of [0, 3]) {
          for (const accumulate of [false, true]) {
            const lda = (transA ? m : k) + pad,
              ldb = (transB ? k : n) + pad;
            const aRows = transA ? k : m,
              bRows = transB ? n : k;
            const spec = (out: Storage): GemmSpec => ({
              a: A,
              aOffset: 2,
              transA,
              lda,
              aBatchStrides: [],
              b: B,
              bOffset: 1,
              transB,
              ldb,
              bBatchStrides: [],
              batchShape: [],
              m,
              n,
              k,
              out,
              accumulate,
            });
            const A = randF32(aRows * lda + 2),
              B = randF32(bRows * ldb + 1);
            const init = accumulate ? randF32(m * n) : outF32(m * n);
            compare(
              nb,
              `gemm ${m}x${n}x${k} tA=${transA} tB=${transB} pad=${pad} acc=${accumulate}`,
              [init],
              (b, [o]) => b.gemm(spec(o!)),
              1e-5,
              1e-6 * k,
            );
          }
        }
      }
    }
  }
  // Batched, A broadcast over the second batch axis and B over the first: many small items (the path that spreads
  // items over threads) and a few big ones (one after another, BLAS threading each).
  for (const [m, n, k, batch] of [
    [8, 16, 12, [2, 3]],
    [32, 32, 64, [5, 12]],
    [200, 150, 180, [2, 2]],
    [260, 270, 280, [1, 3]],
  ] as const) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const mat = m * k,
          matB = k * n;
        const A = randF32(batch[0] * mat + 3),
          B = randF32(batch[1] * matB);
        const spec = (out: Storage, accumulate: boolean): GemmSpec => ({
          a: A,
          aOffset: 3,
          transA,
          lda: transA ? m : k,
          aBatchStrides: [mat, 0],
          b: B,
          bOffset: 0,
          transB,
          ldb: transB ? k : n,
          bBatchStrides: [0, matB],
          batchShape: batch,
          m,
          n,
          k,
          out,
          accumulate,
        });
        const total = numel(batch) * m * n;
        compare(
          nb,
          `gemm batched ${m}x${n}x${k} [${batch}] tA=${transA} tB=${transB}`,
          [outF32(total)],
          (b, [o]) => b.gemm(spec(o!, false)),
          1e-5,
          1e-6 * k,
        );
        compare(
          nb,
          `gemm batched accumulate ${m}x${n}x${k} [${batch}]`,
          [randF32(total)],
          (b, [o]) => b.gemm(spec(o!, true)),
          1e-5,
          1e-6 * k,
        );
      }
    }
  }
  // Overlapping rows (lda = 0: one row of A broadcast to all m rows) and an empty sum (k = 0).
  const A = randF32(20),
    B = randF32(20 * 9);
  const bcast = (out: Storage): GemmSpec => ({
    a: A,
    aOffset: 0,
    transA: false,
    lda: 0,
    aBatchStrides: [],
    b: B,
    bOffset: 0,
    transB: false,
    ldb: 9,
    bBatchStrides: [],
    batchShape: [],
    m: 6,
    n: 9,
    k: 20,
    out,
    accumulate: false,
  });
  compare(nb, "gemm lda=0", [outF32(54)], (b, [o]) => b.gemm(bcast(o!)), 1e-5, 2e-5);
  const empty = (out: Storage, accumulate: boolean): GemmSpec => ({ ...bcast(out), k: 0, lda: 1, accumulate });
  compare(nb, "gemm k=0", [outF32(54)], (b, [o]) => b.gemm(empty(o!, false)), 0, 0);
  compare(nb, "gemm k=0 accumulate", [randF32(54)], (b, [o]) => b.gemm(empty(o!, true)), 0, 0);
});

nativeTest("gemm alpha, bias, strided outputs, and skinny products cut over threads", (nb) => {
  // Skinny and small shapes (LoRA factors, decoding rows) take the path that cuts one product into pieces.
  const shapes: [number, number, number][] = [
    [512, 8, 768],
    [512, 2304, 8],
    [8, 768, 512],
    [4, 3072, 768],
    [1, 2000, 300],
    [300, 1, 64],
    [37, 50, 3],
  ];
  for (const [m, n, k] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const A = randF32(m * k + 5),
          B = randF32(k * n + 2),
          bias = randF32(n + 4);
        for (const [alpha, withBias, accumulate] of [
          [1, false, false],
          [0.25, true, false],
          [-3, true, true],
          [2, false, true],
        ] as const) {
          const spec = (out: Storage): GemmSpec => ({
            a: A,
            aOffset: 5,
            transA,
            lda: transA ? m : k,
            aBatchStrides: [],
            b: B,
            bOffset: 2,
            transB,
            ldb: transB ? k : n,
            bBatchStrides: [],
            batchShape: [],
            m,
            n,
            k,
            out,
            accumulate,
            alpha,
            bias: withBias ? bias : null,
            biasOffset: 4,
          });
          compare(
            nb,
            `gemm ${m}x${n}x${k} tA=${transA} tB=${transB} alpha=${alpha} bias=${withBias} acc=${accumulate}`,
            [accumulate ? randF32(m * n) : outF32(m * n)],
            (b, [o]) => b.gemm(spec(o!)),
            1e-5,
            2e-6 * k * Math.abs(alpha),
          );
        }
      }
    }
  }
  // Output written with a row stride and permuted batch strides into a bigger buffer ([B, T, H, D] from [B, H] items
  // of T×D, as attention writes merged heads); elements outside the items stay untouched.
  for (const [m, n, k] of [
    [16, 8, 12],
    [128, 64, 128],
    [1, 64, 20],
  ] as const) {
    const [B0, H] = [2, 3];
    const A = randF32(B0 * H * m * k),
      Bm = randF32(B0 * H * k * n),
      bias = randF32(n);
    const total = B0 * m * H * n + 7;
    const spec = (out: Storage, accumulate: boolean): GemmSpec => ({
      a: A,
      aOffset: 0,
      transA: false,
      lda: k,
      aBatchStrides: [H * m * k, m * k],
      b: Bm,
      bOffset: 0,
      transB: true,
      ldb: k,
      bBatchStrides: [H * k * n, k * n],
      batchShape: [B0, H],
      m,
      n,
      k,
      out,
      accumulate,
      alpha: 0.5,
      bias,
      outOffset: 7,
      ldc: H * n,
      outBatchStrides: [m * H * n, n],
    });
    compare(
      nb,
      `gemm strided out ${m}x${n}x${k}`,
      [randF32(total)],
      (b, [o]) => b.gemm(spec(o!, false)),
      1e-5,
      1e-6 * k,
    );
    compare(
      nb,
      `gemm strided out accumulate ${m}x${n}x${k}`,
      [randF32(total)],
      (b, [o]) => b.gemm(spec(o!, true)),
      1e-5,
      1e-6 * k,
    );
  }
  // k = 0 with a bias: the bias alone (or added).
  const bias = randF32(9);
  const empty = (out: Storage, accumulate: boolean): GemmSpec => ({
    a: randF32(1),
    aOffset: 0,
    transA: false,
    lda: 1,
    aBatchStrides: [],
    b: randF32(9),
    bOffset: 0,
    transB: false,
    ldb: 9,
    bBatchStrides: [],
    batchShape: [],
    m: 6,
    n: 9,
    k: 0,
    out,
    accumulate,
    bias,
  });
  compare(nb, "gemm k=0 bias", [outF32(54)], (b, [o]) => b.gemm(empty(o!, false)), 0, 0);
  compare(nb, "gemm k=0 bias accumulate", [randF32(54)], (b, [o]) => b.gemm(empty(o!, true)), 0, 0);
  assert.throws(() => nb.gemm({ ...empty(outF32(54), false), outOffset: 1 }), RangeError);
});

nativeTest("assign into strided slices (copy and accumulate, float32 and int32), exact", (nb) => {
  for (const shape of [[7], [5, 7], [3, 4, 5], [2, 3, 70000]]) {
    for (const layout of ["contiguous", "transposed", "offset", "broadcast"] as Layout[]) {
      const src = makeView(shape, layout, (n) => randF32(n, -1, 1, 1 / 1024));
      // dst: the same shape inside a bigger buffer (padded last axis, offset 3), every element distinct.
      const padded = [...shape];
      padded[padded.length - 1] = shape[shape.length - 1]! + 2;
      const size = numel(padded) + 3;
      const dst = (st: Storage): View => ({ storage: st, shape, strides: contiguousStrides(padded), offset: 3 });
      const init = randF32(size, -1, 1, 1 / 1024);
      for (const accumulate of [false, true]) {
        compare(
          nb,
          `assign ${layout} [${shape}] acc=${accumulate}`,
          [init],
          (b, [o]) => b.assign(src, dst(o!), accumulate),
          0,
          0,
        );
      }
      const srcI: View = { ...src, storage: i32(Array.from(src.storage.data, (v) => v * 1024)) };
      compare(nb, `assign int32 ${layout} [${shape}]`, [i32(new Array(size).fill(-5))], (b, [o]) =>
        b.assign(srcI, dst(o!), false),
      );
    }
  }
  // Transposed destination (a permuted dense layout).
  const src = makeView([6, 9], "contiguous");
  const dstT = (st: Storage): View => ({ storage: st, shape: [6, 9], strides: [1, 6], offset: 0 });
  compare(nb, "assign into a transposed dst", [outF32(54)], (b, [o]) => b.assign(src, dstT(o!), false), 0, 0);
  assert.throws(
    () =>
      nb.assign(
        makeView([3, 4], "contiguous"),
        { storage: outF32(4), shape: [3, 4], strides: [0, 1], offset: 0 },
        false,
      ),
    RangeError,
  );
});

nativeTest(
  "dropout: bit-exact, equal to x · bernoulli mask, the same mask again on the gradient, across 2^32",
  (nb) => {
    for (const shape of [[7], [33, 35], [2, 3, 70000]]) {
      for (const layout of ["contiguous", "transposed", "offset"] as Layout[]) {
        for (const [p, counter] of [
          [0.1, 0],
          [0.5, 12345],
          [0.9, 4294967296 - 1000],
        ] as const) {
          const x = makeView(shape, layout);
          const n = numel(shape);
          compare(
            nb,
            `dropout p=${p} ${layout} [${shape}] counter=${counter}`,
            [outF32(n)],
            (b, [o]) => b.dropout(x, 1 - p, 1 / (1 - p), 77, counter, o!),
            0,
            0,
          );
          // The same values as multiplying by the bernoulli mask of `random`.
          const mask = outF32(n),
            want = outF32(n),
            got = outF32(n);
          js.random(mask, "bernoulli", 1 - p, 1 / (1 - p), 77, counter);
          js.binary("mul", x, { storage: mask, shape, strides: contiguousStrides(shape), offset: 0 }, want);
          nb.dropout(x, 1 - p, 1 / (1 - p), 77, counter, got);
          assertExact(got.data, want.data, `dropout = x·mask p=${p} ${layout} [${shape}]`);
        }
      }
    }
  },
);

nativeTest("maskedSoftmax: additive broadcast masks (causal, padding), no mask, in place", (nb) => {
  for (const [B, H, Tq, Tk] of [
    [1, 1, 1, 1],
    [2, 3, 5, 7],
    [4, 12, 128, 128],
    [1, 14, 1, 40],
  ] as const) {
    const shape = [B, H, Tq, Tk],
      n = numel(shape);
    const x = randF32(n, -8, 8);
    // A mask [B, 1, Tq, Tk] broadcast over heads, with the most negative float (as attention masks use).
    const maskValues = new Float32Array(B * Tq * Tk);
    for (let b = 0; b < B; b++)
      for (let i = 0; i < Tq; i++)
        for (let j = 0; j < Tk; j++) {
          maskValues[(b * Tq + i) * Tk + j] =
            j > i + (Tk - Tq) || (b === 1 && j === 0 && Tk > 1) ? -3.4028234663852886e38 : 0;
        }
    const mask: View = { storage: f32(maskValues), shape, strides: [Tq * Tk, 0, Tk, 1], offset: 0 };
    compare(nb, `maskedSoftmax [${shape}]`, [outF32(n)], (b, [o]) => b.maskedSoftmax(x, shape, mask, o!));
    compare(nb, `maskedSoftmax no mask [${shape}]`, [outF32(n)], (b, [o]) => b.maskedSoftmax(x, shape, null, o!));
    // The fused kernel gives exactly what add followed by softmax gives on the same backend; in place too.
    const added = outF32(n),
      want = outF32(n),
      inPlace = new CpuStorage("float32", x.data.slice());
    nb.binary("add", { storage: x, shape, strides: contiguousStrides(shape), offset: 0 }, mask, added);
    nb.softmax(added, n / Tk, Tk, false, want);
    nb.maskedSoftmax(inPlace, shape, mask, inPlace);
    assertExact(inPlace.data, want.data, `maskedSoftmax in place = add + softmax [${shape}]`);
  }
});

nativeTest("rotary and its adjoint: strided and broadcast views, bit-exact", (nb) => {
  for (const [B, H, T, D] of [
    [1, 1, 1, 2],
    [2, 3, 5, 8],
    [2, 14, 128, 64],
    [1, 2, 3, 6],
  ] as const) {
    const shape = [B, H, T, D],
      n = numel(shape);
    // x as a [B, H, T, D] view of a [B, T, H, D] buffer (what splitting heads gives); cos/sin [B, 1, T, D] broadcast.
    const x: View = { storage: randF32(n), shape, strides: [T * H * D, D, H * D, 1], offset: 0 };
    const cs = (lo: number) => ({ storage: randF32(B * T * D, lo, 1), shape, strides: [T * D, 0, D, 1], offset: 0 });
    const cosV = cs(-1),
      sinV = cs(-1);
    for (const transpose of [false, true]) {
      compare(
        nb,
        `rotary [${shape}] transpose=${transpose}`,
        [outF32(n)],
        (b, [o]) =>
          b.rotary(x, cosV, sinV, { storage: o!, shape, strides: contiguousStrides(shape), offset: 0 }, transpose),
        0,
        0,
      );
      compare(
        nb,
        `rotary strided out [${shape}] transpose=${transpose}`,
        [outF32(n)],
        (b, [o]) =>
          b.rotary(x, cosV, sinV, { storage: o!, shape, strides: [T * H * D, D, H * D, 1], offset: 0 }, transpose),
        0,
        0,
      );
    }
  }
  assert.throws(
    () =>
      nb.rotary(
        makeView([2, 3], "contiguous"),
        makeView([2, 3], "contiguous"),
        makeView([2, 3], "contiguous"),
        makeView([2, 3], "contiguous"),
        false,
      ),
    RangeError,
  );
});

const ROWS: [number, number][] = [
  [1, 1],
  [1, 7],
  [7, 33],
  [100, 1000],
  [3, 100003],
  [2000, 65],
];

nativeTest("softmax and log-softmax, forward and backward", (nb) => {
  for (const [rows, cols] of ROWS) {
    for (const log of [false, true]) {
      const x = randF32(rows * cols, -8, 8);
      compare(nb, `softmax log=${log} ${rows}x${cols}`, [outF32(rows * cols)], (b, [o]) =>
        b.softmax(x, rows, cols, log, o!),
      );
      const y = new CpuStorage("float32", new Float32Array(rows * cols));
      js.softmax(x, rows, cols, log, y);
      const dy = randF32(rows * cols);
      compare(
        nb,
        `softmaxGrad log=${log} ${rows}x${cols}`,
        [outF32(rows * cols)],
        (b, [o]) => b.softmaxGrad(y, dy, rows, cols, log, o!),
        1e-5,
        1e-6 * Math.sqrt(cols),
      );
    }
  }
  const specials = f32([0, -Infinity, 1, NaN, 2, 3, -Infinity, -Infinity]);
  compare(nb, "softmax with -∞ and NaN", [outF32(8)], (b, [o]) => b.softmax(specials, 4, 2, false, o!));
  compare(nb, "log-softmax with -∞ and NaN", [outF32(8)], (b, [o]) => b.softmax(specials, 4, 2, true, o!));
});

nativeTest("layerNorm and rmsNorm, forward and backward, with and without affine parameters", (nb) => {
  for (const [rows, cols] of ROWS) {
    const n = rows * cols;
    const x = randF32(n, -3, 5),
      dy = randF32(n),
      w = randF32(cols, 0.5, 1.5),
      bias = randF32(cols);
    for (const [weight, b2] of [
      [w, bias],
      [null, null],
      [w, null],
    ] as const) {
      const what = `${rows}x${cols} w=${weight !== null} b=${b2 !== null}`;
      compare(nb, `layerNorm ${what}`, [outF32(n), outF32(rows), outF32(rows)], (b, [o, mean, rstd]) =>
        b.layerNorm(x, weight, b2, rows, cols, 1e-5, o!, mean!, rstd!),
      );
      const mean = outF32(rows),
        rstd = outF32(rows);
      js.layerNorm(x, weight, b2, rows, cols, 1e-5, outF32(n), mean, rstd);
      // dWeight/dBias sum over rows: tolerance grows with √rows like the rounding of either side.
      compare(
        nb,
        `layerNormGrad ${what}`,
        [outF32(n), outF32(cols), outF32(cols)],
        (b, [dx, dw, db]) =>
          b.layerNormGrad(x, weight, mean, rstd, dy, rows, cols, dx!, weight ? dw! : null, b2 ? db! : null),
        1e-5,
        1e-6 * Math.sqrt(rows + cols),
      );
      compare(nb, `rmsNorm ${what}`, [outF32(n), outF32(rows)], (b, [o, r]) =>
        b.rmsNorm(x, weight, rows, cols, 1e-6, o!, r!),
      );
      const rs = outF32(rows);
      js.rmsNorm(x, weight, rows, cols, 1e-6, outF32(n), rs);
      compare(
        nb,
        `rmsNormGrad ${what}`,
        [outF32(n), outF32(cols)],
        (b, [dx, dw]) => b.rmsNormGrad(x, weight, rs, dy, rows, cols, dx!, weight ? dw! : null),
        1e-5,
        1e-6 * Math.sqrt(rows + cols),
      );
    }
  }
});

nativeTest("gather and scatterAdd (float32 and int32, repeated ids), exact", (nb) => {
  for (const [outer, n, inner, count] of [
    [1, 1, 1, 1],
    [1, 50, 7, 20],
    [3, 10, 33, 25],
    [2, 100, 1000, 300],
    [1, 30000, 1, 5000],
    [0, 4, 2, 3],
  ] as const) {
    const ids = i32(Array.from(values(count, 0, n), Math.floor));
    for (const dtype of ["float32", "int32"] as const) {
      const gen = (m: number) => (dtype === "float32" ? randF32(m, -1, 1, 1 / 1024) : i32(values(m, -1e9, 1e9)));
      const out = (m: number) => (dtype === "float32" ? outF32(m) : outI32(m));
      const src = gen(outer * n * inner);
      compare(
        nb,
        `gather ${dtype} [${outer}, ${n}, ${inner}] × ${count}`,
        [out(outer * count * inner)],
        (b, [o]) => b.gather(src, outer, n, inner, ids, o!),
        0,
        0,
      );
      // Quantised values make the float sums exact in any order, so this is exact too.
      const upd = gen(outer * count * inner);
      compare(
        nb,
        `scatterAdd ${dtype} [${outer}, ${n}, ${inner}] × ${count}`,
        [gen(outer * n * inner)],
        (b, [o]) => b.scatterAdd(upd, outer, n, inner, ids, o!),
        0,
        0,
      );
    }
  }
});

/** Both backends throw, with the same error class and message. */
function assertSameThrow(nb: Backend, what: string, call: (b: Backend) => void): void {
  let expected: Error | null = null;
  try {
    call(js);
  } catch (err) {
    expected = err as Error;
  }
  assert.ok(expected, `${what}: the js backend should throw`);
  assert.throws(
    () => call(nb),
    (err: Error) => {
      assert.equal(err.name, expected!.name, `${what}: error class`);
      assert.equal(err.message, expected!.message, `${what}: error message`);
      return true;
    },
  );
}

nativeTest("out-of-range gather/scatter ids and cross-entropy targets throw like the reference", (nb) => {
  const src = randF32(2 * 5 * 3);
  for (const bad of [5, -1, 1000]) {
    const ids = i32([0, bad, 2]);
    assertSameThrow(nb, `gather id ${bad}`, (b) => b.gather(src, 2, 5, 3, ids, outF32(18)));
    assertSameThrow(nb, `scatterAdd id ${bad}`, (b) => b.scatterAdd(outF32(18), 2, 5, 3, ids, outF32(30)));
  }
  const logits = randF32(4 * 6);
  for (const bad of [6, -2, 99]) {
    const targets = i32([1, -100, bad, 0]);
    assertSameThrow(nb, `crossEntropy target ${bad}`, (b) =>
      b.crossEntropy(logits, targets, 4, 6, -100, outF32(4), outF32(4)),
    );
  }
});

nativeTest("native kernels refuse views and sizes outside their storages instead of crashing", (nb) => {
  const x: View = { storage: randF32(10), shape: [3, 4], strides: [4, 1], offset: 0 };
  assert.throws(() => nb.unary("exp", x, outF32(12)), RangeError);
  assert.throws(() => nb.unary("exp", { ...x, offset: -1, shape: [2, 4] }, outF32(8)), RangeError);
  assert.throws(() => nb.softmax(randF32(10), 3, 4, false, outF32(12)), RangeError);
  assert.throws(
    () =>
      nb.gemm({
        a: randF32(10),
        aOffset: 0,
        transA: false,
        lda: 4,
        aBatchStrides: [],
        b: randF32(16),
        bOffset: 0,
        transB: false,
        ldb: 4,
        bBatchStrides: [],
        batchShape: [],
        m: 3,
        n: 4,
        k: 4,
        out: outF32(12),
        accumulate: false,
      }),
    RangeError,
  );
  assert.throws(
    () => nb.crossEntropyGrad(randF32(12), i32([0, 7]), randF32(2), randF32(2), 2, 6, -100, outF32(12)),
    RangeError,
  );
});

nativeTest("crossEntropy and its gradient, with ignored rows", (nb) => {
  for (const [rows, cols] of ROWS) {
    const logits = randF32(rows * cols, -6, 6);
    const targets = i32(Array.from(values(rows, 0, cols), (v, r) => (r % 5 === 3 ? -100 : Math.floor(v))));
    compare(nb, `crossEntropy ${rows}x${cols}`, [outF32(rows), outF32(rows)], (b, [loss, lse]) =>
      b.crossEntropy(logits, targets, rows, cols, -100, loss!, lse!),
    );
    const lse = outF32(rows);
    js.crossEntropy(logits, targets, rows, cols, -100, outF32(rows), lse);
    const dLoss = randF32(rows, 0.1, 2);
    compare(nb, `crossEntropyGrad ${rows}x${cols}`, [outF32(rows * cols)], (b, [o]) =>
      b.crossEntropyGrad(logits, targets, lse, dLoss, rows, cols, -100, o!),
    );
  }
});

nativeTest("adamw matches bit for bit over several steps", (nb) => {
  for (const n of [1, 7, 1000, 200003]) {
    const grads = [randF32(n), randF32(n, -1e-3, 1e-3), randF32(n, -10, 10)];
    const p0 = randF32(n),
      m0 = new Float32Array(n),
      v0 = new Float32Array(n);
    const run = (b: Backend) => {
      const p = new CpuStorage("float32", p0.data.slice()),
        m = new CpuStorage("float32", m0.slice());
      const v = new CpuStorage("float32", v0.slice());
      grads.forEach((g, i) => {
        b.adamw(p, g, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: i + 1 });
      });
      return [p, m, v];
    };
    const want = run(js),
      got = run(nb);
    got.forEach((s, i) => {
      assertExact(s.data, want[i]!.data, `adamw n=${n} state ${i}`);
    });
  }
});
