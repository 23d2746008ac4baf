/**
 * GEMM and bandwidth benchmark of the native backend, with two yardsticks:
 *  • "direct": cblas_sgemm called from a C program (bench/gemm_direct.c) linked with the same OpenBLAS the addon
 *    uses — the ceiling the native backend's GEMM can reach, so native/direct shows the binding's overhead;
 *  • "js": the pure-TypeScript backend (only where it finishes in seconds).
 * Method: every measurement has a warm-up call, and takes the best of several timed calls; native and direct runs
 * of one size alternate for a few rounds, so a noisy neighbour slows both alike rather than one of them.
 * Both sides use the same thread count (the addon's; the C program gets it through OMP_NUM_THREADS).
 * With a baseline backend (another build of the addon, `--baseline DIR` in bench.ts) its GEMM and Linear rows are
 * measured in the same rounds, alternating with the native ones, so that a change's cost shows side by side.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Backend, GemmSpec, Storage } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { loadNativeBackend, threads } from "../src/backend/native/native-backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import { float32ToBfloat16Bits } from "../src/backend/half.js";
import { quantize4bit, type QuantizedMatrix } from "../src/backend/quant.js";
import { backend, setBackend } from "../src/backend/index.js";
import * as T from "../src/tensor/index.js";
import { Linear } from "../src/nn/index.js";

const run = promisify(execFile);

/** One line of results. Throughputs in `unit`; absent where not measured. */
export interface BenchRow {
  kernel: string;
  /** M×K×N for GEMM, the tensor shape otherwise. */
  shape: string;
  unit: "GFLOP/s" | "GB/s";
  native: number;
  direct?: number;
  js?: number;
  /** native / direct. */
  ratio?: number;
  /** The baseline build's native throughput, when one was given. */
  before?: number;
}

export interface GemmBenchOptions {
  /** Alternating native/direct rounds per GEMM size (default 3). */
  rounds?: number;
  /** Timed calls per round (default 3; the best counts). */
  repeats?: number;
  /** Also time the js backend (default true). */
  js?: boolean;
  /** Progress messages (default: none). */
  log?: (line: string) => void;
  /** Another build's native backend, measured beside this one (the "before" column). */
  baseline?: Backend;
}

const SQUARE = [256, 512, 1024, 2048];
/** NF4 weights [out, in]: Qwen2-0.5B's MLP up and down projections, Qwen2.5-1.5B's. */
const NF4_WEIGHTS: [number, number][] = [
  [4864, 896],
  [896, 4864],
  [8960, 1536],
  [1536, 8960],
];
/**
 * Decoding products [K, N] (weight as stored: GPT-2's Conv1D) and [N, K] (transposed: Linear, the LM head), at 1
 * and 8 rows (one row per sequence in the batch).
 */
const DECODE: { k: number; n: number; transB: boolean }[] = [
  { k: 768, n: 3072, transB: false },
  { k: 3072, n: 768, transB: false },
  { k: 896, n: 4864, transB: true },
  { k: 4864, n: 896, transB: true },
  { k: 768, n: 50257, transB: true },
];

/** Transformer-sized products M×K×N: the QKV projection, the MLP's down projection, the attention output. */
const TRANSFORMER: [number, number, number][] = [
  [512, 768, 2304],
  [512, 3072, 768],
  [512, 768, 768],
];

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("no package.json above bench/gemm.ts");
    dir = up;
  }
  return dir;
}

/** Compiles bench/gemm_direct.c against the addon's OpenBLAS into build/bench/; returns the executable's path. */
async function buildDirect(root: string): Promise<string> {
  const { stdout } = await run(process.execPath, [join(root, "scripts", "find-openblas.cjs"), "json"]);
  const blas = JSON.parse(stdout) as { include: string; libdir: string; libs: string };
  const outDir = join(root, "build", "bench");
  mkdirSync(outDir, { recursive: true });
  const exe = join(outDir, "gemm_direct");
  const link = blas.libdir ? [`-L${blas.libdir}`, `-Wl,-rpath,${blas.libdir}`] : [];
  await run("cc", [
    "-O2",
    "-std=c11",
    "-D_POSIX_C_SOURCE=199309L",
    ...(blas.include ? [`-I${blas.include}`] : []),
    join(root, "bench", "gemm_direct.c"),
    "-o",
    exe,
    ...link,
    ...blas.libs.split(" "),
  ]);
  return exe;
}

async function direct(
  exe: string,
  m: number,
  k: number,
  n: number,
  repeats: number,
  nThreads: number,
): Promise<number> {
  const env = { ...process.env, OMP_NUM_THREADS: String(nThreads), OPENBLAS_NUM_THREADS: String(nThreads) };
  const { stdout } = await run(exe, [m, k, n, repeats].map(String), { env });
  const rows = stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { gflops: number });
  return Math.max(...rows.map((r) => r.gflops));
}

function randomStorage(n: number, seed: number): CpuStorage {
  const d = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    d[i] = (s >>> 8) / 16777216 - 0.5;
  }
  return new CpuStorage("float32", d);
}

/** Best of `repeats` timed calls after one warm-up, in seconds. */
function bestTime(fn: () => void, repeats: number): number {
  fn();
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, (performance.now() - t0) / 1e3);
  }
  return best;
}

function gemmSpec(m: number, k: number, n: number): GemmSpec {
  return {
    a: randomStorage(m * k, 1),
    aOffset: 0,
    transA: false,
    lda: k,
    aBatchStrides: [],
    b: randomStorage(k * n, 2),
    bOffset: 0,
    transB: false,
    ldb: n,
    bBatchStrides: [],
    batchShape: [],
    m,
    n,
    k,
    out: new CpuStorage("float32", new Float32Array(m * n)),
    accumulate: false,
  };
}

/** Runs the benchmark (a minute or so on two cores) and returns one row per kernel and size. */
export async function gemmBench(opts: GemmBenchOptions = {}): Promise<BenchRow[]> {
  const rounds = opts.rounds ?? 3,
    repeats = opts.repeats ?? 3,
    withJs = opts.js ?? true;
  const log = opts.log ?? (() => {});
  const root = packageRoot();
  const native: Backend = loadNativeBackend();
  const js = new JsBackend();
  const nThreads = threads();
  const exe = await buildDirect(root);
  const rows: BenchRow[] = [];

  const section: Section = { exe, native, baseline: opts.baseline, rounds, repeats, nThreads, log };
  const sizes: [number, number, number][] = [...SQUARE.map((s): [number, number, number] => [s, s, s]), ...TRANSFORMER];
  for (const [m, k, n] of sizes) {
    const spec = gemmSpec(m, k, n),
      flops = 2 * m * n * k;
    const row = await measuredRow(section, "gemm", [m, k, n], flops, (be) => () => be.gemm(spec));
    if (withJs) {
      // The reference is ~100× slower: best of 2 for the small squares, a single timed call for the others.
      const jsRepeats = Math.max(m, k, n) <= 512 ? 2 : 1;
      if (m * n * k <= 512 * 768 * 3072) row.js = flops / bestTime(() => js.gemm(spec), jsRepeats) / 1e9;
    }
    rows.push(row);
  }

  rows.push(...(await nf4Rows(section)), ...(await decodeRows(section)));

  // Bandwidth: bytes each kernel must move (inputs read + output written) per second.
  const N = 1 << 24; // 16 Mi floats = 64 MiB per tensor, well beyond the caches
  const a = randomStorage(N, 3),
    b = randomStorage(N, 4),
    out = new CpuStorage("float32", new Float32Array(N));
  const view = (s: Storage) => ({ storage: s, shape: [N], strides: [1], offset: 0 });
  const add = (be: Backend) => () => be.binary("add", view(a), view(b), out);
  const addBytes = 3 * 4 * N;
  const addRow: BenchRow = {
    kernel: "add",
    shape: `[${N}]`,
    unit: "GB/s",
    native: addBytes / bestTime(add(native), 10) / 1e9,
  };
  if (withJs) addRow.js = addBytes / bestTime(add(js), 3) / 1e9;
  rows.push(addRow);

  const [rowsS, colsS] = [4096, N / 4096];
  const sm = (be: Backend) => () => be.softmax(a, rowsS, colsS, false, out);
  const smBytes = 2 * 4 * rowsS * colsS;
  const smRow: BenchRow = {
    kernel: "softmax",
    shape: `[${rowsS}, ${colsS}]`,
    unit: "GB/s",
    native: smBytes / bestTime(sm(native), 10) / 1e9,
  };
  if (withJs) smRow.js = smBytes / bestTime(sm(js), 3) / 1e9;
  rows.push(smRow);
  log(`add ${addRow.native.toFixed(1)} GB/s, softmax ${smRow.native.toFixed(1)} GB/s (native)`);
  const linear = linearStepRow(repeats);
  if (opts.baseline) {
    // The tensor engine runs on whichever backend is active: the baseline's for a moment.
    const ours = backend();
    setBackend(opts.baseline);
    try {
      linear.before = linearStepRow(repeats).native;
    } finally {
      setBackend(ours);
    }
  }
  rows.push(linear);
  return rows;
}

/** What the extra GEMM sections share: the C program, the backends, and the rounds and repeats of each case. */
interface Section {
  exe: string;
  native: Backend;
  baseline: Backend | undefined;
  rounds: number;
  repeats: number;
  nThreads: number;
  log: (line: string) => void;
}

/**
 * One GFLOP/s row: `flops` per call of `run(backend)`, the best of alternating rounds of cblas_sgemm (m×k×n, the
 * "direct" column), this build and the baseline build.
 */
async function measuredRow(
  s: Section,
  kernel: string,
  [m, k, n]: [number, number, number],
  flops: number,
  run: (be: Backend) => () => void,
): Promise<BenchRow> {
  let best = 0,
    bestDirect = 0,
    bestBefore = 0;
  for (let r = 0; r < s.rounds; r++) {
    bestDirect = Math.max(bestDirect, await direct(s.exe, m, k, n, s.repeats, s.nThreads));
    best = Math.max(best, flops / bestTime(run(s.native), s.repeats) / 1e9);
    if (s.baseline) bestBefore = Math.max(bestBefore, flops / bestTime(run(s.baseline), s.repeats) / 1e9);
  }
  const row: BenchRow = {
    kernel,
    shape: `${m}×${k}×${n}`,
    unit: "GFLOP/s",
    native: best,
    direct: bestDirect,
    ratio: best / bestDirect,
    ...(s.baseline ? { before: bestBefore } : {}),
  };
  s.log(`${kernel} ${row.shape}: native ${best.toFixed(1)}, sgemm ${bestDirect.toFixed(1)} GFLOP/s`);
  return row;
}

/**
 * The NF4 (double-quantised) products of QLoRA training, forward x·Wᵀ and input gradient g·W, with 128 rows on the
 * Qwen2 / Qwen2.5-1.5B projections; "direct" is float32 sgemm of the same shape, so the ratio is NF4 ÷ float32.
 */
async function nf4Rows(s: Section): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const m = 128;
  for (const [n, k] of NF4_WEIGHTS) {
    const q = quantize4bit(
      (randomStorage(n * k, 5).data as Float32Array).map((v) => v * 0.1),
      "nf4",
      {
        doubleQuant: true,
        kernel: (...a) => s.native.quantize4bit(...a),
      },
    );
    const w: QuantizedMatrix = { format: "4bit", n, k, q };
    for (const transpose of [false, true]) {
      const [inner, outer] = transpose ? [n, k] : [k, n];
      const x = randomStorage(m * inner, 6),
        out = new CpuStorage("float32", new Float32Array(m * outer));
      const kernel = transpose ? "nf4 g·W" : "nf4 x·Wᵀ";
      rows.push(
        await measuredRow(
          s,
          kernel,
          [m, inner, outer],
          2 * m * n * k,
          (be) => () => be.quantMatmul(x, m, w, transpose, out),
        ),
      );
    }
  }
  return rows;
}

/**
 * A Linear layer's forward + backward through the tensor engine (autograd, memory scopes, the active backend):
 * y = x·Wᵀ + b, then dX, dW and db — three products of 2·M·K·N FLOPs, so the overhead of the engine above the
 * raw GEMM shows as the gap to the gemm rows.
 */
function linearStepRow(repeats: number): BenchRow {
  const [m, k, n] = [512, 768, 768];
  const layer = new Linear(k, n);
  const x = T.keep(T.tensor(new Float32Array(m * k).fill(0.01), [m, k]));
  x.requiresGrad = true;
  const step = () =>
    T.tidy(() => {
      T.sum(layer.forward(x)).backward();
      for (const p of [x, ...layer.parameters()]) {
        p.grad?.dispose();
        p.grad = null;
      }
    });
  const row: BenchRow = {
    kernel: "Linear fwd+bwd",
    shape: `${m}×${k}×${n}`,
    unit: "GFLOP/s",
    native: (3 * 2 * m * k * n) / bestTime(step, repeats + 2) / 1e9,
  };
  layer.dispose();
  x.dispose();
  return row;
}

/** The rows as a markdown table (with "before" columns when a baseline was measured). */
export function formatBenchTable(rows: readonly BenchRow[]): string {
  const f = (v: number | undefined, digits = 1) => (v === undefined ? "–" : v.toFixed(digits));
  const withBefore = rows.some((r) => r.before !== undefined);
  const lines = [
    `| kernel | shape (M×K×N) | unit | native ` +
      `|${withBefore ? " before (baseline build) | native/before |" : ""} direct C OpenBLAS | ` +
      `native/direct | js |`,
    `| --- | --- | --- | ---: |${withBefore ? " ---: | ---: |" : ""} ---: | ---: | ---: |`,
  ];
  for (const r of rows) {
    const before = withBefore ? ` ${f(r.before)} | ${r.before ? f(r.native / r.before, 2) : "–"} |` : "";
    lines.push(
      `| ${r.kernel} | ${r.shape} | ${r.unit} | ${f(r.native)} |${before} ${f(r.direct)} | ` +
        `${f(r.ratio, 2)} | ${f(r.js, 2)} |`,
    );
  }
  return lines.join("\n");
}

/**
 * Few-row products as decoding runs them: the weight streamed from memory (calls rotate over copies filling
 * ~96 MiB, beyond the caches), at 1 and 8 rows, with the weight in float32, in bfloat16 (a half-precision model's,
 * widened as it is read) and, for x·Wᵀ, in NF4 with double quantisation (a QLoRA model's). "direct" is float32
 * cblas_sgemm of the same shape with the weight as stored, kept in cache by its C loop, so the ratio understates ours.
 */
async function decodeRows(s: Section): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const { k, n, transB } of DECODE) {
    for (const format of ["float32", "bfloat16", ...(transB ? ["nf4" as const] : [])] as const) {
      const bytes = format === "float32" ? 4 : format === "bfloat16" ? 2 : 0.5;
      const copies = Math.max(2, Math.ceil((96 * 2 ** 20) / (bytes * k * n)));
      const weights = Array.from({ length: copies }, (_, c) =>
        decodeWeight(randomStorage(k * n, 10 + c), format, n, k, s),
      );
      for (const m of [1, 8]) {
        const base = { ...gemmSpec(m, k, n), transB, ldb: transB ? k : n };
        let next = 0;
        const run = (be: Backend) => () => {
          for (let c = 0; c < copies; c++) {
            const w = weights[next++ % copies]!;
            if (w instanceof CpuStorage) be.gemm({ ...base, b: w });
            else be.quantMatmul(base.a, m, w, false, base.out);
          }
        };
        const kernel = `decode ${transB ? "x·Wᵀ" : "x·W"}${format === "float32" ? "" : ` ${format === "bfloat16" ? "bf16" : "nf4"}`}`;
        rows.push(await measuredRow(s, kernel, [m, k, n], 2 * m * n * k * copies, run));
      }
    }
  }
  return rows;
}

/** A float32 weight [k·n values] as it is, rounded to bfloat16 bits, or quantised to NF4 as [n, k]. */
function decodeWeight(
  storage: CpuStorage,
  format: "float32" | "bfloat16" | "nf4",
  n: number,
  k: number,
  s: Section,
): CpuStorage | QuantizedMatrix {
  if (format === "float32") return storage;
  const values = storage.data as Float32Array;
  if (format === "nf4") {
    const q = quantize4bit(
      values.map((v) => v * 0.1),
      "nf4",
      { doubleQuant: true, kernel: (...a) => s.native.quantize4bit(...a) },
    );
    return { format: "4bit", n, k, q };
  }
  const bits = new Uint16Array(values.length);
  float32ToBfloat16Bits(values, bits);
  return new CpuStorage("bfloat16", bits);
}
